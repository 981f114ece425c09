"""The nearby feed with and without the read replica: where its database work goes.

    .venv/bin/python bench/replica_feed.py [--postings 200000] [--pages 1000] [--rounds 2]

Loads ``--postings`` postings of ``bench/nearby.py`` into PostgreSQL
``yz_bench_replica`` (or ``BENCH_DATABASE_URL``; reused when they are there),
starts a hot standby of that server the way ``tests/test_replica.py`` does
(``pg_basebackup -R`` into a cluster of its own on a free port, as the
``postgres`` user; it copies the whole server, so it takes as long as the
server is big), then runs our app twice under the same gunicorn — once on the
primary alone, once with ``DATABASE_REPLICA_URL`` — and sends both the same
nearby-feed pages (open wishes within 3 km of a random centre, nearest first)
in interleaved rounds. Per page it prints the app's CPU, the CPU of the
primary's backends serving the app (``pg_stat_activity``, our
``application_name``) and the CPU of the whole standby cluster.

On one machine both clusters share its cores: the figure is where the work
goes (the primary's CPU per page), not throughput.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from bench import driver  # noqa: E402
from bench.dbsetup import LOADER_CONFIG, SECRET, ensure_database  # noqa: E402
from bench.nearby import load, random_centre  # noqa: E402
from tests.test_replica import Standby  # noqa: E402 - the standby the tests start

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/yz_bench_replica"
PORTS = {"primary only": 8780, "with replica": 8781}
TICK = os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postings", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "APP_ENV": "development", **LOADER_CONFIG})
    with app.app_context():
        prepare(args.postings)
        primary = db.engine
    started = time.perf_counter()
    standby = Standby(sa.engine.make_url(url))
    print(f"standby on :{standby.port} in {time.perf_counter() - started:.0f} s", flush=True)
    servers = {}
    try:
        env = driver.app_env(url, SECRET)
        servers["primary only"] = driver.start_gunicorn("wsgi:app", PORTS["primary only"], env=env)
        replica_url = standby.url(sa.engine.make_url(url).database)
        servers["with replica"] = driver.start_gunicorn(
            "wsgi:app", PORTS["with replica"], env={**env, "DATABASE_REPLICA_URL": replica_url}
        )
        rng = random.Random(args.seed)
        for name in servers:  # warm up
            driver.run(name, PORTS[name], servers[name], pages(rng, 200), clients=args.clients)
        rows: dict[str, list[tuple]] = {name: [] for name in servers}
        print(f"\n{args.rounds} rounds of {args.pages} pages; {args.clients} clients; load average {load_average()}")
        for number in range(1, args.rounds + 1):
            print(f"-- round {number}   load average {load_average()}")
            for name, server in servers.items():
                before = cpu(primary, standby)
                result = driver.run(name, PORTS[name], server, pages(rng, args.pages), clients=args.clients)
                after = cpu(primary, standby)
                assert result.outcomes == {200: args.pages}, result.outcomes
                per_page = [1000 * (a - b) / args.pages for a, b in zip(after, before, strict=True)]
                rows[name].append((result.rate, result.percentile(95), result.cpu_ms, *per_page))
                print(
                    f"{name:<13} {result.rate:6.0f} pages/s  p95 {result.percentile(95):6.1f} ms  app CPU"
                    f" {result.cpu_ms:5.2f} ms  primary DB CPU {per_page[0]:5.2f} ms  replica DB CPU"
                    f" {per_page[1]:5.2f} ms a page",
                    flush=True,
                )
        print("\nsummary (min–max over the rounds, per page)")
        for name, figures in rows.items():
            columns = list(zip(*figures, strict=True))
            print(
                f"{name:<13} {span(columns[0])} pages/s, p95 {span(columns[1], '{:.1f}')} ms,"
                f" app {span(columns[2], '{:.2f}')} ms, primary DB {span(columns[3], '{:.2f}')} ms,"
                f" replica DB {span(columns[4], '{:.2f}')} ms"
            )
        print(f"load average at the end {load_average()}")
    finally:
        for server in servers.values():
            driver.stop(server)
        standby.remove()


def prepare(postings: int) -> None:
    have = -1
    if sa.inspect(db.engine).has_table("postings"):
        have = db.session.scalar(sa.text("SELECT count(*) FROM postings"))
        db.session.rollback()
    if have != postings:
        db.drop_all()
        db.create_all()
        with db.engine.begin() as conn:
            load(conn, postings)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        print(f"loaded {postings:,} postings", flush=True)
    else:
        print(f"reusing {have:,} postings", flush=True)


def pages(rng: random.Random, n: int) -> list[driver.Request]:
    def path(centre):
        return f"/api/v1/postings?kind=wish&near={centre[0]:.5f},{centre[1]:.5f}&radius_km=3&sort=distance&limit=20"

    return [driver.Request("GET", path(random_centre(rng))) for _ in range(n)]


def cpu(primary: sa.Engine, standby: Standby) -> tuple[float, float]:
    """CPU seconds so far of the primary's backends serving our app, and of the standby cluster."""
    with primary.connect() as conn:
        ours = sa.text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'yongzhiyuan' AND datname = current_database()"
        )
        backends = conn.scalars(ours).all()
    postmaster = int(Path(standby.data, "postmaster.pid").read_text().split()[0])
    cluster = [postmaster, *children(postmaster)]
    return sum(map(process_cpu, backends)), sum(map(process_cpu, cluster))


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def span(values, fmt="{:,.0f}") -> str:
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}"


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
