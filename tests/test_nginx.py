"""The shipped nginx config (deploy/nginx.conf) in front of gunicorn: every edge in the envelope.

nginx (the Debian package; .ci/run installs it) runs the shipped server block
as it is — only its listen port and its upstream's address are changed to free
ports — in front of a real gunicorn (deploy/gunicorn.conf.py). Oversized,
malformed and slow requests are sent over raw sockets; every answer nginx makes
itself must be the API's JSON envelope with a request id, and nothing nginx
lets through may be refused by gunicorn. Reached directly, gunicorn's own refusals
are the envelope too (deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import create_app
from app.errors import error_body
from tests.conftest import _config_dict
from tests.helpers import free_port
from tests.test_metrics import _wait_for

pytestmark = pytest.mark.slow  # an nginx and a gunicorn

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
STATUSES = (400, 404, 408, 413, 414, 429, 431, 502, 503, 504)


def render(conf: str, listen: int, upstream: int) -> str:
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    return conf.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")


def main_conf(tmp_path: Path, server_block: str) -> Path:
    (tmp_path / "site.conf").write_text(server_block, encoding="utf-8")
    for name in ("body", "proxy", "logs"):
        (tmp_path / name).mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/proxy;
    uwsgi_temp_path {tmp_path}/proxy;
    scgi_temp_path {tmp_path}/proxy;
    include {tmp_path}/site.conf;
}}
""",
        encoding="utf-8",
    )
    return conf


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(nginx port, gunicorn port): the shipped config in front of a gunicorn on SQLite."""
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx; .ci/run does)")
    tmp_path = tmp_path_factory.mktemp("nginx")
    url = f"sqlite:///{tmp_path / 'edge.sqlite'}"
    setup = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": url})
    from app.extensions import db

    with setup.app_context():
        db.create_all()
        db.engine.dispose()
    config = _config_dict()
    upstream, listen = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "FLASK_", "GUNICORN_"))}
    env.update(
        APP_ENV="development",
        INSTANCE_PATH=str(tmp_path / "instance"),
        DATABASE_URL=url,
        SECRET_KEY=config["SECRET_KEY"],
        JWT_SECRET_KEY=config["JWT_SECRET_KEY"],
        ID_HASH_KEY=config["ID_HASH_KEY"],
        RATELIMIT_ENABLED="0",
        TRUSTED_PROXIES="1",
        PUSH_BACKEND="log",
        LOG_LEVEL="WARNING",
        METRICS_ADDRESS="",
    )
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    web = subprocess.Popen(
        [gunicorn, "-c", "deploy/gunicorn.conf.py", "-w", "1", "--threads", "4", "--bind", f"127.0.0.1:{upstream}",
         "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    conf = main_conf(tmp_path, render((ROOT / "deploy/nginx.conf").read_text(encoding="utf-8"), listen, upstream))
    proxy = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(upstream, "/healthz", lambda _text: True)
        _wait_for(listen, "/healthz", lambda _text: True)
        yield listen, upstream, web
    finally:
        for proc in (proxy, web):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def exchange(port: int, raw: bytes, *, trickle: float | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """Send ``raw`` (a whole request) and read the answer: (status, headers, body).
    With ``trickle``, the body after the headers goes one byte every ``trickle`` s."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if trickle is None:
            sock.sendall(raw)
        else:
            head, _, body = raw.partition(b"\r\n\r\n")
            sock.sendall(head + b"\r\n\r\n")
            for byte in body:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break  # nginx gave up on us: read its answer
                time.sleep(trickle)
        data = b""
        while True:
            try:
                piece = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not piece:
                break
            data += piece
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length and len(rest) >= int(length.group(1)):
                    break
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: api.test\r\n{extra}Connection: close\r\n\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode() + body


def assert_envelope(answer, status: int) -> dict:
    code, headers, body = answer
    assert code == status, (code, headers, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (status, headers)
    payload = json.loads(body)
    assert payload["code"] == status and payload["error"] and payload["message"], payload
    assert re.fullmatch(r"[0-9a-f]{32}", headers.get("x-request-id", "")), headers
    return payload


def test_every_static_body_is_the_apps_own_envelope():
    """deploy/nginx.conf's bodies say what the app would (app/errors.py, zh-CN)."""
    conf = (ROOT / "deploy/nginx.conf").read_text(encoding="utf-8")
    app = create_app(_config_dict())
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        for status in STATUSES:
            found = re.search(rf"return {status} '(.*)';", conf)
            assert found, status
            body = json.loads(found.group(1))
            assert body.pop("request_id") == "$request_id"
            assert body == error_body(status), status
    for status in STATUSES:
        page = "494 =431" if status == 431 else str(status)  # a header too large is nginx's own 494
        assert re.search(rf"error_page {page} /_yz_errors/{status};", conf), status


def test_oversized_and_malformed_requests_answer_the_envelope(stack):
    port, _upstream, _web = stack
    assert_envelope(exchange(port, post("/api/v1/auth/login", b"{" + b" " * (1024 * 1024 + 10) + b"}")), 413)
    assert_envelope(exchange(port, get("/api/v1/postings?q=" + "a" * 9000)), 414)
    assert_envelope(exchange(port, get("/api/v1/postings", f"X-Big: {'b' * 9000}\r\n")), 431)
    assert_envelope(exchange(port, b"GET /api/v1/postings HTTP/1.1\r\nHost: api.test\r\nBad Header\r\n\r\n"), 400)
    assert_envelope(exchange(port, b"BREW \x01 HTTP/1.1\r\n\r\n"), 400)
    assert_envelope(exchange(port, get("/metrics")), 404)
    assert_envelope(exchange(port, get("/api/v1/postings", "Transfer-Encoding: gzip-ish\r\n")), 400)
    # what the app answers passes untouched: its own envelope, its own request id
    payload = assert_envelope(exchange(port, get("/api/v1/nothing-here")), 404)
    assert "request_id" not in payload


def test_gunicorn_reached_directly_refuses_in_the_envelope(stack):
    """What gunicorn refuses before the app sees it is the app's envelope in its default
    language (zh-CN), with a request id of the app's form: never gunicorn's HTML page,
    and never a 5xx for a client's mistake."""
    _port, upstream, _web = stack
    app = create_app(_config_dict())
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        expected = {status: error_body(status) for status in (400,)}
    for raw, status in (
        (b"GET /api/v1/postings HTTP/1.1\r\nHost: api.test\r\nBad Header\r\n\r\n", 400),
        (get("/api/v1/postings", "Transfer-Encoding: gzip-ish\r\n"), 400),  # not 501: the client's mistake
        (b"GET /healthz HTTP/7.0\r\nHost: api.test\r\n\r\n", 400),
    ):
        answer = exchange(upstream, raw)
        payload = assert_envelope(answer, status)
        assert payload.pop("request_id") == answer[1]["x-request-id"]
        assert payload == expected[status]
    # the app's own answers are untouched
    assert exchange(upstream, get("/healthz"))[0] == 200


def test_whatever_nginx_lets_through_gunicorn_takes(stack):
    """The limits agree: the longest request line and header nginx accepts reach
    the app (a JSON answer), never gunicorn's own HTML refusal."""
    port, _upstream, _web = stack
    for length in range(8150, 8200, 3):
        path = "/api/v1/postings?q=" + "a" * (length - len("GET /api/v1/postings?q= HTTP/1.1"))
        code, headers, _ = exchange(port, get(path))
        assert headers.get("content-type", "").startswith("application/json"), (length, code, headers)
        code, headers, _ = exchange(port, get("/healthz", f"X-Long: {'h' * (length - 8)}\r\n"))
        assert headers.get("content-type", "").startswith("application/json"), (length, code, headers)
    many = "".join(f"X-H{i}: v\r\n" for i in range(300))
    code, headers, _ = exchange(port, get("/healthz", many))
    assert headers.get("content-type", "").startswith("application/json"), (code, headers)
    # a client's X-Forwarded-For is not passed on to grow past gunicorn's field limit
    code, headers, _ = exchange(port, get("/healthz", f"X-Forwarded-For: {'1.2.3.4, ' * 900}5.6.7.8\r\n"))
    assert code == 200 and headers.get("content-type", "").startswith("application/json"), (code, headers)


def _timed_out(answer) -> None:
    """nginx 1.22 ends a request whose client timed out by closing the connection
    without a word (its 408 is logged, not sent); should it answer, the answer is
    the envelope. Never HTML."""
    if answer[0] != 0:
        assert_envelope(answer, 408)
    else:
        assert answer == (0, {}, b"")


def test_a_body_that_stops_coming_is_cut_after_ten_seconds(stack):
    """A body that goes silent for the read timeout (10 s) ends the request, without gunicorn ever seeing it."""
    port, _upstream, _web = stack
    raw = post("/api/v1/auth/login", b'{"phone": "13812345678", "password": "whatever-1"}')
    head = raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    started = time.monotonic()
    _timed_out(exchange(port, head + b'{"ph', timeout=30))  # four bytes, then nothing
    assert 9 <= time.monotonic() - started < 20
    started = time.monotonic()
    _timed_out(exchange(port, b"GET /healthz HTTP/1.1\r\nHost: api.test\r\n", timeout=30))  # headers never end
    assert 9 <= time.monotonic() - started < 20


def test_gunicorn_away_is_502_in_the_envelope(tmp_path):
    """No gunicorn behind nginx at all: 502 in the envelope."""
    if NGINX is None:
        pytest.skip("nginx is not installed")
    listen, nobody = free_port(), free_port()
    conf = main_conf(tmp_path, render((ROOT / "deploy/nginx.conf").read_text(encoding="utf-8"), listen, nobody))
    proxy = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert_envelope(exchange(listen, get("/api/v1/postings")), 502)
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=20)
