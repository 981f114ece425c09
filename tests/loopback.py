"""What the fake servers (tests/fake_fcm.py, tests/fake_jpush.py) share: a threaded
HTTP server on 127.0.0.1, an ephemeral port, and a way to let hanging requests go."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # a provider opens hundreds of connections at once; the default backlog of 5
    # would drop SYNs and turn them into connect timeouts
    request_queue_size = 1024


class JsonHandler(BaseHTTPRequestHandler):
    """Keep-alive JSON answers, as the providers' clients expect."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    # Headers and body leave in two writes; with Nagle on, the body waits for the
    # client's delayed ACK of the headers (40 ms on Linux) on every response.
    disable_nagle_algorithm = True

    def log_message(self, *_args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout)


class LoopbackServer:
    """Start with ``with Fake() as fake:`` (or ``start()``/``stop()``); subclasses set
    ``handler`` (a BaseHTTPRequestHandler subclass that reaches the fake as ``self.fake``)."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def start(self):
        handler = type(f"{type(self).__name__}Handler", (self.handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def release(self) -> None:
        """Let hanging request threads end (their connections close unanswered)."""
        self._release.set()

    @property
    def url(self) -> str:
        """The base URL: what the provider's endpoint setting should be."""
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
