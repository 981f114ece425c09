"""Schemathesis hooks for CI's run (.ci/schemathesis.sh loads them: SCHEMATHESIS_HOOKS).

Who signs each operation in: the runner (``ST_TOKEN``, through the document's
security scheme: .ci/schemathesis.toml), except where :data:`SIGNED_IN_AS`
names another token (.ci/schemathesis_token.py makes them) — the refresh
token's own operations get families of their own, so rotating or ending them
never ends the runner's session; a second user claims and works on what the
runner posts (nobody claims their own), so the stateful phase follows posting
→ claim → fulfil → confirm; the admin does what only an admin does and reviews
what the runner posted (nobody reviews their own). A request the check sends
without a token stays without one, but for the public operations a token makes
the caller's view (the signed-in app sends it there too).

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

Some rules relate fields to each other, which a JSON Schema (and OpenAPI's
parameters, each described alone) cannot state; the document says them in words
and the server answers 422 to a request that breaks them. The run sends what a
client following the words sends, so that a refused request is a document that
says too little (positive_data_acceptance), never a relation met by chance. Each
is repaired only when the fields are otherwise well formed (a malformed value
stays as generated, for the checks of refusals):

- ``from`` is not after ``to`` (the periods of records, stats, party members,
  certificates: mobile_api.schemas.records.PeriodQuerySchema): swapped;
- ``for_me`` takes only ``FOR_ME_PARAMETERS`` (GET /postings): the others dropped;
- ``sort=distance`` needs ``near``: the sort dropped without it;
- an org's figures cover at most ``MAX_PERIODS`` weeks or months
  (app.services.org_stats): ``from`` moved up to the earliest it may be;
- quiet hours start and end differ (mobile_api.fields.quiet_hours_span_time): the
  end moved a minute;
- a new posting fits its kind (app.policy, as app.services.postings.fields checks
  it): a wish's capacity 1, the places or stock a kind needs, a schedule to come
  (start before end), an expiry within the kind's days, a claim deadline and an
  energy cost only where the kind has them, a beneficiary only on a wish. Only
  for the data meant to be valid (a value of the wrong shape stays as it is).

The rules of state (a password, an SMS code, a photo of one's own, …) are
:data:`RULES_OF_STATE`: for those operations .ci/schemathesis.toml expects a 422
to schema-valid data too, and the check ``refused_by_a_rule_of_state`` holds
each such 422 to the rules listed for its operation (any other 422 to valid data
is a rule the document should state, and fails the run).
"""

from __future__ import annotations

import os
import re
import tomllib
import uuid
from collections.abc import MutableMapping
from datetime import UTC, date, datetime, timedelta

import schemathesis
from marshmallow import fields

from app.policy import POLICIES
from app.services.org_stats import INTERVALS, MAX_PERIODS, period_start, period_starts
from mobile_api.fields import CURSOR_PATTERN
from mobile_api.schemas.postings import FOR_ME_PARAMETERS

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

_PERSONALISED = "the answer is the caller's view"  # mobile_api.openapi._description
_WELL_FORMED = re.compile(r"[!-~]{1,255}")
_CURSOR = re.compile(CURSOR_PATTERN)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _in_order(data: dict) -> None:
    """``from`` not after ``to`` (dates as text compare as dates)."""
    first, last = data.get("from"), data.get("to")
    if isinstance(first, str) and isinstance(last, str) and _DATE.fullmatch(first) and _DATE.fullmatch(last):
        if first > last:
            data["from"], data["to"] = last, first


def _for_me_alone(query: dict) -> None:
    if str(query.get("for_me", "")).strip() in fields.Boolean.truthy:
        for name in set(query) - FOR_ME_PARAMETERS:
            del query[name]
    if query.get("sort") == "distance" and "near" not in query:
        del query["sort"]


def _at_most_max_periods(query: dict) -> None:
    first, last, interval = query.get("from"), query.get("to"), query.get("interval", "month")
    if not (isinstance(first, str) and _DATE.fullmatch(first) and interval in INTERVALS):
        return
    if last is not None and not (isinstance(last, str) and _DATE.fullmatch(last)):
        return
    try:
        first_day = date.fromisoformat(first)
        last_day = date.fromisoformat(last) if last else max(date.today(), first_day)
    except ValueError:
        return
    if len(period_starts(first_day, last_day, interval)) > MAX_PERIODS:
        earliest = period_start(last_day, interval)
        for _ in range(MAX_PERIODS - 2):  # one to spare: "today" is the server's, in its zone
            earliest = period_start(earliest - timedelta(days=1), interval)
        query["from"] = earliest.isoformat()


def _time(value) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _fits_its_kind(body: dict) -> None:
    policy = POLICIES.get(body.get("kind")) if isinstance(body.get("kind"), str) else None
    if policy is None:
        return
    now = datetime.now(UTC)
    capacity = body.get("capacity")
    if policy.capacity == "one" and capacity is not None:
        body["capacity"] = 1
    elif policy.capacity_required and capacity is None:
        body["capacity"] = 10
    starts_at, ends_at = _time(body.get("starts_at")), _time(body.get("ends_at"))
    given = any(body.get(name) is not None for name in ("starts_at", "ends_at"))
    scheduled = starts_at is not None and ends_at is not None and now < starts_at < ends_at
    if (policy.needs_schedule or given) and not scheduled:
        body["starts_at"] = (now + timedelta(days=2)).isoformat()
        body["ends_at"] = (now + timedelta(days=2, hours=3)).isoformat()
    expires_at = _time(body.get("expires_at"))
    if expires_at is not None and not now + timedelta(hours=1) < expires_at < now + timedelta(days=7):
        body["expires_at"] = (now + timedelta(days=3)).isoformat()
    if not policy.claim_ttl_hours and body.get("claim_ttl_hours") is not None:
        del body["claim_ttl_hours"]
    if policy.has_energy_cost and not body.get("energy_cost"):
        body["energy_cost"] = 10
    elif not policy.has_energy_cost and body.get("energy_cost") is not None:
        del body["energy_cost"]
    if not policy.has_beneficiary and body.get("beneficiary"):
        del body["beneficiary"]


def _quiet_hours_span_time(body: dict) -> None:
    hours = body.get("quiet_hours")
    if isinstance(hours, dict) and isinstance(hours.get("start"), str) and hours.get("start") == hours.get("end"):
        if _HHMM.fullmatch(hours["start"]):
            minutes = (int(hours["start"][:2]) * 60 + int(hours["start"][3:]) + 1) % (24 * 60)
            hours["end"] = f"{minutes // 60:02d}:{minutes % 60:02d}"


# operationId → what may refuse schema-valid data (a 422), and why no document of shapes
# can say it. An ``error`` slug, or ``field`` for a validation_error naming that field.
RULES_OF_STATE: dict[str, dict[str, str]] = {
    "delete_me": {
        "wrong_password": "the account's password",
        "invalid_sms_code": "an SMS code that was sent",
    },
    "change_password": {"wrong_password": "the account's password"},
    "change_phone": {"wrong_password": "the account's password", "invalid_sms_code": "an SMS code that was sent"},
    "reset_password": {"invalid_sms_code": "an SMS code that was sent"},
    "register": {"invalid_sms_code": "an SMS code that was sent"},
    "update_me": {
        "invalid_photo": "a photo the caller uploaded for the purpose",
        "timezone": "a zone the server's tz database names (some 600: no enum for every generated client to carry)",
    },
    "fulfil_claim": {"invalid_photo": "a photo the caller uploaded for the purpose"},
    "create_posting": {
        "invalid_photo": "a photo the caller uploaded for the purpose",
        "org_id": "an org that exists",
    },
    "update_posting": {
        "invalid_photo": "a photo the caller uploaded for the purpose",
        "starts_at": "a time to come (the clock)",
        "ends_at": "a time to come, after starts_at (the clock, the posting's own)",
        "expires_at": "a time to come, within the kind's days (the clock, the posting's kind)",
        "capacity": "the posting's kind (app.policy) and its claims",
        "energy_cost": "the posting's kind (app.policy)",
        "claim_ttl_hours": "the posting's kind (app.policy)",
        "beneficiary": "the posting's kind (app.policy: only a wish has a beneficiary)",
    },
    "register_volunteer": {
        "id_number": "the check digit and a real birth date (a relation within the number)",
        "birth_date": "the birth date the ID number holds",
        "skills": "the vocabulary of GET /api/v1/skills (the database's)",
        "guardian": "the holder's age (under 14: a guardian's consent, an SMS code sent)",
        "guardian_required": "the holder's age (under 14: a guardian's consent)",
        "invalid_sms_code": "the guardian's SMS code that was sent",
    },
    "check_in": {"too_far_from_site": "where the claim's event is"},
    "check_out": {"too_far_from_site": "where the claim's event is"},
    "confirm_claim": {
        "rating": "the claimed posting's kind (a wish or a service is rated)",
        "minutes_above_reported": "the minutes the volunteer reported on this claim (never more are credited)",
    },
    "issue_certificate": {
        "no_records": "the caller's service records in the period",
        "to": "not after today (the clock)",
        "from": "not after to, which is today when left out (the clock)",
    },
    "add_member": {"user_id": "a user that exists"},
    "add_honor_record": {
        "volunteer_required": "a user who registered as a volunteer",
        "not_org_volunteer": "a volunteer who is a member of the org",
        "volunteer_id": "a volunteer that exists",
        "user_id": "a volunteer that exists",
        "started_at": "not in the future (the clock)",
        "ended_at": "not in the future (the clock), not before started_at",
        "minutes": "within started_at to ended_at, and not running into the future (the clock)",
    },
    "report_to_community": {"org_id": "an org that is an approved community"},
    "list_postings": {"home_required": "for_me: the caller's home point (PUT /api/v1/me/volunteer)"},
}


def _same_operations_as_the_config() -> None:
    with open(os.path.join(os.path.dirname(__file__), "schemathesis.toml"), "rb") as config:
        excepted = {
            operation_id
            for entry in tomllib.load(config).get("operations", [])
            if "422" in entry.get("checks", {}).get("positive_data_acceptance", {}).get("expected-statuses", [])
            for operation_id in entry.get("include-operation-id", [])
        }
    if excepted != set(RULES_OF_STATE):
        raise RuntimeError(f".ci/schemathesis.toml and RULES_OF_STATE differ: {sorted(excepted ^ set(RULES_OF_STATE))}")


_same_operations_as_the_config()


def _meant_valid(case) -> bool:
    mode = getattr(getattr(case.meta, "generation", None), "mode", None)
    return mode is not None and mode.is_positive


def _refused_by(body: dict) -> set[str]:
    """The slug, or for a validation_error the fields it names (any location)."""
    if body.get("error") != "validation_error":
        return {str(body.get("error"))}
    return {field for fields_ in (body.get("errors") or {}).values() for field in fields_}


@schemathesis.check
def refused_by_a_rule_of_state(ctx, response, case):
    """Schema-valid data refused (422) by the operation's :data:`RULES_OF_STATE` only."""
    if not _meant_valid(case) or response.status_code != 422:
        return None
    operation_id = case.operation.definition.raw.get("operationId")
    rules = RULES_OF_STATE.get(operation_id)
    if rules is None:
        return None  # positive_data_acceptance itself refuses it
    try:
        refused = _refused_by(response.json())
    except ValueError:
        refused = {"(not JSON)"}
    unknown = refused - set(rules)
    if unknown:
        raise AssertionError(
            f"{operation_id}: schema-valid data refused by {', '.join(sorted(unknown))}, not a rule of state "
            "(.ci/schemathesis_hooks.py RULES_OF_STATE): state the rule in the document"
        )
    return None


@schemathesis.hook
def before_call(context, case, kwargs):
    """Before every request of every phase (examples, coverage, fuzzing, stateful):
    on the case and on the request's own arguments, whichever the call is built from."""
    fresh = str(uuid.uuid4())
    operation_id = case.operation.definition.raw.get("operationId")
    other = SIGNED_IN_AS.get(operation_id)
    if _PERSONALISED in (case.operation.definition.raw.get("description") or ""):
        # Public, and a token makes it the caller's view: the signed-in app sends its
        # token, and so does the run (what the runner posted and is still under review
        # is theirs to see: anonymous, 404).
        if case.headers is None:
            case.headers = {}
        for headers in (case.headers, kwargs.get("headers")):
            if isinstance(headers, MutableMapping):  # a case's headers: requests' CaseInsensitiveDict
                headers.setdefault("Authorization", "Bearer " + os.environ["ST_TOKEN"])
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
        if isinstance(query, dict):
            _in_order(query)
            _for_me_alone(query)
            if operation_id == "org_figures":
                _at_most_max_periods(query)
    for body in (case.body, kwargs.get("json")):
        if isinstance(body, dict):
            _in_order(body)
            _quiet_hours_span_time(body)
            if operation_id == "create_posting" and _meant_valid(case):
                _fits_its_kind(body)
