"""What a client may send: the bounds every request is held to before a view runs.

No input a client can send yields a 5xx. The guards here run first, before the
rate limiter reads the body and before idempotency fingerprints it:

- ids in a path are at most ``MAX_ID`` (PostgreSQL's integer): anything larger
  is 404, like any id that does not exist, instead of reaching the database as
  an overflow (checked on the matched route's arguments: a converter that
  refused the value would make werkzeug answer 405 for the other methods);
- a body is at most ``MAX_CONTENT_LENGTH``, whether it says its length or is
  chunked (413 — a chunked body is read up to the limit, never cut silently);
- a JSON body nests at most ``MAX_JSON_DEPTH`` levels (400 ``invalid_json``),
  checked on the bytes before any parser recurses into it; a body the schemas'
  parser cannot read is 400 ``invalid_json``, an integer longer than CPython's
  4,300-digit limit included (:func:`_read_every_json_body_or_400`);
- a path or query string holds no NUL character and no lone surrogate (400);
  JSON strings are checked field by field by the schemas (422, see
  ``mobile_api.fields.BaseSchema``).

A view marked :func:`takes_raw_body` (the local storage's file uploads) takes
bytes, not JSON, under a limit of its own: it reads them with :func:`read_body`.
"""

from __future__ import annotations

import json
import re

from flask import Flask, current_app, request
from flask_babel import gettext
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from app.errors import AppError, NotFound
from app.models.base import MAX_ID

MAX_JSON_DEPTH = 32
# A NUL, or a UTF-16 surrogate on its own (a valid pair never survives decoding as one).
_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKETS = re.compile(rb"[\[\]{}]")


def has_forbidden_chars(text: str) -> bool:
    return _FORBIDDEN.search(text) is not None


def json_depth(body: bytes) -> int:
    """How deep the brackets of a JSON document nest (strings skipped), without parsing it."""
    depth = deepest = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub(b"", body)):
        if bracket in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def init_app(app: Flask) -> None:
    """Guard every request (call before the rate limiter's init_app)."""
    app.before_request(_guard_request)
    _read_every_json_body_or_400()


def _read_every_json_body_or_400() -> None:
    """The schemas' parser (webargs, shared by every blueprint) answers 400
    ``invalid_json`` for a body it cannot read — but only for a syntax or UTF-8
    error: an integer longer than CPython's 4,300-digit limit is a plain
    ValueError, which would escape as a 500. It becomes a syntax error here, so
    the view's own parse refuses it (after the rate limiter counted the request:
    garbage costs what a guess costs)."""
    from flask_smorest.arguments import ArgumentsMixin

    parser = ArgumentsMixin.ARGUMENTS_PARSER
    if getattr(parser, "reads_every_json_body", False):
        return
    raw_load_json = parser._raw_load_json

    def load(req):
        try:
            return raw_load_json(req)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise
        except (ValueError, RecursionError) as exc:  # the int-string limit, and the like
            # a document of its own: webargs reads an empty one as "no body"
            raise json.JSONDecodeError(str(exc).split(";")[0], "(unreadable)", 0) from None

    parser._raw_load_json = load
    parser.reads_every_json_body = True


def _guard_request() -> None:
    if request.url_rule is None:
        return  # 404/405 answer without reading anything
    if any(isinstance(value, int) and value > MAX_ID for value in (request.view_args or {}).values()):
        raise NotFound()
    texts = [request.path, *request.args.keys(), *(v for vs in request.args.listvalues() for v in vs)]
    if any(has_forbidden_chars(text) for text in texts):
        raise AppError("bad_request", gettext("The path or query holds a NUL character or an unpaired surrogate."))
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    if getattr(current_app.view_functions.get(request.endpoint), "takes_raw_body", False):
        return
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not (request.content_length or chunked):
        return
    if not request.is_json:
        raise UnsupportedMediaType()
    body = read_body()
    if json_depth(body) > MAX_JSON_DEPTH:
        raise AppError("invalid_json")


def takes_raw_body(view):
    """Mark a view that reads a body of bytes itself (:func:`read_body`), not JSON."""
    view.takes_raw_body = True
    return view


def read_body(limit: int | None = None) -> bytes:
    """The whole body, cached for the views; 413 past ``limit`` (default MAX_CONTENT_LENGTH)."""
    if limit is not None:
        request.max_content_length = limit
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    limit = request.max_content_length
    if chunked and limit is not None:
        # Werkzeug stops a chunked stream at the limit without saying so; read one
        # byte past it ourselves to tell "exactly the limit" from "more".
        stream = request.environ["wsgi.input"]
        data = bytearray()
        while len(data) <= limit:
            piece = stream.read(min(65536, limit + 1 - len(data)))
            if not piece:
                break
            data += piece
        if len(data) > limit:
            raise RequestEntityTooLarge()
        # What get_data() caches (werkzeug's own attribute): the views read this copy.
        request._cached_data = bytes(data)
    return request.get_data(cache=True)
