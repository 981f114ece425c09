"""Reads on a real streaming replica (``app.replica``), on PostgreSQL.

The module starts its own standby: ``pg_basebackup -R`` of the test server
(``TEST_DATABASE_URL``'s, which needs a ``replication`` entry in pg_hba.conf:
``.ci/run`` adds it) into a new cluster on a free port, run with the server's
own binaries as the ``postgres`` user. Each test then reads through an app
whose ``DATABASE_REPLICA_URL`` is the standby's copy of the test database, and
counts the statements each engine ran.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.replica import replica_of
from tests.conftest import _config_dict
from tests.factories import make_posting, make_user, make_volunteer

pytestmark = [pytest.mark.usefixtures("postgres_only"), pytest.mark.slow]


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.skip(f"{name} not found (PostgreSQL's server binaries)")
    return found[-1]


LIMITS = [
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
]


class Standby:
    """A hot standby of the test server, in a temporary directory, on a free port."""

    def __init__(self, primary: sa.engine.URL) -> None:
        self.primary = primary
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="yz-replica-")
        self.data = os.path.join(self.dir, "data")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            pg_bin("pg_basebackup"),
            *("-h", primary.host or "127.0.0.1", "-p", str(primary.port or 5432), "-U", primary.username or "postgres"),
            *("-D", self.data, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"),
        )
        # A Debian cluster keeps its settings in /etc: the copy gets its own, with
        # the limits a standby must not set below its primary's.
        engine = sa.create_engine(primary.set(drivername="postgresql+psycopg"))
        with engine.connect() as conn:
            limits = conn.execute(sa.text("SELECT name, setting FROM pg_settings WHERE name = ANY(:n)"), {"n": LIMITS})
            settings = "".join(f"{name} = {value}\n" for name, value in limits)
        engine.dispose()
        with open(os.path.join(self.data, "postgresql.conf"), "w") as conf:
            conf.write(f"hot_standby = on\nfsync = off\n{settings}")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as hba:
            hba.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        self.start()

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=600)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(pg_bin("pg_ctl"), "-D", self.data, "-o", options, "-w", "-l", f"{self.dir}/log", "start")

    def kill(self) -> None:
        self._run(pg_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "stop")

    def running(self) -> bool:
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def remove(self) -> None:
        if self.running():
            try:
                self.kill()
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="module")
def standby(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (set TEST_DATABASE_URL)")
    server = Standby(sa.engine.make_url(db_url))
    yield server
    server.remove()


@pytest.fixture
def reader(app, standby, db_url, photos_dir):
    """An app reading from the standby (lag allowed: 1 s), beside the ``app`` fixture
    whose tables it shares; the standby is running and caught up when a test starts."""
    if not standby.running():
        standby.start()
    reading = create_app(
        {
            **_config_dict(),
            "SQLALCHEMY_DATABASE_URI": db_url,
            "STORAGE_LOCAL_PATH": photos_dir,
            "DATABASE_REPLICA_URL": standby.url(sa.engine.make_url(db_url).database),
            "REPLICA_MAX_LAG_S": 1,
        }
    )
    replica = replica_of(reading)
    wait_caught_up(reading)
    yield reading
    replica.engine.dispose()
    with reading.app_context():
        db.engine.dispose()


def wait_caught_up(reading, timeout: float = 60) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    replica = replica_of(reading)
    with reading.app_context():
        with db.engine.connect() as primary:
            position = primary.scalar(sa.text("SELECT pg_current_wal_lsn()::text"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with replica.engine.connect() as conn:
                if conn.scalar(sa.text("SELECT pg_last_wal_replay_lsn() >= CAST(:p AS pg_lsn)"), {"p": position}):
                    break
        except sa.exc.OperationalError:
            pass  # still starting
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.1)
    replica.forget()


class Counted:
    """The statements reading ``table`` that each engine of ``reading`` runs inside the block."""

    def __init__(self, reading, table: str = "postings") -> None:
        self.table = table
        self.primary: list[str] = []
        self.replica: list[str] = []
        with reading.app_context():
            self.listeners = [
                (db.engine, self._recorder(self.primary)),
                (replica_of(reading).engine, self._recorder(self.replica)),
            ]

    def _recorder(self, into: list[str]):
        def record(_conn, _cursor, statement, *_):
            if f"FROM {self.table}" in statement:
                into.append(statement)

        return record

    def __enter__(self):
        for engine, record in self.listeners:
            sa.event.listen(engine, "before_cursor_execute", record)
        return self

    def __exit__(self, *exc):
        for engine, record in self.listeners:
            sa.event.remove(engine, "before_cursor_execute", record)


def test_the_feed_and_a_posting_page_are_read_on_the_replica(app, reader):
    resident = make_user(app)
    wish = make_posting(app, resident, kind="wish", title="帮独居老人买菜")
    wait_caught_up(reader)
    client = reader.test_client()
    with Counted(reader) as counted:
        page = client.get(f"/api/v1/postings/{wish}")
        feed = client.get("/api/v1/postings?kind=wish")
        stats = client.get("/api/v1/stats")
    assert page.status_code == feed.status_code == stats.status_code == 200
    assert page.json["title"] == "帮独居老人买菜"
    assert [item["id"] for item in feed.json["items"]] == [wish]
    assert counted.replica and not counted.primary
    # other requests, and the writes, stay on the primary
    volunteer = make_volunteer(app)
    with Counted(reader) as counted:
        assert client.get("/api/v1/me/claims", headers=volunteer.headers).status_code == 200
        assert client.post(f"/api/v1/postings/{wish}/claims", json={}, headers=volunteer.headers).status_code == 201
    assert not counted.replica


def test_who_just_wrote_reads_their_write(app, reader):
    """Claim, then read the posting at once, ten times: the page always shows the
    claim (the reads went to the primary); once the window has passed, the same
    user reads on the replica again."""
    resident = make_user(app)
    volunteers = [make_volunteer(app) for _ in range(10)]
    wishes = [make_posting(app, resident, kind="wish", title=f"心愿{i}") for i in range(10)]
    wait_caught_up(reader)
    client = reader.test_client()
    for volunteer, wish in zip(volunteers, wishes, strict=True):
        with Counted(reader) as counted:
            claimed = client.post(f"/api/v1/postings/{wish}/claims", json={}, headers=volunteer.headers)
            page = client.get(f"/api/v1/postings/{wish}", headers=volunteer.headers)
        assert claimed.status_code == 201
        assert page.status_code == 200 and page.json["status"] == "claimed", page.json
        assert not counted.replica
    # the window passes (as if): the volunteer's reads go to the replica again
    volunteer = volunteers[0]
    with app.app_context():
        db.session.execute(
            sa.text("UPDATE users SET last_write_at = last_write_at - interval '1 hour' WHERE id = :u"),
            {"u": volunteer.id},
        )
        db.session.commit()
    wait_caught_up(reader)
    with Counted(reader) as counted:
        page = client.get(f"/api/v1/postings/{wishes[0]}", headers=volunteer.headers)
    assert page.status_code == 200 and page.json["status"] == "claimed"
    assert counted.replica and not counted.primary


def test_a_lagging_replica_is_skipped(app, reader, standby):
    replica = replica_of(reader)
    with replica.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("SELECT pg_wal_replay_pause()"))
    try:
        resident = make_user(app)
        wish = make_posting(app, resident, kind="wish")  # the replica does not have it
        time.sleep(1.5)  # past REPLICA_MAX_LAG_S
        replica.forget()
        client = reader.test_client()
        with Counted(reader) as counted:
            page = client.get(f"/api/v1/postings/{wish}")
        assert page.status_code == 200
        assert counted.primary and not counted.replica
        assert replica.lag > 1
    finally:
        with replica.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("SELECT pg_wal_replay_resume()"))
    wait_caught_up(reader)
    with Counted(reader) as counted:
        assert reader.test_client().get(f"/api/v1/postings/{wish}").status_code == 200
    assert counted.replica and not counted.primary


def test_a_replica_killed_mid_test_is_skipped(app, reader, standby):
    resident = make_user(app)
    wishes = [make_posting(app, resident, kind="wish", title=f"心愿{i}") for i in range(3)]
    wait_caught_up(reader)
    client = reader.test_client()
    with Counted(reader) as counted:
        assert client.get(f"/api/v1/postings/{wishes[0]}").status_code == 200
    assert counted.replica  # in use, and its lag just read as fine

    standby.kill()
    # The next request still picks the replica (its last reading is fresh), fails
    # there, and is answered from the primary; the replica is skipped from then on.
    with Counted(reader) as counted:
        first = client.get(f"/api/v1/postings/{wishes[1]}")
        feed = client.get("/api/v1/postings?kind=wish")
    assert first.status_code == feed.status_code == 200
    assert first.json["id"] == wishes[1]
    assert sorted(item["id"] for item in feed.json["items"]) == sorted(wishes)
    assert counted.primary and not counted.replica
    assert replica_of(reader).lag is None

    standby.start()
    wait_caught_up(reader)
    with Counted(reader) as counted:
        assert client.get(f"/api/v1/postings/{wishes[2]}").status_code == 200
    assert counted.replica and not counted.primary
