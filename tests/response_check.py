"""Every answer the test suite provokes is checked against the OpenAPI document, twice.

- openapi-core, a strict OpenAPI 3.0.3 validator (what a generated client relies
  on), reads the request and the answer: the status must be one the operation
  declares (or its ``default`` error), the media type one it declares for that
  status, the body valid for the schema there — JSON and binary downloads alike.
  A streamed download is checked once its last chunk is sent, with what it sent.
- A JSON answer is also validated directly against the schema of its status, an
  error against the envelope: a field marked ``required`` that is sometimes
  missing, a null where none is allowed, a value outside an enum or an
  undocumented field fails the test that provoked it.
"""

from __future__ import annotations

import json
import re

from flask import Flask, request
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.deserializing.media_types.util import plain_loads
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import Headers, ImmutableMultiDict

_PARAM = re.compile(r"<(?:[a-z_]+:)?([a-z_]+)>")


class _Document:
    """The document of one app, read once: as JSON, its schema validators, and openapi-core's reading."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.validators: dict[str, OAS30Validator] = {}
        # test_openapi validates the document itself; a calendar is text, read as such
        config = Config(spec_validator_cls=None, extra_media_type_deserializers={"text/calendar": plain_loads})
        self.strict = OpenAPI.from_dict(spec, config=config)


# The document differs between apps only by the configured districts: build it once per list of districts.
_DOCUMENTS: dict[tuple, _Document] = {}


class _Asked:
    """The request as openapi-core needs it to find the operation of an answer (its
    body is not read: it may be the very thing refused, a body over 1 MiB)."""

    def __init__(self, asked):
        self.host_url = asked.host_url
        self.path = asked.root_path + asked.path
        self.method = asked.method.lower()
        self.body = None
        self.content_type = asked.content_type or "application/octet-stream"
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(asked.args), header=Headers(asked.headers), cookie=asked.cookies
        )


class _Answer:
    """A response as openapi-core reads it."""

    def __init__(self, response, data: bytes):
        self.data = data
        self.status_code = response.status_code
        self.content_type = response.mimetype
        self.headers = Headers(response.headers)


class ResponseChecker:
    def __init__(self, app: Flask):
        self.app = app
        self.problems: list[str] = []
        self._document: _Document | None = None
        app.after_request(self._check)

    def document(self) -> _Document:
        if self._document is None:
            from app.extensions import api

            key = tuple(self.app.config["DISTRICTS"])
            if key not in _DOCUMENTS:
                _DOCUMENTS[key] = _Document(json.loads(json.dumps(api.spec.to_dict())))
            self._document = _DOCUMENTS[key]
        return self._document

    def _validator(self, ref: str) -> OAS30Validator:
        validators = self.document().validators
        if ref not in validators:
            schema = {"$ref": ref, "components": self.document().spec["components"]}
            validators[ref] = OAS30Validator(schema)
        return validators[ref]

    def _operation(self) -> dict | None:
        rule = request.url_rule
        if rule is None:
            return None
        return self.document().spec["paths"].get(_PARAM.sub(r"{\1}", rule.rule), {}).get(request.method.lower())

    def _schema_ref(self, operation: dict | None, status: int) -> str | None:
        if operation is None:
            return None
        response = operation["responses"].get(str(status))
        if response is None:
            return "#/components/schemas/Error" if status >= 400 else None
        if "$ref" in response:
            response = self.document().spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        return schema.get("$ref") if schema else None

    def _check(self, response):
        operation = self._operation()
        if operation is not None:
            self._check_strictly(response)
        if response.mimetype != "application/json" or response.direct_passthrough:
            return response
        ref = self._schema_ref(operation, response.status_code)
        if ref is None and response.status_code >= 400:
            ref = "#/components/schemas/Error"
        if ref is None:
            return response
        body = json.loads(response.get_data())
        errors = sorted(self._validator(ref).iter_errors(body), key=lambda e: list(e.absolute_path))
        for error in errors[:3]:
            where = "/".join(str(p) for p in error.absolute_path)
            self.problems.append(
                f"{request.method} {request.path} {response.status_code} vs {ref.rsplit('/', 1)[1]}: "
                f"{where}: {error.message[:200]}"
            )
        return response

    def _check_strictly(self, response) -> None:
        asked, where = _Asked(request), f"{request.method} {request.path} {response.status_code} ({response.mimetype})"
        if not response.is_streamed:
            self._validate(asked, _Answer(response, response.get_data()), where)
            return
        # A streamed download is checked once its last chunk has gone, with the bytes it
        # sent: reading it here would change what the test sees (and when rows are read).
        chunks = response.response

        def passed_on():
            sent = []
            for chunk in chunks:
                sent.append(chunk if isinstance(chunk, bytes) else chunk.encode())
                yield chunk
            self._validate(asked, _Answer(response, b"".join(sent)), where)

        response.response = passed_on()

    def _validate(self, asked: _Asked, answer: _Answer, where: str) -> None:
        try:
            self.document().strict.validate_response(asked, answer)
        except (PathNotFound, OperationNotFound):
            return  # not an operation of the document (the docs pages, the verify page)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            found = [type(exc).__name__]
            cause: BaseException | None = exc
            while cause is not None:
                details = getattr(cause, "schema_errors", None)
                if details:
                    found += [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in details[:3]]
                    break
                if cause is not exc:
                    found.append(str(cause)[:300])
                cause = cause.__cause__
            self.problems.append(f"{where}, strictly: " + "; ".join(found))
