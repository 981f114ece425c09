"""Schemathesis hooks for CI's run (.ci/schemathesis.sh loads them: SCHEMATHESIS_HOOKS).

Two rules of the API are about state, not shape, so no schema can state them:

- an ``Idempotency-Key`` is one action's: the same key with another body is 422
  ``idempotency_key_reused`` (for the same user, across operations). A client
  makes a new key per action; so does this run: every well-formed key
  schemathesis generates is replaced by a fresh one (a UUID). Malformed keys are
  left as generated, so the header's own rules stay tested;
- a list's ``cursor`` is the server's own signed token: a well-formed one the
  server did not issue is 400 ``invalid_cursor`` (tests/test_feed.py,
  test_for_me.py and the other lists' tests check that). The run does not forge them: a generated
  well-formed cursor is dropped (the first page); malformed ones are kept.
"""

from __future__ import annotations

import re
import uuid

import schemathesis

_WELL_FORMED = re.compile(r"[!-~]{1,255}")
_CURSOR = re.compile(r"[A-Za-z0-9_.-]*")  # mobile_api.fields.CURSOR_PATTERN


@schemathesis.hook
def map_headers(context, headers):
    if headers:
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and _WELL_FORMED.fullmatch(key):
            headers["Idempotency-Key"] = str(uuid.uuid4())
    return headers


@schemathesis.hook
def map_query(context, query):
    if query and isinstance(query.get("cursor"), str) and _CURSOR.fullmatch(query["cursor"]):
        del query["cursor"]
    return query
