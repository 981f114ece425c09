"""The rules the document states are the rules the server enforces: what the
document calls valid is accepted, what it calls invalid is refused (422).
Schemathesis checks the same over the whole API (.ci/schemathesis.sh); these
pin each rule the document states beyond a field's type."""

from __future__ import annotations

import re
from datetime import date

import pytest
from jsonschema.exceptions import ValidationError as SchemaError
from marshmallow import ValidationError
from openapi_schema_validator import OAS30Validator

from app.policy import COORDINATORS, POSTING_KINDS, kinds_where
from app.validators import (
    ID_NUMBER_PATTERN,
    MOBILE_INPUT_PATTERN,
    as_json_schema_reads,
    id_check_char,
    validate_id_number,
)
from mobile_api.fields import NOT_BLANK_PATTERN, not_blank
from mobile_api.schemas.accounts import DeletionSchema, LoginSchema
from mobile_api.schemas.notifications import DeviceCreateSchema
from mobile_api.schemas.postings import LAT_LNG_PATTERN
from mobile_api.schemas.records import HonorRecordCreateSchema
from tests.factories import make_user, posting_defaults
from tests.moments import YEAR


@pytest.fixture
def spec(client) -> dict:
    return client.get("/api/v1/openapi.json").get_json()


def _valid(spec: dict, name: str, instance) -> bool:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    try:
        OAS30Validator(schema).validate(instance)
    except SchemaError:
        return False
    return True


PHONES_ACCEPTED = [
    "13812345678",
    "+8613812345678",
    "8613812345678",
    "008613812345678",
    "+86 138 1234 5678",
    "138-1234-5678",
    "  15912345678  ",
    "１３８１２３４５６７８",  # a Chinese input method's full-width digits
    "＋８６ １３８ １２３４ ５６７８",
    "17012345678",
    "19912345678",
]
PHONES_REFUSED = [
    "",
    "12345678901",  # no operator's prefix
    "1381234567",
    "138123456789",
    "+85291234567",
    "+12025550123",
    "057487654321",  # a Ningbo landline
    "(138)12345678",
    "138.1234.5678",
    "138 1234 567x",
    "\t13812345678",
    "tel:13812345678",
]


@pytest.mark.parametrize(
    ("phone", "accepted"), [(p, True) for p in PHONES_ACCEPTED] + [(p, False) for p in PHONES_REFUSED]
)
def test_a_phone_is_accepted_exactly_when_the_documented_pattern_says_so(client, spec, phone, accepted):
    pattern = spec["components"]["schemas"]["SmsCodeRequest"]["properties"]["phone"]["pattern"]
    assert pattern == MOBILE_INPUT_PATTERN
    assert bool(re.search(pattern, phone)) is accepted
    resp = client.post("/api/v1/auth/sms-codes", json={"phone": phone, "purpose": "register"})
    refused = resp.status_code == 422 and "phone" in resp.get_json()["errors"]["json"]
    assert refused is not accepted, resp.get_json()


def test_every_phone_field_states_the_pattern(spec):
    schemas = spec["components"]["schemas"]
    for name, field in [
        ("Login", "phone"),
        ("Register", "phone"),
        ("PhoneChange", "phone"),
        ("BeneficiaryInput", "phone"),
    ]:
        assert schemas[name]["properties"][field]["pattern"] == MOBILE_INPUT_PATTERN, name


def _id_number(first17: str = "33020319900101123") -> str:
    return first17 + id_check_char(first17)


FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９ｘ")


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        (_id_number(), True),
        (_id_number().translate(FULL_WIDTH), True),
        (" " + _id_number() + " ", True),
        (_id_number("11010519491231002").lower(), True),  # its check character is X
        (_id_number()[:17], False),
        (_id_number().replace("3", "①", 1), False),  # NFKC would read ① as 1: not a digit as typed
        (_id_number()[:6] + " " + _id_number()[6:], False),
        ("0" + _id_number()[1:], False),  # no region code starts with 0
    ],
)
def test_an_id_number_has_the_documented_shape(spec, raw, accepted):
    pattern = spec["components"]["schemas"]["VolunteerRegister"]["properties"]["id_number"]["pattern"]
    assert pattern == ID_NUMBER_PATTERN
    assert bool(re.search(pattern, raw)) is accepted
    if accepted:
        validate_id_number(raw, today=date(YEAR, 1, 1))
    else:
        with pytest.raises(ValueError):
            validate_id_number(raw, today=date(YEAR, 1, 1))


def test_the_privacy_version_is_the_configured_one(app, make_app):
    """A pattern matching the current version alone: not an enum, which a generated client
    would type as one (an app released before the policy moved on could not accept it)."""
    other = make_app(PRIVACY_VERSION="2026.12+b")  # on the database `app` made
    client = other.test_client()
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    for name in ("Consent", "Register"):
        field = schemas[name]["properties"]["privacy_version"]
        assert "enum" not in field
        assert re.search(field["pattern"], "2026.12+b")
        assert not any(re.search(field["pattern"], other) for other in ("2026x12+b", "2026.12b", "1", "2026.12+b!"))
    assert client.get("/api/v1/legal").get_json()["privacy_version"] == "2026.12+b"
    account = make_user(other)
    for version, accepted in (("2026.12", False), ("2026.12+b", True)):
        resp = client.post("/api/v1/me/consents", headers=account.headers, json={"privacy_version": version})
        assert (resp.status_code < 300) is accepted, resp.get_json()


@pytest.mark.parametrize(
    ("text", "accepted"), [("a", True), (" 帮忙 ", True), ("", False), ("  ", False), ("\u00a0\u3000", False)]
)
def test_blank_texts_are_refused_as_the_pattern_says(spec, text, accepted):
    for name, field in [("PostingCreate", "title"), ("Reject", "reason"), ("BeneficiaryInput", "name")]:
        assert spec["components"]["schemas"][name]["properties"][field]["pattern"] == NOT_BLANK_PATTERN
    assert bool(re.search(NOT_BLANK_PATTERN, text)) is accepted
    try:
        not_blank(text)
    except ValidationError:
        assert not accepted
    else:
        assert accepted


def test_skills_are_each_given_once(spec):
    assert spec["components"]["schemas"]["VolunteerRegister"]["properties"]["skills"]["uniqueItems"] is True


def _loads(schema, body) -> bool:
    try:
        schema.load(body)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("name", "schema", "body"),
    [
        ("HonorRecordCreate", HonorRecordCreateSchema, {"volunteer_id": 4, "minutes": 60}),
        ("HonorRecordCreate", HonorRecordCreateSchema, {"user_id": 4, "hours": 1.5}),
        ("HonorRecordCreate", HonorRecordCreateSchema, {"volunteer_id": 4, "user_id": 4, "minutes": 60}),
        ("HonorRecordCreate", HonorRecordCreateSchema, {"volunteer_id": 4, "minutes": 60, "hours": 1}),
        ("HonorRecordCreate", HonorRecordCreateSchema, {"minutes": 60}),
        ("HonorRecordCreate", HonorRecordCreateSchema, {"volunteer_id": 4}),
        ("Deletion", DeletionSchema, {"password": "secret-enough"}),
        ("Deletion", DeletionSchema, {"sms_code": "123456"}),
        ("Deletion", DeletionSchema, {"password": "secret-enough", "sms_code": "123456"}),
        ("Deletion", DeletionSchema, {}),
        ("Login", LoginSchema, {"phone": "13812345678", "password": "secret-enough"}),
        ("Login", LoginSchema, {"email": "a@example.com", "sms_code": "123456"}),
    ],
)
def test_exactly_one_of_is_stated_as_the_schema_loads_it(app, spec, name, schema, body):
    if name == "HonorRecordCreate":
        body = {**body, "reason": "社区服务"}
    with app.test_request_context():
        assert _valid(spec, name, body) is _loads(schema(), body)


def test_kinds_an_org_posts_need_the_org(spec):
    body = {"title": "社区义诊", "description": "周六上午", "district": "haishu"}
    needing = set(kinds_where(posted_by=COORDINATORS))
    assert needing
    for kind in POSTING_KINDS:
        assert _valid(spec, "PostingCreate", {**body, "kind": kind}) is (kind not in needing), kind
        assert _valid(spec, "PostingCreate", {**body, "kind": kind, "org_id": None}) is (kind not in needing), kind
        assert _valid(spec, "PostingCreate", {**body, "kind": kind, "org_id": 1}), kind


def test_the_server_refuses_a_kind_an_org_posts_without_the_org(app, client):
    admin = make_user(app, admin=True)
    for kind in kinds_where(posted_by=COORDINATORS):
        body = {"kind": kind, "title": "社区义诊", "description": "周六上午", "district": "haishu"}
        for name, value in posting_defaults(kind).items():
            if value is not None:
                body[name] = value.isoformat() if hasattr(value, "isoformat") else value
        resp = client.post("/api/v1/postings", headers=admin.headers, json=body)
        assert resp.status_code == 422, (kind, resp.get_json())
        assert list(resp.get_json()["errors"]["json"]) == ["org_id"], kind


@pytest.mark.parametrize(
    ("near", "accepted"),
    [
        ("29.87,121.55", True),
        ("-90,-180", True),
        ("90.0,180.000", True),
        ("0,0", True),
        ("90.1,121", False),
        ("29.87,180.5", False),
        ("29.87, 121.55", False),
        ("1e1,121", False),
        ("2_9,121", False),
        ("nan,121", False),
        ("29.87", False),
    ],
)
def test_near_is_accepted_exactly_when_the_documented_pattern_says_so(client, spec, near, accepted):
    (parameter,) = [p for p in spec["paths"]["/api/v1/postings"]["get"]["parameters"] if p["name"] == "near"]
    assert parameter["schema"]["pattern"] == LAT_LNG_PATTERN
    assert bool(re.search(LAT_LNG_PATTERN, near)) is accepted
    resp = client.get("/api/v1/postings", query_string={"near": near})
    assert (resp.status_code == 200) is accepted, resp.get_json()


def test_an_exclusive_bound_is_stated_as_one(spec):
    hours = spec["components"]["schemas"]["HonorRecordCreate"]["properties"]["hours"]
    assert hours["minimum"] == 0 and hours["exclusiveMinimum"] is True
    assert "exclusiveMaximum" not in hours
    assert not _valid(spec, "HonorRecordCreate", {"volunteer_id": 4, "hours": 0, "reason": "社区服务"})
    assert _valid(spec, "HonorRecordCreate", {"volunteer_id": 4, "hours": 0.5, "reason": "社区服务"})


@pytest.mark.parametrize(
    ("token", "accepted"),
    [
        ("fcm:APA91b-x_y", True),
        ("a b", False),
        ("\x1c", False),
        ("abc\n", False),
        ("\u3000", False),
        ("\ufeff", True),
        ("a\x00b", False),
    ],
)
def test_white_space_is_the_same_set_in_the_document_and_the_server(app, spec, token, accepted):
    """The document spells white space out (a pattern's \\s differs between Python and
    ECMAScript, e.g. U+001C), and a closing $ is the end of the text for both."""
    pattern = spec["components"]["schemas"]["DeviceCreate"]["properties"]["token"]["pattern"]
    assert "\\s" not in pattern and "\\s" not in NOT_BLANK_PATTERN and "\\s" not in ID_NUMBER_PATTERN
    assert bool(as_json_schema_reads(pattern).search(token)) is accepted
    with app.test_request_context():
        assert _loads(DeviceCreateSchema(), {"token": token, "platform": "android"}) is accepted


def _input_patterns(node):
    """Every pattern the document states for what a client sends (answers left out)."""
    if isinstance(node, dict):
        if node.get("readOnly"):
            return
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for key, value in node.items():
            if key not in ("responses", "example", "examples"):
                yield from _input_patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _input_patterns(value)


_NEGATED_CLASS = re.compile(r"(?<!\\)\[\^((?:\\.|[^\]\\])*)\]")
_BARE_DOT = re.compile(r"(?<!\\)\.(?![^\[]*\])")


def test_no_pattern_for_input_lets_a_nul_through(spec):
    """Every text refuses a NUL (BaseSchema, app.inputs): so no pattern may call one valid,
    or a client (and schemathesis) is told a text is fine that the server refuses. A
    negated class names U+0000; nothing matches any character with a bare dot."""
    patterns = set(_input_patterns(spec["paths"])) | set(_input_patterns(spec["components"]["schemas"]))
    assert patterns
    for pattern in patterns:
        for body in _NEGATED_CLASS.findall(pattern):
            assert "\\u0000" in body, pattern
        assert not _BARE_DOT.search(pattern), pattern
        assert not as_json_schema_reads(pattern).search("\x00"), pattern
