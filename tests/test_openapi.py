"""The served OpenAPI document validates and describes every route; the
Swagger UI page and its assets load from the app itself."""

from __future__ import annotations

import re

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from tests.factories import make_org, make_posting, make_volunteer

SKIPPED_RULES = {"/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/static/<path:filename>"}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
PUBLIC = {("/api/v1/auth/register", "post"), ("/api/v1/auth/login", "post")}


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
    assert spec["info"]["title"] == "甬·志愿 API"
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
    assert set(props["required"]) == {"phone", "password", "display_name"}
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
    registered = client.post(
        "/api/v1/auth/register", json={"phone": "13812345678", "password": "long-enough", "display_name": "x"}
    ).get_json()
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
        client.post("/api/v1/auth/register", json={"phone": "13812345678", "password": "x" * 8, "display_name": "y"}),
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
