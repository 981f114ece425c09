"""The served OpenAPI document validates and describes every route; the
Swagger UI page and its assets load from the app itself."""

from __future__ import annotations

import json
import re

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from app.errors import MESSAGES
from app.models.orgs import ORG_KINDS
from app.policy import CLAIM_STATUSES, POSTING_KINDS, POSTING_STATUSES
from mobile_api.schemas.notifications import DEVICE_PLATFORMS
from tests.factories import make_org, make_posting, make_volunteer
from tests.helpers import register, sms_code

SKIPPED_RULES = {"/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/static/<path:filename>"}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
PUBLIC = {
    ("/api/v1/auth/register", "post"),
    ("/api/v1/auth/login", "post"),
    ("/api/v1/auth/sms-codes", "post"),
    ("/api/v1/auth/password-reset", "post"),
    ("/api/v1/legal", "get"),
}
REGISTER_FIELDS = {"phone", "sms_code", "password", "display_name", "privacy_version"}


@pytest.fixture
def spec(client) -> dict:
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    return resp.get_json()


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule)


def _app_operations(app) -> set[tuple[str, str]]:
    ops = set()
    for rule in app.url_map.iter_rules():
        path = rule.rule
        if path in SKIPPED_RULES or path.startswith("/api/v1/docs/"):
            continue
        if not (path.startswith("/api/v1/") or path in {"/healthz", "/readyz"}):
            continue
        for method in rule.methods & HTTP_METHODS:
            ops.add((_openapi_path(path), method.lower()))
    return ops


def test_document_validates(spec):
    validate(spec)
    assert spec["openapi"] == "3.0.3"
    # ASCII, so a generated package gets a name pip accepts; the Chinese name is in the description.
    assert spec["info"]["title"] == "Yong Volunteer API"
    assert spec["info"]["title"].isascii()
    assert "甬·志愿" in spec["info"]["description"]
    assert spec["info"]["version"] == "v1"


def test_every_route_is_documented(app, spec):
    documented = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {m.lower() for m in HTTP_METHODS}
    }
    missing = _app_operations(app) - documented
    assert not missing, sorted(missing)
    # ... and nothing is documented that does not exist.
    assert documented <= _app_operations(app), sorted(documented - _app_operations(app))


def test_foundation_routes_are_there(spec):
    expected = {
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me", "patch"),
        ("/api/v1/me/password", "post"),
        ("/api/v1/me/volunteer", "put"),
        ("/api/v1/orgs", "post"),
        ("/api/v1/orgs/{org_id}", "get"),
        ("/api/v1/orgs/{org_id}/approve", "post"),
        ("/api/v1/orgs/{org_id}/members", "post"),
        ("/api/v1/orgs/{org_id}/members/{user_id}", "delete"),
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert expected <= documented, sorted(expected - documented)


def test_operations_have_a_summary_and_a_success_response(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert op.get("summary"), (path, method)
            assert any(code.startswith("2") for code in op["responses"]), (path, method)


def test_bearer_security_scheme(spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_operations_that_need_a_token_say_so(app, client, spec):
    """Call every operation without a token: those answering 401 must declare bearerAuth."""
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            url = re.sub(r"\{[a-z_]+\}", "1", path)
            resp = client.open(url, method=method.upper(), json={} if method in {"post", "put", "patch"} else None)
            needs_token = resp.status_code == 401 and resp.get_json()["error"] == "authorization_required"
            declared = {"bearerAuth": []} in op.get("security", [])
            if needs_token:
                assert declared, (path, method)
            if (path, method) in PUBLIC:
                assert not needs_token, (path, method)


def test_request_bodies_are_documented(spec):
    register = spec["paths"]["/api/v1/auth/register"]["post"]
    schema = register["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Register"}
    props = spec["components"]["schemas"]["Register"]
    assert set(props["required"]) == REGISTER_FIELDS
    assert props["additionalProperties"] is False
    volunteer = spec["paths"]["/api/v1/me/volunteer"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert volunteer == {"$ref": "#/components/schemas/VolunteerRegister"}


def test_responses_are_documented(spec):
    ok = spec["paths"]["/api/v1/auth/register"]["post"]["responses"]["201"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AuthResult"}
    user = spec["components"]["schemas"]["User"]["properties"]
    assert {"id", "phone_masked", "display_name", "email", "roles", "locale", "volunteer", "orgs", "created_at"} <= set(
        user
    )
    org = spec["components"]["schemas"]["Org"]["properties"]
    assert {"id", "name", "kind", "district", "status", "member_count"} <= set(org)


def test_error_component_is_our_envelope(spec):
    error = spec["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "status", "error", "message"}
    assert {"errors", "request_id"} <= set(error["properties"])


def test_every_declared_error_response_has_the_envelope(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            for code, response in op["responses"].items():
                if code == "default" or int(code) >= 400:
                    assert "$ref" in response or response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"
                    }, (path, method, code)


def _conforms(spec: dict, name: str, instance) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    OAS30Validator(schema).validate(instance)


def test_real_responses_match_the_document(app, client, spec):
    """What the app sends is what the document says it sends."""
    registered = register(app, client).get_json()
    _conforms(spec, "AuthResult", registered)
    account = make_volunteer(app)
    org_id, _ = make_org(app, account)
    client.patch("/api/v1/me", headers=account.headers, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    me = client.get("/api/v1/me", headers=account.headers).get_json()
    assert me["volunteer"]["home"] and me["orgs"] and me["quiet_hours"]
    _conforms(spec, "User", me)
    _conforms(spec, "Volunteer", me["volunteer"])
    _conforms(spec, "Org", client.get(f"/api/v1/orgs/{org_id}", headers=account.headers).get_json())
    _conforms(spec, "TokenPair", client.post("/api/v1/auth/refresh", headers=account.refresh_headers).get_json())
    for resp in (
        client.get("/nope"),
        client.post("/api/v1/auth/register", json={}),
        client.post("/api/v1/auth/register", json={"phone": "13812345679", "password": "x" * 8, "display_name": "y"}),
        client.get("/api/v1/me"),
    ):
        assert resp.status_code >= 400
        _conforms(spec, "Error", resp.get_json())


def test_500_matches_the_error_component(app):
    @app.route("/_test/boom")
    def boom():
        raise RuntimeError("x")

    client = app.test_client()
    spec = client.get("/api/v1/openapi.json").get_json()
    body = client.get("/_test/boom").get_json()
    assert "request_id" in body
    _conforms(spec, "Error", body)


def test_docs_page_and_assets(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html
    assets = re.findall(r'(?:src|href)="(/api/v1/docs/static/[^"]+)"', html)
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        resp = client.get(asset)
        assert resp.status_code == 200, asset
        assert len(resp.get_data()) > 1000, asset
        assert resp.headers["X-Request-ID"]
    assert client.get("/api/v1/docs/static/swagger-ui-bundle.js").mimetype in {
        "text/javascript",
        "application/javascript",
    }


def test_docs_asset_path_traversal_is_refused(client):
    resp = client.get("/api/v1/docs/static/../../../../etc/passwd")
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "not_found"
    assert client.get("/api/v1/docs/static/no-such-file.js").status_code == 404


def test_matching_responses_match_the_document(app, client, spec):
    """The skills page, a "for me" page with its match, a volunteer's rating and a
    claim with its claimant's rating are what the document says."""
    volunteer = make_volunteer(app, skills=["elderly"])
    org_id, coordinator = make_org(app)
    posting_id = make_posting(app, coordinator, kind="project", org_id=org_id, tags=["助老"])
    _conforms(spec, "SkillPage", client.get("/api/v1/skills").get_json())
    page = client.get("/api/v1/postings?for_me=true", headers=volunteer.headers).get_json()
    assert page["items"][0]["match"] == {"skills": ["elderly"], "distance_km": 0.0}
    _conforms(spec, "PostingPage", page)
    claim = client.post(f"/api/v1/postings/{posting_id}/claims", headers=volunteer.headers, json={}).get_json()
    seen = client.get(f"/api/v1/claims/{claim['id']}", headers=coordinator.headers).get_json()
    assert seen["volunteer"]["rating"] == {"average": None, "count": 0}
    _conforms(spec, "Claim", seen)
    _conforms(spec, "Volunteer", client.get("/api/v1/me", headers=volunteer.headers).get_json()["volunteer"])


# --- a document for client generators (issue 13) ----------------------------------------------------------------

# Operations anyone may call without a token.
PUBLIC_OPERATIONS = {
    "healthz",
    "readyz",
    "register",
    "login",
    "send_sms_code",
    "reset_password",
    "get_legal",
    "list_skills",
    "list_districts",
    "city_stats",
    "verify_certificate",
    "calendar_feed",
}
# Public, and a token changes the answer (the caller's own view).
OPTIONAL_TOKEN_OPERATIONS = {"list_orgs", "get_org", "list_postings", "get_posting"}


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, op


def test_every_operation_has_a_unique_snake_case_operation_id(spec):
    ids = [op.get("operationId") for _, _, op in _operations(spec)]
    assert all(ids), [(p, m) for p, m, op in _operations(spec) if not op.get("operationId")]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) for i in ids), ids
    assert spec["paths"]["/api/v1/postings/{posting_id}/claims"]["post"]["operationId"] == "claim_posting"


def test_every_operation_has_a_description_beyond_its_summary(spec):
    for path, method, op in _operations(spec):
        assert op.get("description") and op["description"] != op.get("summary"), (path, method)
    register = spec["paths"]["/api/v1/auth/register"]["post"]["description"]
    assert "Public" in register and "`phone_taken`" in register


def test_public_operations_need_no_token(app, client, spec):
    for path, method, op in _operations(spec):
        if op["operationId"] in PUBLIC_OPERATIONS:
            assert op["security"] == [], op["operationId"]
        elif op["operationId"] in OPTIONAL_TOKEN_OPERATIONS:
            # generators read any requirement as "token needed": public, and the text says what a token adds
            assert op["security"] == [], op["operationId"]
            assert "the answer is the caller's view" in op["description"], op["operationId"]
            assert "401" in op["responses"], op["operationId"]  # a bad token is still refused
        else:
            assert op["security"] == [{"bearerAuth": []}], op["operationId"]
            # ... and it means it: without a token the answer is 401.
            url = re.sub(r"\{[a-z_]+\}", "1", path)
            resp = client.open(url, method=method.upper(), json={} if method in {"post", "put", "patch"} else None)
            assert resp.status_code == 401, (op["operationId"], resp.status_code)
            assert "401" in op["responses"], op["operationId"]


NULL_OBJECT = {"type": "object", "nullable": True, "enum": [None]}


def test_nullable_objects_are_a_typed_reference_or_null(spec):
    """OpenAPI 3.0.3 reads ``nullable`` only beside a ``type``, and an ``allOf`` or a
    ``$ref`` never lets null through: a nullable object is the reference or a null."""
    schemas = spec["components"]["schemas"]
    for schema, prop, target in (
        ("User", "volunteer", "Volunteer"),
        ("User", "quiet_hours", "QuietHours"),
        ("Volunteer", "home", "Location"),
        ("Posting", "location", "Location"),
        ("Posting", "org", "PostingOrg"),
        ("Posting", "my_claim", "Claim"),
        ("Posting", "match", "PostingMatch"),
        ("MyClaim", "posting", "ClaimPosting"),
        ("ClaimPosting", "location", "Location"),
        ("NotificationSettings", "quiet_hours", "QuietHours"),
    ):
        assert schemas[schema]["properties"][prop]["anyOf"] == [
            {"$ref": f"#/components/schemas/{target}"},
            NULL_OBJECT,
        ], (schema, prop)
    # No untyped nullable object, and no nullable beside an allOf, is left anywhere.
    text = json.dumps(spec)
    assert '{"type": "object", "nullable": true}' not in text
    assert not [name for name, schema in schemas.items() for prop in schema.get("properties", {}).values() if
                prop.get("nullable") and "type" not in prop]  # fmt: skip


def test_nullable_enums_are_one_titled_enum_or_null(app, spec):
    schemas = spec["components"]["schemas"]
    role = schemas["Org"]["properties"]["role"]
    assert role["anyOf"] == [
        {"type": "string", "enum": ["coordinator", "member"], "title": "role"},
        {"type": "string", "nullable": True, "enum": [None]},
    ]
    district = schemas["Stats"]["properties"]["district"]["anyOf"]
    assert district[0] == {"type": "string", "enum": list(app.config["DISTRICTS"]), "title": "district"}
    # no enum lists null beside its values (openapi-python-client makes three classes of one)
    for name, schema in schemas.items():
        for prop, value in schema.get("properties", {}).items():
            enum = value.get("enum")
            assert enum is None or None not in enum, (name, prop)


def test_enums_come_from_the_rulebook_and_the_config(app, spec):
    schemas = spec["components"]["schemas"]
    districts = list(app.config["DISTRICTS"])
    for schema in ("Posting", "PostingCreate", "Org", "OrgCreate", "Volunteer", "VolunteerRegister", "ClaimPosting"):
        assert schemas[schema]["properties"]["district"]["enum"] == districts, schema
    assert schemas["Posting"]["properties"]["kind"]["enum"] == list(POSTING_KINDS)
    assert schemas["PostingCreate"]["properties"]["kind"]["enum"] == list(POSTING_KINDS)
    assert schemas["Posting"]["properties"]["status"]["enum"] == list(POSTING_STATUSES)
    assert schemas["Claim"]["properties"]["status"]["enum"] == list(CLAIM_STATUSES)
    assert schemas["Claim"]["properties"]["kind"]["enum"] == list(POSTING_KINDS)
    assert schemas["Org"]["properties"]["kind"]["enum"] == list(ORG_KINDS)
    assert schemas["Device"]["properties"]["platform"]["enum"] == list(DEVICE_PLATFORMS)
    assert schemas["DeviceCreate"]["properties"]["platform"]["enum"] == list(DEVICE_PLATFORMS)
    # A nullable enum is the enum or null (test_nullable_enums_are_one_titled_enum_or_null).
    assert schemas["Stats"]["properties"]["district"]["anyOf"][0]["enum"] == districts
    assert set(schemas["Error"]["properties"]["error"]["enum"]) >= set(MESSAGES)


def test_district_enum_follows_the_configured_districts(make_app):
    other = make_app(DISTRICTS=("haishu", "cixi"))
    spec = other.test_client().get("/api/v1/openapi.json").get_json()
    assert spec["components"]["schemas"]["PostingCreate"]["properties"]["district"]["enum"] == ["haishu", "cixi"]


def test_response_fields_that_are_always_there_are_required(spec):
    schemas = spec["components"]["schemas"]
    assert set(schemas["Posting"]["required"]) == set(schemas["Posting"]["properties"])
    assert set(schemas["User"]["required"]) == set(schemas["User"]["properties"])
    assert set(schemas["Claim"]["required"]) == set(schemas["Claim"]["properties"])
    # Left out for some viewers, so not required:
    assert "phone" not in schemas["Beneficiary"]["required"]
    assert "rating" not in schemas["ClaimVolunteer"]["required"]
    assert "role" not in schemas["Org"]["required"]
    # Request schemas keep what a request must hold.
    assert set(schemas["Register"]["required"]) == REGISTER_FIELDS
    assert "required" not in schemas["UserUpdate"]
    # Every schema of an answer says what is always there.
    unmarked = [
        name
        for name, schema in schemas.items()
        if schema.get("properties") and "required" not in schema and name not in _request_schemas(spec)
    ]
    assert unmarked == [], unmarked


def _request_schemas(spec) -> set[str]:
    names = set()
    for _, _, op in _operations(spec):
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        if "$ref" in body:
            names.add(body["$ref"].rsplit("/", 1)[1])
    # nested input objects
    names |= {"BeneficiaryInput", "PaginationMetadata"}
    return names


def test_every_json_body_has_an_example(spec):
    for path, method, op in _operations(spec):
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert body.get("example"), (path, method)
            _conforms(spec, body["schema"]["$ref"].rsplit("/", 1)[1], body["example"])


def test_every_request_example_is_accepted(app, client, spec):
    """Send each operation's example, as a caller who may, on rows made for it:
    the answer is 2xx, or an error the operation documents — never a 500, and
    never a 422 about the example itself."""
    world = _example_world(app)
    examples = {op["operationId"]: (path, method, op) for path, method, op in _operations(spec)}
    with_body = {op_id for op_id, (_, _, op) in examples.items() if "requestBody" in op}
    assert with_body == set(EXAMPLE_SCENARIOS), sorted(with_body ^ set(EXAMPLE_SCENARIOS))
    for op_id, (who, params, ids) in EXAMPLE_SCENARIOS.items():
        path, method, op = examples[op_id]
        body = dict(op["requestBody"]["content"]["application/json"]["example"])
        body.update({key: world[name] for key, name in ids.items()})
        url = path
        for name, key in params.items():
            url = url.replace("{" + name + "}", str(world[key]))
        headers = world["accounts"][who].headers if who else {}
        resp = client.open(url, method=method.upper(), json=body, headers=headers)
        code = resp.status_code
        assert code < 300 or (str(code) in op["responses"] and code not in {422, 500}), (op_id, code, resp.get_json())
        if op_id == "issue_certificate":
            world["certificate"] = resp.get_json()["id"]


# operationId → (who calls, path parameter → world key, body id field → world key), in the order they run.
EXAMPLE_SCENARIOS = {
    "send_sms_code": (None, {}, {}),
    "register": (None, {}, {"sms_code": "register_code"}),
    "login": (None, {}, {}),
    "change_phone": ("mover", {}, {"sms_code": "change_phone_code"}),
    "accept_consents": ("resident", {}, {}),
    "delete_me": ("leaver", {}, {}),
    "update_me": ("resident", {}, {}),
    "register_volunteer": ("newcomer", {}, {}),
    "apply_for_org": ("resident", {}, {}),
    "reject_org": ("admin", {"org_id": "pending_org"}, {}),
    "add_member": ("coordinator", {"org_id": "org"}, {"user_id": "resident_id"}),
    "request_to_join": ("volunteer", {"org_id": "community"}, {}),
    "reject_join_request": ("community_coordinator", {"org_id": "community", "user_id": "volunteer_id"}, {}),
    "report_to_community": ("party_member", {}, {"org_id": "community"}),
    "add_honor_record": ("coordinator", {"org_id": "org"}, {"volunteer_id": "volunteer_id"}),
    "create_posting": ("resident", {}, {}),
    "update_posting": ("resident", {"posting_id": "open_wish"}, {}),
    "reject_posting": ("coordinator", {"posting_id": "pending_wish"}, {}),
    "cancel_posting": ("resident", {"posting_id": "wish_to_cancel"}, {}),
    "register_device": ("volunteer", {}, {}),
    "mark_read": ("volunteer", {}, {}),
    "put_settings": ("volunteer", {}, {}),
    "claim_posting": ("volunteer", {"posting_id": "open_wish"}, {}),
    "create_upload": ("volunteer", {}, {}),
    "fulfil_claim": ("volunteer", {"claim_id": "active_claim"}, {"photo_ids": "fulfil_photos"}),
    "confirm_claim": ("resident", {"claim_id": "fulfilled_claim"}, {}),
    "check_in": ("volunteer", {"claim_id": "event_claim"}, {}),
    "check_out": ("volunteer", {"claim_id": "event_claim"}, {}),
    "reject_record": ("coordinator", {"record_id": "pending_record"}, {}),
    "approve_records": ("coordinator", {"org_id": "org"}, {"ids": "pending_records"}),
    "issue_certificate": ("volunteer", {}, {"org_id": "org"}),
    "void_certificate": ("coordinator", {"certificate_id": "certificate"}, {}),
    "change_password": ("changer", {}, {}),
    # Last: it ends the resident's sessions.
    "reset_password": (None, {}, {"sms_code": "reset_password_code"}),
}


def _example_world(app) -> dict:
    from datetime import timedelta

    from app.clock import utcnow
    from mobile_api.examples import HOME, REQUEST_EXAMPLES
    from tests.factories import add_member, make_claim, make_record, make_user, upload_photo

    password = REQUEST_EXAMPLES["login"]["password"]
    resident = make_user(app, phone="+86" + REQUEST_EXAMPLES["login"]["phone"], password=password)
    mover = make_user(app, password=REQUEST_EXAMPLES["change_phone"]["password"])
    leaver = make_user(app, password=REQUEST_EXAMPLES["delete_me"]["password"])
    changer = make_user(app, password=REQUEST_EXAMPLES["change_password"]["old_password"])
    client = app.test_client()
    codes = {
        f"{purpose}_code": sms_code(app, client, REQUEST_EXAMPLES[example]["phone"], purpose)
        for example, purpose in (
            ("register", "register"),
            ("reset_password", "reset_password"),
            ("change_phone", "change_phone"),
        )
    }

    newcomer = make_user(app)
    admin = make_user(app, admin=True)
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app, home=(HOME["lat"], HOME["lng"]))
    add_member(app, org_id, volunteer)
    # a recorded record a day ago (the certificate's), and two pending ones for the review examples
    make_record(app, volunteer, org_id, ended_at=utcnow() - timedelta(days=1))
    pending = [
        make_record(app, volunteer, org_id, status="pending", ended_at=utcnow() - timedelta(days=days))
        for days in (2, 3)
    ]
    pending_org, _ = make_org(app, status="pending")
    community, community_coordinator = make_org(app, kind="community")
    branch, _ = make_org(app, kind="party_branch")
    party_member = make_volunteer(app)
    add_member(app, branch, party_member)
    here = {"lat": HOME["lat"], "lng": HOME["lng"]}
    open_wish = make_posting(app, resident, **here)
    wish_to_cancel = make_posting(app, resident, **here)
    pending_wish = make_posting(app, resident, status="pending_review", **here)
    active_claim = make_claim(app, make_posting(app, resident, **here), volunteer)
    fulfilled_claim = make_claim(app, make_posting(app, resident, **here), volunteer, status="fulfilled")
    soon = utcnow() + timedelta(minutes=10)
    event = make_posting(
        app, coordinator, kind="project", org_id=org_id, starts_at=soon, ends_at=soon + timedelta(hours=2), **here
    )
    return {
        **codes,
        "accounts": {
            "mover": mover,
            "leaver": leaver,
            "changer": changer,
            "resident": resident,
            "newcomer": newcomer,
            "admin": admin,
            "coordinator": coordinator,
            "volunteer": volunteer,
            "community_coordinator": community_coordinator,
            "party_member": party_member,
        },
        "org": org_id,
        "community": community,
        "pending_record": pending[0],
        "pending_records": [pending[1]],
        "pending_org": pending_org,
        "resident_id": resident.id,
        "volunteer_id": volunteer.id,
        "open_wish": open_wish,
        "wish_to_cancel": wish_to_cancel,
        "pending_wish": pending_wish,
        "active_claim": active_claim,
        "fulfilled_claim": fulfilled_claim,
        "event_claim": make_claim(app, event, volunteer),
        "fulfil_photos": [upload_photo(app.test_client(), volunteer)],
    }


def test_the_suite_checks_every_answer_strictly(app):
    """The check every test's answers go through (tests/response_check.py) refuses, with
    openapi-core's strict reading, what a generated client would trip on: a wrong type,
    an undeclared media type, a download of the wrong kind, a null where none may be."""
    import json as _json

    from tests.response_check import ResponseChecker

    checker = ResponseChecker(app)
    with app.test_request_context("/healthz"):
        checker._check(app.response_class(_json.dumps({"status": 5}), mimetype="application/json"))
        checker._check(app.response_class("ok", mimetype="text/plain"))
    with app.test_request_context("/api/v1/certificates/1/pdf"):
        checker._check(app.response_class(b"%PDF-1.4", mimetype="application/pdf"))  # what it says it sends
        checker._check(app.response_class(b"a,b", mimetype="text/csv"))
    with app.test_request_context("/api/v1/me/notification-settings"):
        body = {"muted_kinds": [], "quiet_hours": {"start": "22:00"}, "nearby_alerts": True}
        checker._check(app.response_class(_json.dumps(body), mimetype="application/json"))
    strictly = [problem for problem in checker.problems if "strictly" in problem]
    assert len(strictly) == 4, checker.problems
    assert "status: 5 is not of type 'string'" in strictly[0]
    assert "text/plain" in strictly[1] and "text/csv" in strictly[2]
    assert "quiet_hours" in strictly[3] or "'end' is a required property" in strictly[3], strictly[3]


def test_the_document_is_built_once_per_settings_and_only_reused_for_the_same(app, make_app):
    """create_app() reuses the document it built for the same settings (the suite
    builds an app per test); other settings get their own."""
    from app.extensions import api

    first = app.test_client().get("/api/v1/openapi.json").get_json()
    same = make_app()
    assert not api.building
    assert same.test_client().get("/api/v1/openapi.json").get_json() == first
    other = make_app(DISTRICTS=("haishu", "cixi"))
    spec = other.test_client().get("/api/v1/openapi.json").get_json()
    assert spec["components"]["schemas"]["Org"]["properties"]["district"]["enum"] == ["haishu", "cixi"]
    again = make_app()
    assert again.test_client().get("/api/v1/openapi.json").get_json() == first


def test_the_text_is_markdown_that_swagger_ui_renders(spec):
    """Summaries and descriptions are Markdown (`code`), not reST (``code``, :func:),
    which Swagger UI would show with its backticks and colons."""
    texts = []

    def collect(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"summary", "description", "title"} and isinstance(value, str):
                    texts.append(value)
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(spec)
    assert len(texts) > 100
    rest = [text for text in texts if "``" in text or re.search(r":(?:func|class|meth|attr|data|mod):`", text)]
    assert rest == [], rest


def test_links_follow_a_wish_from_posting_to_confirmation(spec):
    """posting → claim → fulfil → confirm, each answer's id feeding the next operation."""
    operations = {op["operationId"]: op for _path, _method, op in _operations(spec)}
    chain = [("create_posting", "201", "claim_posting"), ("claim_posting", "201", "fulfil_claim"),
             ("fulfil_claim", "200", "confirm_claim")]  # fmt: skip
    for source, code, target in chain:
        links = operations[source]["responses"][code]["links"]
        assert any(link["operationId"] == target for link in links.values()), (source, links)
    for op in operations.values():
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in operations


def test_no_served_example_changes_a_demo_accounts_credentials():
    """A run of the served examples signed in as a demo account (CI's schemathesis)
    must not change its password or phone, nor end it."""
    from app.seed import DEMO_PASSWORD
    from mobile_api.examples import REQUEST_EXAMPLES

    assert REQUEST_EXAMPLES["change_password"]["old_password"] != DEMO_PASSWORD
    assert REQUEST_EXAMPLES["change_phone"]["password"] != DEMO_PASSWORD
    assert REQUEST_EXAMPLES["delete_me"]["password"] != DEMO_PASSWORD
