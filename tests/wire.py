"""A TCP relay in front of the PostgreSQL test server that counts round trips.

The app under test connects to the relay (``WireCounter.url``, no TLS so the
messages can be read) and the relay to the server. It reads the client's side
of the protocol: a round trip is a simple ``Query`` (``BEGIN``, ``ROLLBACK``…)
or a ``Sync`` closing an extended-protocol exchange (a statement with
parameters) — what the client waits for. ``hang_up()`` closes every relayed
connection at once, as a server that restarts does.
"""

from __future__ import annotations

import socket
import struct
import threading

import sqlalchemy as sa

QUERY, SYNC = b"Q", b"S"


class WireCounter:
    def __init__(self, server_url: str) -> None:
        self.target = sa.engine.make_url(server_url)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.queries: list[str] = []  # the simple queries' texts, in order
        self.round_trips = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        url = self.target.set(drivername="postgresql+psycopg", host="127.0.0.1", port=self.port)
        url = url.update_query_dict({"sslmode": "disable", "gssencmode": "disable"})
        return url.render_as_string(hide_password=False)

    def reset(self) -> None:
        with self._lock:
            self.queries.clear()
            self.round_trips = 0

    def hang_up(self) -> None:
        """Close every connection relayed so far (the server's side too)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        _shut(*sockets)
        for sock in sockets:
            sock.close()

    def close(self) -> None:
        self._closing = True
        self.hang_up()
        self.listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection((self.target.host or "127.0.0.1", self.target.port or 5432))
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._client_side, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _shut(source, sink)

    def _client_side(self, client: socket.socket, server: socket.socket) -> None:
        """Relay the client's messages one by one, counting the round trips."""
        buffer = b""
        started = False  # the startup message has no type byte

        def take(size: int) -> bytes:
            nonlocal buffer
            while len(buffer) < size:
                data = client.recv(65536)
                if not data:
                    raise EOFError
                buffer += data
            taken, buffer = buffer[:size], buffer[size:]
            return taken

        try:
            while True:
                if not started:
                    head = take(4)
                    message = head + take(struct.unpack("!I", head)[0] - 4)
                    started = True
                else:
                    kind = take(1)
                    head = take(4)
                    body = take(struct.unpack("!I", head)[0] - 4)
                    message = kind + head + body
                    if kind in (QUERY, SYNC):
                        with self._lock:
                            self.round_trips += 1
                            if kind == QUERY:
                                self.queries.append(body.rstrip(b"\0").decode())
                server.sendall(message)
        except (EOFError, OSError):
            pass
        _shut(client, server)


def _shut(*sockets: socket.socket) -> None:
    """End both directions of each socket (the peer reads the end of the stream)."""
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
