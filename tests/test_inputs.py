"""No input a client can send yields a 5xx, and bad input writes nothing."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.inputs import json_depth
from app.models import Posting, User
from app.models.base import MAX_ID
from tests.factories import make_org, make_posting, make_user, make_volunteer

HUGE = [MAX_ID + 1, 2**63, 2**64 + 5]


@pytest.mark.parametrize("big", HUGE)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/postings/{}"),
        ("PATCH", "/api/v1/postings/{}"),
        ("POST", "/api/v1/postings/{}/claims"),
        ("GET", "/api/v1/claims/{}"),
        ("POST", "/api/v1/claims/{}/withdraw"),
        ("GET", "/api/v1/orgs/{}"),
        ("DELETE", "/api/v1/orgs/{}/members/{}"),
    ],
)
def test_ids_beyond_the_integer_range_are_404(app, client, method, path, big):
    user = make_user(app)
    resp = client.open(path.format(big, big), method=method, json={}, headers=user.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (404, "not_found")


@pytest.mark.parametrize("big", HUGE)
def test_ids_beyond_the_range_in_a_query_or_body_are_422(app, client, big):
    coordinator = make_user(app)
    org_id, coordinator = make_org(app, coordinator)
    resp = client.get(f"/api/v1/postings?org_id={big}")
    assert resp.status_code == 422 and "org_id" in resp.get_json()["errors"]["query"]
    body = {"kind": "wish", "title": "t", "description": "d", "district": "haishu", "org_id": big}
    resp = client.post("/api/v1/postings", json=body, headers=coordinator.headers)
    assert resp.status_code == 422 and "org_id" in resp.get_json()["errors"]["json"]
    resp = client.post(
        f"/api/v1/orgs/{org_id}/members", json={"user_id": big, "role": "member"}, headers=coordinator.headers
    )
    assert resp.status_code == 422
    resp = client.post("/api/v1/me/notifications/read", json={"ids": [1, big]}, headers=coordinator.headers)
    assert resp.status_code == 422


def test_json_nested_too_deep_is_400_on_every_json_route(app, client):
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/postings"):
        resp = client.post(path, data=deep, content_type="application/json")
        assert (resp.status_code, resp.get_json()["error"]) == (400, "invalid_json"), path
    user = make_user(app)
    resp = client.post("/api/v1/postings", data=deep, content_type="application/json", headers=user.headers)
    assert resp.status_code == 400
    assert json_depth(b'{"a": [1, {"b": "[[[[[[["}]}') == 3


@pytest.mark.parametrize("bad", ["\x00", "a\x00b", "\ud800", "x\udfffy"])
def test_nul_and_lone_surrogates_are_refused_and_nothing_is_written(app, client, bad):
    user = make_user(app)

    def sent(body) -> dict:  # escaped as a phone's JSON encoder sends it (a lone surrogate has no UTF-8)
        return {"data": json.dumps(body), "content_type": "application/json"}

    body = {"kind": "wish", "title": f"标题{bad}", "description": "描述", "district": "haishu", "tags": ["ok", bad]}
    resp = client.post("/api/v1/postings", **sent(body), headers=user.headers)
    assert resp.status_code == 422, resp.get_json()
    errors = resp.get_json()["errors"]["json"]
    assert "title" in errors and "1" in errors["tags"]
    resp = client.patch("/api/v1/me", **sent({"display_name": bad}), headers=user.headers)
    assert resp.status_code == 422
    register = {"phone": "13812345678", "password": "long-enough", "display_name": bad}
    assert client.post("/api/v1/auth/register", **sent(register)).status_code == 422
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Posting.id))) == 0
        assert db.session.scalar(sa.select(User.display_name).where(User.id == user.id)) != bad
    # in a URL only NUL can arrive (bytes that are no UTF-8 decode as U+FFFD)
    assert client.get("/api/v1/postings?tag=a%00b").status_code == 400
    resp = client.delete("/api/v1/me/devices/tok%00en", headers=user.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (400, "bad_request")


def test_a_422_with_positions_and_names_in_one_errors_object(app, client):
    volunteer = make_user(app)
    body = {"real_name": "张三", "id_number": "x", "district": "haishu", "skills": [0, "a", "a"]}
    resp = client.put("/api/v1/me/volunteer", json=body, headers=volunteer.headers)
    assert resp.status_code == 422
    skills = resp.get_json()["errors"]["json"]["skills"]
    assert all(isinstance(key, str) for key in skills)


def test_old_dates_are_written_with_four_digit_years(app, client):
    from datetime import UTC, datetime

    author = make_user(app)
    posting_id = make_posting(app, author, expires_at=datetime(80, 1, 19, 12, 47, 6, tzinfo=UTC))
    assert client.get(f"/api/v1/postings/{posting_id}").get_json()["expires_at"] == "0080-01-19T12:47:06Z"


def test_a_body_over_a_mebibyte_is_413(app, client):
    big = b'{"note": "' + b"x" * (1024 * 1024) + b'"}'
    resp = client.post("/api/v1/auth/login", data=big, content_type="application/json")
    assert (resp.status_code, resp.get_json()["error"]) == (413, "payload_too_large")


def test_a_chunked_body_over_a_mebibyte_is_413_not_cut(app):
    """Through a real WSGI server, as a phone's chunked upload arrives."""
    import http.client
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:

        def send(size):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            payload = b'{"phone": "13812345678", "password": "' + b"x" * size + b'"}'
            chunks = (payload[i : i + 65536] for i in range(0, len(payload), 65536))
            conn.request(
                "POST",
                "/api/v1/auth/login",
                body=chunks,
                headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                encode_chunked=True,
            )
            resp = conn.getresponse()
            return resp.status, resp.read()

        status, body = send(2 * 1024 * 1024)
        assert status == 413, body
        status, _ = send(100)
        assert status == 401  # a small chunked body is read whole
    finally:
        server.shutdown()


def test_a_volunteer_with_max_int_fields_is_still_a_4xx(app, client):
    volunteer = make_volunteer(app)
    resp = client.get(f"/api/v1/postings?author_id={MAX_ID}&limit=100", headers=volunteer.headers)
    assert resp.status_code == 200 and resp.get_json()["items"] == []


# --- bodies the parser cannot read ---------------------------------------------------------


def op_takes_body(app, method: str, path: str) -> bool:
    """Whether the document gives the operation at (method, path) a request body."""
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    template = re.sub(r"/1(?=/|$)", "/{}", path)
    for documented, item in document["paths"].items():
        if re.sub(r"\{[^}]+\}", "{}", documented) == template and method.lower() in item:
            return "requestBody" in item[method.lower()]
    return False


def _json_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) that takes a JSON body, ids filled in with 1."""
    from app.inputs import takes_raw_body  # noqa: F401 - the marker the guard reads

    routes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "takes_raw_body", False) or not rule.rule.startswith("/api/v1"):
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<int:{argument}>", "1").replace(f"<{argument}>", "x")
        routes += [(method, path) for method in sorted(rule.methods & {"POST", "PUT", "PATCH"})]
    return routes


@pytest.mark.parametrize(
    "body",
    [
        b'{"phone": ' + b"1" * 4301 + b"}",  # past CPython's int-string limit
        b"[" + b"9" * 5000 + b"]",
        b'{"a": -' + b"7" * 10000 + b"}",
        b'{"a": "\xff\xfe"}',  # not UTF-8
        b'{"a": 1,}',
    ],
)
def test_a_body_the_parser_cannot_read_is_400_on_every_json_endpoint(app, client, body):
    user = make_user(app)
    routes = _json_routes(app)
    assert len(routes) > 30
    for headers in ({}, user.headers):
        for method, path in routes:
            resp = client.open(path, method=method, data=body, content_type="application/json", headers=headers)
            assert resp.status_code < 500, (method, path, resp.status_code, resp.get_data()[:200])
            if resp.status_code == 400:
                assert resp.get_json()["error"] == "invalid_json", (method, path)
            elif resp.status_code >= 400:  # answered before the body counts: 401, 404 … — the envelope
                assert resp.get_json()["code"] == resp.status_code, (method, path)
            else:  # an operation that takes no body ignores one
                assert not op_takes_body(app, method, path), (method, path, resp.status_code)
        # where a body is read, it is refused
        resp = client.post("/api/v1/auth/login", data=body, content_type="application/json")
        assert (resp.status_code, resp.get_json()["error"]) == (400, "invalid_json")


def test_a_number_beyond_any_float_is_422_not_500(app, client):
    org_id, coordinator = make_org(app)
    for value in (b"1e400", b"-1e400", b"1" + b"0" * 400):
        body = b'{"kind": "project", "title": "t", "description": "d", "district": "haishu", "capacity": ' + value
        resp = client.post(
            "/api/v1/postings", data=body + b"}", content_type="application/json", headers=coordinator.headers
        )
        assert resp.status_code in (400, 422), (value, resp.get_json())
