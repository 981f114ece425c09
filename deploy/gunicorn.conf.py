"""Gunicorn settings for the web processes (``gunicorn -c deploy/gunicorn.conf.py wsgi:app``).

Gunicorn runs behind nginx (deploy/nginx.conf), which buffers whole requests
and answers slow clients itself: a phone on a bad network never holds one of
these threads. The values below are for that shape; each can be set from the
environment.
"""

import multiprocessing
import os


def _env(name: str, default):
    value = os.environ.get(name)
    return type(default)(value) if value not in (None, "") else default


# Where nginx reaches us; not a public address.
bind = _env("GUNICORN_BIND", "127.0.0.1:8000")
# Threads share one process's memory and connection pool: a few processes with
# several threads each suits an I/O-bound API on few cores.
worker_class = "gthread"
workers = _env("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count()))
threads = _env("GUNICORN_THREADS", 8)
# A worker that stops answering its arbiter for this long is restarted. Requests
# themselves never wait on the database more than a few seconds (app/database.py).
timeout = _env("GUNICORN_TIMEOUT", 30)
graceful_timeout = _env("GUNICORN_GRACEFUL_TIMEOUT", 30)
# nginx keeps idle upstream connections open and reuses them; a little longer
# than its own keepalive_timeout towards us, so gunicorn never closes first.
keepalive = _env("GUNICORN_KEEPALIVE", 75)
# What a request line and its headers may be: nginx bounds them (a request or
# header line of 8 KiB at most, 32 KiB in all: large_client_header_buffers in
# deploy/nginx.conf) and answers beyond that in the JSON envelope, so gunicorn
# adds no lower limit of its own: a line nginx lets through by a byte or two
# would be refused by gunicorn (tests/test_nginx.py checks the edge). 32,768
# fields is gunicorn's most, more than 32 KiB of headers can hold.
limit_request_line = 0
limit_request_fields = 32768
limit_request_field_size = 0
# Recycle workers now and then, staggered, so slow leaks never accumulate.
max_requests = _env("GUNICORN_MAX_REQUESTS", 5000)
max_requests_jitter = _env("GUNICORN_MAX_REQUESTS_JITTER", 500)
# Only the proxy's X-Forwarded-* are believed (and TRUSTED_PROXIES=1 in the app).
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1")
# The app logs one access line per request itself (app/logs.py: JSON, with the
# request id and route); gunicorn's own plain-text access log is off unless asked for.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"


# Prometheus (app/metrics.py): served on METRICS_ADDRESS (default 127.0.0.1:9100),
# never on the API's bind; every worker listens there (SO_REUSEPORT). With
# PROMETHEUS_MULTIPROC_DIR set, every worker writes its metrics to files there
# and a scrape, whichever worker answers, sums them.
def on_starting(server):
    """Refuse a metrics address that is the API's own; start from an empty metrics
    directory: files of an earlier run would be counted again."""
    metrics_address = os.environ.get("METRICS_ADDRESS", "127.0.0.1:9100").strip()
    if metrics_address:
        metrics_port = metrics_address.rpartition(":")[2]
        for address in server.cfg.bind:
            if address.rpartition(":")[2] == metrics_port:
                raise SystemExit(f"METRICS_ADDRESS {metrics_address} is the API's own port ({address}): pick another")
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))


def post_worker_init(worker):
    """Each worker, once it has loaded the app, answers its own refusals in the API's
    envelope and serves the metrics on their own address."""
    from app import metrics

    app = worker.wsgi
    if getattr(app, "config", None) is not None:
        _refusals_in_the_envelope(app)
        try:
            metrics.serve_app(app)
        except OSError as exc:  # the address is taken by another program: the API still serves
            worker.log.error("metrics: cannot listen on %s: %s", app.config.get("METRICS_ADDRESS"), exc)


def _refusals_in_the_envelope(app):
    """What gunicorn refuses before the app sees a request (a header it cannot parse, an
    unknown Transfer-Encoding: 400; too many header fields: 431) is answered in the API's
    JSON envelope, in the default language, with a request id, as nginx answers its own
    (deploy/nginx.conf) — not gunicorn's HTML page. An unknown Transfer-Encoding is the
    client's mistake: 400 as from nginx, not the 501 gunicorn would send, which a client
    takes for the server's fault and retries. gunicorn writes these answers with
    ``gunicorn.util.write_error(sock, status, reason, message)``; this replaces it."""
    import json

    from gunicorn import util

    from app.errors import STATUS_SLUGS, error_body
    from app.logs import new_request_id

    with app.test_request_context():  # no Accept-Language: the app's default (zh-CN)
        bodies = {code: error_body(code) for code in STATUS_SLUGS}

    def write_error(sock, status_int, _reason, _message):
        status_int = 400 if status_int == 501 else status_int
        body = bodies.get(status_int) or bodies[500 if status_int >= 500 else 400]
        request_id = new_request_id()
        payload = json.dumps({**body, "request_id": request_id}, ensure_ascii=False).encode()
        head = (
            f"HTTP/1.1 {body['code']} {body['status']}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"X-Request-ID: {request_id}\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1") + payload)

    util.write_error = write_error


def child_exit(server, worker):
    """A worker that exits (recycled, crashed) leaves its counters; its live gauges go."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
