"""Schemathesis hooks for CI's run (.ci/schemathesis.sh loads them: SCHEMATHESIS_HOOKS).

Who signs each operation in: the runner (``ST_TOKEN``, through the document's
security scheme: .ci/schemathesis.toml), except where :data:`SIGNED_IN_AS`
names another token (.ci/schemathesis_token.py makes them) — the refresh
token's own operations get families of their own, so rotating or ending them
never ends the runner's session; a second user claims and works on what the
runner posts (nobody claims their own), so the stateful phase follows posting
→ claim → fulfil → confirm; the admin does what only an admin does and reviews
what the runner posted (nobody reviews their own). A request the check sends
without a token stays without one.

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

import os
import re
import uuid

import schemathesis

SIGNED_IN_AS = {
    "refresh": "ST_ROTATE",
    "logout": "ST_LOGOUT",
    "claim_posting": "ST_HELPER",
    "fulfil_claim": "ST_HELPER",
    "check_in": "ST_HELPER",
    "check_out": "ST_HELPER",
    "withdraw_claim": "ST_HELPER",
    "approve_org": "ST_ADMIN",
    "reject_org": "ST_ADMIN",
    "approve_posting": "ST_ADMIN",
    "reject_posting": "ST_ADMIN",
}

_WELL_FORMED = re.compile(r"[!-~]{1,255}")
_CURSOR = re.compile(r"[A-Za-z0-9_.-]*")  # mobile_api.fields.CURSOR_PATTERN


@schemathesis.hook
def before_call(context, case, kwargs):
    """Before every request of every phase (examples, coverage, fuzzing, stateful):
    on the case and on the request's own arguments, whichever the call is built from."""
    fresh = str(uuid.uuid4())
    other = SIGNED_IN_AS.get(case.operation.definition.raw.get("operationId"))
    for headers in (case.headers, kwargs.get("headers")):
        if other and headers and str(headers.get("Authorization", "")).startswith("Bearer "):
            headers["Authorization"] = "Bearer " + os.environ[other]
    for headers in (case.headers, kwargs.get("headers")):
        if headers and isinstance(headers.get("Idempotency-Key"), str):
            if _WELL_FORMED.fullmatch(headers["Idempotency-Key"]):
                headers["Idempotency-Key"] = fresh
    for query in (case.query, kwargs.get("params")):
        if isinstance(query, dict) and isinstance(query.get("cursor"), str) and _CURSOR.fullmatch(query["cursor"]):
            del query["cursor"]
