"""Every error path leaves the app in the one envelope of API.md:
``{"code", "status", "error", "message"[, "errors"]}`` — and every response
carries ``X-Request-ID``."""

from __future__ import annotations

import logging
import re

import pytest
from flask_smorest import abort as smorest_abort
from werkzeug.exceptions import abort as werkzeug_abort

from app.errors import MESSAGES, STATUS_SLUGS, Conflict, Forbidden, Invalid, NotFound
from app.i18n import in_locale
from tests.factories import make_user

ENVELOPE_KEYS = {"code", "status", "error", "message"}
REGISTER = "/api/v1/auth/register"
# A well-formed sign-up (its code was never sent: what these tests send fails before it is read).
SIGN_UP = {"phone": "13812345678", "sms_code": "123456", "password": "long-enough", "privacy_version": "1"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def message(app, slug: str, locale: str = "zh-CN") -> str:
    """The slug's message in ``locale``, from the catalogs."""
    with app.app_context(), in_locale(locale):
        return str(MESSAGES[slug])


def assert_envelope(resp, code: int, error: str, *, errors: bool = False) -> dict:
    """The response is the error envelope with this status and slug."""
    body = resp.get_json()
    assert resp.status_code == code, body
    assert resp.mimetype == "application/json"
    assert body is not None
    expected = ENVELOPE_KEYS | ({"errors"} if errors else set())
    assert set(body) == expected, body
    assert body["code"] == code
    assert body["error"] == error
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    assert "msg" not in body
    assert resp.headers["X-Request-ID"]
    return body


@pytest.fixture
def boom_app(app):
    """The test app with throwaway routes that fail in each way a view can."""

    @app.route("/_test/boom")
    def boom():
        raise RuntimeError("secret internal detail: postgres://admin:hunter2@db/prod")

    @app.route("/_test/key-error")
    def key_error():
        return {}["missing"]

    @app.route("/_test/conflict")
    def conflict():
        raise Conflict("phone_taken")

    @app.route("/_test/forbidden")
    def forbidden():
        raise Forbidden("admin_required")

    @app.route("/_test/not-found")
    def not_found():
        raise NotFound()

    @app.route("/_test/invalid")
    def invalid():
        raise Invalid("district", "unknown district")

    @app.route("/_test/smorest-abort")
    def smorest_aborted():
        smorest_abort(409, message="custom words")

    @app.route("/_test/werkzeug-abort")
    def werkzeug_aborted():
        werkzeug_abort(403)

    return app


# --- routing ------------------------------------------------------------------


def test_unknown_route_is_404_envelope(app, client):
    body = assert_envelope(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert body["status"] == "Not Found"
    assert body["message"] == message(app, "not_found") == "不存在或无权查看"


def test_unknown_route_outside_api_is_404_envelope(client):
    assert_envelope(client.post("/wp-login.php", json={}), 404, "not_found")


def test_wrong_method_is_405_envelope_with_allow(client):
    resp = client.delete("/healthz")
    body = assert_envelope(resp, 405, "method_not_allowed")
    assert body["status"] == "Method Not Allowed"
    assert "GET" in resp.headers["Allow"]


def test_wrong_method_on_api_route_is_405(client):
    resp = client.get(REGISTER)
    assert_envelope(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]


# --- bodies -------------------------------------------------------------------


def test_schema_validation_is_422_with_location_field_messages(client):
    resp = client.post(REGISTER, json={"phone": "12345", "password": "short"})
    body = assert_envelope(resp, 422, "validation_error", errors=True)
    assert body["status"] == "Unprocessable Entity"
    fields = body["errors"]["json"]
    assert set(fields) == {"phone", "password", "display_name", "sms_code", "privacy_version"}
    assert fields["display_name"] == ["缺少必填字段。"]
    assert all(isinstance(m, list) and all(isinstance(s, str) for s in m) for m in fields.values())


def test_unknown_body_field_is_422(client):
    resp = client.post(
        REGISTER,
        json={**SIGN_UP, "display_name": "小王", "is_admin": True},
    )
    body = assert_envelope(resp, 422, "validation_error", errors=True)
    assert body["errors"] == {"json": {"is_admin": ["不认识的字段。"]}}


def test_unknown_nested_field_is_422(app, client):
    user = make_user(app)
    resp = client.patch(
        "/api/v1/me", headers=user.headers, json={"quiet_hours": {"start": "22:00", "end": "07:00", "x": 1}}
    )
    body = assert_envelope(resp, 422, "validation_error", errors=True)
    assert body["errors"] == {"json": {"quiet_hours": {"x": ["不认识的字段。"]}}}


def test_garbage_json_is_400_invalid_json(app, client):
    resp = client.post(REGISTER, data=b'{"phone": "138', content_type="application/json")
    body = assert_envelope(resp, 400, "invalid_json")
    assert body["status"] == "Bad Request"
    assert body["message"] == message(app, "invalid_json")


def test_json_answers_are_utf8_as_written(app, client):
    """Chinese goes out as UTF-8, not as \\u escapes: half the bytes, and readable in a log or a proxy."""
    refused = client.post(REGISTER, json={})
    raw = refused.get_data()
    assert message(app, "validation_error").encode() in raw
    assert b"\\u" not in raw
    document = client.get("/api/v1/openapi.json").get_data()
    assert "甬·志愿".encode() in document and "甬".encode("unicode_escape") not in document
    # a lone surrogate has no UTF-8: escaped, never a failed answer
    assert app.json.dumps({"title": "标题\ud800"}) == '{"title": "\\u6807\\u9898\\ud800"}'


def test_invalid_utf8_json_is_400_invalid_json(client):
    resp = client.post(REGISTER, data=b'{"phone": "\xff\xfe"}', content_type="application/json")
    assert_envelope(resp, 400, "invalid_json")


def test_json_array_body_is_422(client):
    body = assert_envelope(client.post(REGISTER, json=[1, 2]), 422, "validation_error", errors=True)
    assert body["errors"] == {"json": {"_schema": ["输入类型无效。"]}}


def test_non_json_body_is_415(client):
    resp = client.post(REGISTER, data={"phone": "13812345678", "password": "long-enough", "display_name": "x"})
    body = assert_envelope(resp, 415, "unsupported_media_type")
    assert body["status"] == "Unsupported Media Type"


def test_non_json_body_is_not_silently_ignored_on_patch(app, client):
    user = make_user(app, name="原名")
    resp = client.patch("/api/v1/me", headers=user.headers, data="display_name=新名", content_type="text/plain")
    assert_envelope(resp, 415, "unsupported_media_type")
    assert client.get("/api/v1/me", headers=user.headers).get_json()["display_name"] == "原名"


def test_empty_post_without_content_type_is_allowed(app, client):
    """Bodiless POSTs (refresh, logout, approve) need no Content-Type."""
    user = make_user(app)
    resp = client.post("/api/v1/auth/refresh", headers=user.refresh_headers)
    assert resp.status_code == 200, resp.get_json()


def test_body_over_one_mebibyte_is_413(client):
    payload = b'{"phone": "' + b"1" * (1024 * 1024) + b'"}'
    body = assert_envelope(
        client.post(REGISTER, data=payload, content_type="application/json"), 413, "payload_too_large"
    )
    assert body["status"] == "Request Entity Too Large"


def test_body_just_under_one_mebibyte_is_read(client):
    filler = "x" * (1024 * 1024 - 200)
    resp = client.post(REGISTER, json={**SIGN_UP, "display_name": filler})
    body = assert_envelope(resp, 422, "validation_error", errors=True)
    assert set(body["errors"]["json"]) == {"display_name"}


# --- domain errors and abort ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code", "slug"),
    [
        ("/_test/conflict", 409, "phone_taken"),
        ("/_test/forbidden", 403, "admin_required"),
        ("/_test/not-found", 404, "not_found"),
    ],
)
def test_domain_errors_use_their_slug(boom_app, path, code, slug):
    body = assert_envelope(boom_app.test_client().get(path), code, slug)
    assert body["message"] == message(boom_app, slug)


def test_invalid_domain_error_is_422_with_field(boom_app):
    body = assert_envelope(boom_app.test_client().get("/_test/invalid"), 422, "validation_error", errors=True)
    assert body["errors"] == {"json": {"district": ["unknown district"]}}


def test_smorest_abort_keeps_its_message(boom_app):
    body = assert_envelope(boom_app.test_client().get("/_test/smorest-abort"), 409, "conflict")
    assert body["message"] == "custom words"


def test_werkzeug_abort_is_enveloped(boom_app):
    body = assert_envelope(boom_app.test_client().get("/_test/werkzeug-abort"), 403, "forbidden")
    assert body["message"] == message(boom_app, "forbidden")


def test_every_status_slug_has_a_message():
    for code, slug in STATUS_SLUGS.items():
        assert slug in MESSAGES, (code, slug)


# --- unexpected exceptions ------------------------------------------------------


@pytest.mark.parametrize("path", ["/_test/boom", "/_test/key-error"])
def test_unexpected_exception_is_500_with_request_id_and_no_details(boom_app, path, caplog):
    client = boom_app.test_client()
    with caplog.at_level(logging.ERROR):
        resp = client.get(path)
    body = resp.get_json()
    assert resp.status_code == 500
    assert set(body) == ENVELOPE_KEYS | {"request_id"}
    assert body["code"] == 500
    assert body["status"] == "Internal Server Error"
    assert body["error"] == "internal_error"
    assert body["message"] == message(boom_app, "internal_error")
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert HEX32.match(body["request_id"])
    text = resp.get_data(as_text=True)
    for leak in ("secret", "hunter2", "Traceback", "RuntimeError", "KeyError", "missing", ".py"):
        assert leak not in text
    # The operator, not the client, gets the details, under the same id.
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(getattr(r, "request_id", None) == body["request_id"] and r.exc_info for r in logged)


def test_500_echoes_the_incoming_request_id(boom_app):
    resp = boom_app.test_client().get("/_test/boom", headers={"X-Request-ID": "req-42.abc_DEF"})
    assert resp.status_code == 500
    assert resp.get_json()["request_id"] == "req-42.abc_DEF"
    assert resp.headers["X-Request-ID"] == "req-42.abc_DEF"


def test_500_in_english(boom_app):
    resp = boom_app.test_client().get("/_test/boom", headers={"Accept-Language": "en"})
    assert resp.get_json()["message"] == "Something went wrong on our side."


# --- JWT errors -------------------------------------------------------------------


def test_missing_token_is_401_authorization_required(client):
    body = assert_envelope(client.get("/api/v1/me"), 401, "authorization_required")
    assert body["status"] == "Unauthorized"


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Basic dXNlcjpwYXNz", "bearer"])
def test_malformed_authorization_header_is_401(client, header):
    resp = client.get("/api/v1/me", headers={"Authorization": header})
    body = resp.get_json()
    assert resp.status_code == 401, body
    assert body["error"] in {"authorization_required", "invalid_token"}
    assert set(body) == ENVELOPE_KEYS


@pytest.mark.parametrize("token", ["abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x", "Bearer x y"])
def test_garbage_token_is_401_invalid_token(client, token):
    assert_envelope(client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 401, "invalid_token")


# --- request id and language ----------------------------------------------------


def test_generated_request_id_on_success(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert HEX32.match(resp.headers["X-Request-ID"])


def test_request_ids_differ_per_request(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


def test_sane_incoming_request_id_is_echoed(client):
    for path in ("/healthz", "/api/v1/me", "/nope"):
        resp = client.get(path, headers={"X-Request-ID": "abc-123_XYZ.9"})
        assert resp.headers["X-Request-ID"] == "abc-123_XYZ.9", path


@pytest.mark.parametrize("incoming", ["has space", "x" * 65, "semi;colon", "<script>", "ünïcode", ""])
def test_insane_incoming_request_id_is_replaced(client, incoming):
    resp = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert HEX32.match(resp.headers["X-Request-ID"])


def test_request_id_on_every_kind_of_response(app, client):
    user = make_user(app)
    responses = [
        client.get("/healthz"),
        client.get("/api/v1/me", headers=user.headers),
        client.get("/api/v1/me"),
        client.get("/nope"),
        client.put("/healthz"),
        client.post(REGISTER, json={}),
        client.post(REGISTER, data=b"x" * (1024 * 1024 + 1), content_type="application/json"),
        client.get("/api/v1/openapi.json"),
        client.get("/api/v1/docs"),
    ]
    for resp in responses:
        assert resp.headers.get("X-Request-ID"), (resp.status_code, resp.request.path)


def test_accept_language_en_gives_english(client):
    resp = client.get("/api/v1/me", headers={"Accept-Language": "en"})
    body = assert_envelope(resp, 401, "authorization_required")
    assert body["message"] == "An access token is required."


@pytest.mark.parametrize("header", ["en", "en-GB", "en-US", "EN", "fr, en;q=0.8"])
def test_english_variants(client, header):
    resp = client.get("/nope", headers={"Accept-Language": header})
    assert resp.get_json()["message"] == "Not found."


def test_accept_language_with_weights_prefers_english(app, client):
    resp = client.get("/nope", headers={"Accept-Language": "en-US,en;q=0.9,zh-CN;q=0.5"})
    assert resp.get_json()["message"] == message(app, "not_found", "en") == "Not found."


@pytest.mark.parametrize("header", [None, "zh-CN", "zh", "fr", "zh-CN,en;q=0.1"])
def test_default_and_chinese_give_chinese(app, client, header):
    headers = {"Accept-Language": header} if header else {}
    resp = client.post(REGISTER, json={}, headers=headers)
    assert resp.get_json()["message"] == message(app, "validation_error") == "输入有误，请检查后重试"


def test_english_domain_error(app, client):
    make_user(app, phone="+8613812345678")
    resp = client.post(
        "/api/v1/auth/sms-codes",
        json={"phone": "13812345678", "purpose": "register"},
        headers={"Accept-Language": "en"},
    )
    body = assert_envelope(resp, 409, "phone_taken")
    assert body["message"] == "This phone number is already registered."
