"""What the fake servers (tests/fake_fcm.py, tests/fake_jpush.py) share: a threaded
HTTP server on 127.0.0.1, an ephemeral port, and a way to let hanging requests go."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # a provider opens hundreds of connections at once; the default backlog of 5
    # would drop SYNs and turn them into connect timeouts
    request_queue_size = 1024


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
