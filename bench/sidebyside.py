"""Our API beside its references, in one interleaved run on one machine.

    .venv/bin/python bench/sidebyside.py [--rounds 3] [--claims 1500] [--feeds 1500] [--signed-in-feed] [--reload]
        [--only claims|feed] [--planner PATH-TO-volunteer_planner]

The servers, each under the same gunicorn (``-k gthread -w 2 --threads 4``) on
PostgreSQL ``yz_bench_side`` (or ``BENCH_DATABASE_URL``), one driver for all
(``bench/driver.py``: 8 keep-alive clients in 2 processes):

- ours: ``wsgi:app``, rate limits off, push to the log;
- the ceiling: ``bench.ceiling_app:ceiling``, the same claim statements in
  raw SQL (PyJWT + psycopg, no framework);
- hello: ``bench.ceiling_app:hello``, Flask answering a constant JSON;
- the one-statement ceiling: ``bench.ceiling_app:one_statement``, the claim as
  one data-modifying ``WITH`` on an autocommit connection (one round trip);
- with ``--planner PATH``: coders4help/volunteer_planner's shift sign-up
  (Django), set up from PATH by ``bench/planner.py`` on the same server and
  driver (psycopg 3).

The feed data is the 1,000,000 postings of ``bench/nearby.py`` (loaded once
and reused; ``--only claims`` needs none). Each round runs, in turn: claims on
ours, on the one statement, on the six raw statements and on volunteer_planner
(each claim a distinct wish by a distinct volunteer, wishes placed outside
the city so the feed never sees them), the nearby feed on ours (open wishes
within 3 km of a random centre, ``sort=distance``, 20 items), ``for_me`` on
ours (the first page of one of 200 volunteers with a home in the city, one or
two skills and a 3 km radius) and hello. After
each claim phase the database is checked — every 201 is exactly one claim
row, one claimed wish and one ``wish_claimed`` notification, nothing else
was written — and after each feed phase that nothing was written at all.
Before the rounds, 20 volunteers claim one wish at once (and, with
``--planner``, 20 sign up at once for one shift of one slot): the overbooking.
The summary gives each figure's range over the rounds, the ratios the
performance goals are stated in, and the load average of the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import current_app  # noqa: E402
from flask_jwt_extended import create_access_token  # noqa: E402

from app import create_app  # noqa: E402
from app.clock import utcnow  # noqa: E402
from app.extensions import db  # noqa: E402
from app.skills import DEFAULT_SKILLS  # noqa: E402
from bench import driver, profile  # noqa: E402
from bench.dbsetup import LOADER_CONFIG, ensure_database  # noqa: E402
from bench.nearby import AUTHORS, load, random_centre  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/yz_bench_side"
SECRET = secrets.token_urlsafe(48)  # made per run: a key written here would be published
FEED_POSTINGS = 1_000_000
CLAIM_SPOT = (28.0, 120.0)  # outside the city: the feed never finds the claim phase's wishes
CLAIM_TITLE = "bench-claim"
PORTS = {"ours": 8770, "ceiling": 8771, "hello": 8772, "baseline": 8773, "one": 8774, "planner": 8775}
CLAIMING = ("ours", "one", "ceiling")  # the servers whose claims every round times, in this order
FOR_ME_VOLUNTEERS = 200  # volunteers with a home in the city and skills, for the for_me phase
COUNTED = ("claims", "notifications", "postings", "volunteers", "refresh_tokens", "energy_ledger")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--claims", type=int, default=1500, help="claims per server per round")
    parser.add_argument("--feeds", type=int, default=1500, help="feed (and hello) requests per round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--only", choices=("all", "claims", "feed"), default="all", help="claims: no 1M postings")
    parser.add_argument("--signed-in-feed", action="store_true", help="the feed requests carry a bearer token")
    parser.add_argument("--reload", action="store_true", help="rebuild the 1M postings")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--profile", action="store_true", help="py-spy our server in round 1 (bench/out/)")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout of the app (e.g. a worktree of main) run as another server"
    )
    parser.add_argument(
        "--planner",
        type=Path,
        help="a checkout of coders4help/volunteer_planner: its shift sign-up runs as another server, set up by "
        "bench/planner.py on the same PostgreSQL and driver",
    )
    args = parser.parse_args()
    claims_on = args.only in ("all", "claims")
    feed_on = args.only in ("all", "feed")

    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "APP_ENV": "development", "JWT_SECRET_KEY": SECRET, **LOADER_CONFIG}
    )
    claiming = [*CLAIMING, *(["baseline"] if args.baseline else [])] if claims_on else []
    with app.app_context():
        prepare_feed(args.reload, postings=FEED_POSTINGS if feed_on else 0)
        wishes, tokens = seed_claims(len(claiming) * (args.rounds * args.claims + 100) + 20 + FOR_ME_VOLUNTEERS)
        # the last ones ask for_me: a home in the city, one or two skills (never in a claim phase)
        for_me_tokens = place_for_me(tokens[-FOR_ME_VOLUNTEERS:], random.Random(args.seed + 1)) if feed_on else []

    env = {**driver.app_env(url, SECRET), "BENCH_DATABASE_URL": url}
    servers = {}
    planner = None
    try:
        servers["ours"] = driver.start_gunicorn("wsgi:app", PORTS["ours"], env=env)
        if claims_on:
            servers["one"] = driver.start_gunicorn("bench.ceiling_app:one_statement", PORTS["one"], env=env)
            servers["ceiling"] = driver.start_gunicorn("bench.ceiling_app:ceiling", PORTS["ceiling"], env=env)
        if feed_on:
            servers["hello"] = driver.start_gunicorn("bench.ceiling_app:hello", PORTS["hello"], env=env)
        if args.baseline:
            servers["baseline"] = driver.start_gunicorn("wsgi:app", PORTS["baseline"], env=env, cwd=args.baseline)
        if args.planner and claims_on:
            from bench import planner as planner_bench

            planner = planner_bench.Planner(args.planner, url, PORTS["planner"])
            planner.prepare(args.rounds * args.claims + 100)
            servers["planner"] = planner.start()
        rng = random.Random(args.seed)
        feed_token = tokens[-1] if args.signed_in_feed else None
        if feed_on:
            check_same_feed(app, rng, feed_token)

        pairs = iter(zip(wishes, tokens, strict=True))

        def claims(n):
            return [next(pairs) for _ in range(n)]

        # warm up: the pools, the caches, the first statements
        for name in claiming:
            phase(app, name, servers, claims(100), args)
        if planner:
            planner.phase(servers["planner"], 100, args.clients)
        if claims_on:
            # 20 volunteers at once on one wish (one place): how many got in
            racers = claims(20)
            overbooked = race(app, servers, racers[0][0], [token for _, token in racers])
            print(f"20 at once on one place: ours {overbooked} overbooked")
            if planner:
                planner.race(servers["planner"])
                print(f"                         volunteer_planner {planner.overbooked} overbooked")
        if feed_on:
            for name in ("ours", *(["baseline"] if args.baseline else [])):
                feed(app, name, servers, rng, 200, feed_token, args)
                for_me(app, name, servers, rng, 200, for_me_tokens, args)
            feed(app, "hello", servers, rng, 200, None, args)

        figures: dict[str, list[driver.Figures]] = {}
        print(f"\n{args.rounds} rounds; {args.clients} clients; gunicorn -k gthread -w 2 --threads 4 for each server")
        for number in range(1, args.rounds + 1):
            print(f"-- round {number}   load average {load_average()}")
            for name in claiming:
                with profiled(args, number, name, servers, "claim"):
                    result = phase(app, name, servers, claims(args.claims), args)
                figures.setdefault(f"claim {name}", []).append(result)
                print(result.line(), flush=True)
            if planner:
                result = planner.phase(servers["planner"], args.claims, args.clients)
                figures.setdefault("claim planner", []).append(result)
                print(result.line(), f"  [overbooked {planner.overbooked}]", flush=True)
            if feed_on:
                with profiled(args, number, "ours", servers, "feed"):
                    figures.setdefault("feed", []).append(feed(app, "ours", servers, rng, args.feeds, feed_token, args))
                print(figures["feed"][-1].line(), flush=True)
                if args.baseline:
                    result = feed(app, "baseline", servers, rng, args.feeds, feed_token, args)
                    figures.setdefault("feed baseline", []).append(result)
                    print(result.line(), flush=True)
                with profiled(args, number, "ours", servers, "for_me"):
                    result = for_me(app, "ours", servers, rng, args.feeds, for_me_tokens, args)
                figures.setdefault("for_me", []).append(result)
                print(result.line(), flush=True)
                if args.baseline:
                    result = for_me(app, "baseline", servers, rng, args.feeds, for_me_tokens, args)
                    figures.setdefault("for_me baseline", []).append(result)
                    print(result.line(), flush=True)
                figures.setdefault("hello", []).append(feed(app, "hello", servers, rng, args.feeds, None, args))
                print(figures["hello"][-1].line(), flush=True)
        report(figures)
        print(f"load average at the end {load_average()}")
    finally:
        for server in servers.values():
            driver.stop(server)


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


@contextlib.contextmanager
def profiled(args, number: int, name: str, servers, what: str):
    """py-spy on our server during round 1's phase (--profile); the summary after the round."""
    if not (args.profile and number == 1 and name == "ours"):
        yield
        return
    out = ROOT / "bench" / "out" / f"{what}.txt"
    with profile.recording(servers[name], out) as recorded:
        yield
    if recorded is not None:
        print(f"profile of our server, {what} ({out.relative_to(ROOT)}):\n{profile.summary(out)}")


# --- data ---------------------------------------------------------------------------


def prepare_feed(reload: bool, postings: int = FEED_POSTINGS) -> None:
    """The feed's 1M postings (and their authors); with ``postings=0`` only the
    authors, for a claims-only run on a database without them."""
    have = -1
    if sa.inspect(db.engine).has_table("postings") and not schema_changed():
        have = db.session.scalar(sa.text("SELECT count(*) FROM postings WHERE title <> :t"), {"t": CLAIM_TITLE})
        db.session.rollback()
    if reload or have < postings or have == -1:
        db.drop_all()
        db.create_all()
        started = time.perf_counter()
        with db.engine.begin() as conn:
            load(conn, postings)
        print(f"loaded {postings:,} postings in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        print(f"reusing {have:,} postings", flush=True)


def schema_changed() -> bool:
    """Whether a table of the models is missing or has other columns than in the database
    (a branch added one since the data was loaded): the data is loaded again then."""
    inspector = sa.inspect(db.engine)
    for table in db.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            return True
        if {column["name"] for column in inspector.get_columns(table.name)} != set(table.c.keys()):
            return True
    return False


def seed_claims(n: int) -> tuple[list[int], list[str]]:
    """n volunteers and n open wishes at CLAIM_SPOT, after removing the last run's."""
    with db.engine.begin() as conn:
        # The last run's rows go without per-row foreign-key checks: everything that
        # refers to them is deleted here too (a check per user scans the 1M postings).
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("DELETE FROM notifications"))
        conn.execute(sa.text("DELETE FROM energy_ledger"))
        conn.execute(sa.text("DELETE FROM claims"))
        conn.execute(sa.text("DELETE FROM postings WHERE title = :t"), {"t": CLAIM_TITLE})
        conn.execute(sa.text("DELETE FROM refresh_tokens"))
        conn.execute(sa.text("DELETE FROM volunteers"))
        conn.execute(sa.text("DELETE FROM users WHERE id > :n"), {"n": AUTHORS})
        conn.execute(sa.text("SET LOCAL session_replication_role = origin"))
        now = utcnow()
        users = conn.execute(
            sa.text(
                "INSERT INTO users (phone, password_hash, display_name, is_admin, locale, timezone, muted_kinds,"
                " nearby_alerts, privacy_version, created_at, updated_at)"
                " SELECT '+86137' || lpad(g::text, 8, '0'), 'bench', '志愿者' || g, false, 'zh-CN', 'Asia/Shanghai',"
                " '[]'::json, true, :privacy, :now, :now FROM generate_series(1, :n) AS g ORDER BY g RETURNING id"
            ),
            # the current privacy policy accepted, as any active volunteer has (else 428 consent_required)
            {"n": n, "now": now, "privacy": current_app.config["PRIVACY_VERSION"]},
        ).scalars()
        user_ids = sorted(users)
        conn.execute(
            sa.text(
                "INSERT INTO volunteers (user_id, real_name, id_hash, id_masked, district, skills, push_radius_km,"
                " verified, credit_minutes, honor_minutes, energy_balance, active_wish_claims, rating_count,"
                " rating_total, registered_at, created_at, updated_at)"
                " SELECT u, '志愿者', md5(u::text), '3302**********0000', 'haishu', '[]'::json, 3, false, 0, 0, 0,"
                " 0, 0, 0, :now, :now, :now FROM unnest(CAST(:ids AS int[])) AS u"
            ),
            {"ids": user_ids, "now": now},
        )
        wishes = conn.execute(
            sa.text(
                "INSERT INTO postings (kind, title, description, status, district, author_id, capacity, claimed_count,"
                " waitlist_count, expires_at, claim_ttl_hours, lat, lng, geocell, photo_urls, created_at, updated_at)"
                " SELECT 'wish', :t, '社区独居老人需要志愿者上门帮忙。', 'open', 'haishu', 1 + g % :authors, 1, 0, 0,"
                " :expires, 168, :lat, :lng, 0, '[]'::json, :now, :now FROM generate_series(1, :n) AS g"
                " ORDER BY g RETURNING id"
            ),
            {
                "t": CLAIM_TITLE,
                "authors": AUTHORS,
                "expires": now + timedelta(days=30),
                "lat": CLAIM_SPOT[0],
                "lng": CLAIM_SPOT[1],
                "now": now,
                "n": n,
            },
        ).scalars()
        wish_ids = sorted(wishes)
        # each user's token family, as a login would have opened it (a family
        # nobody issued to the user the token names counts as revoked)
        conn.execute(
            sa.text(
                "INSERT INTO refresh_tokens (jti, family_id, user_id, issued_at, expires_at)"
                " SELECT 'bench-' || u, 'bench', u, :now, :later FROM unnest(CAST(:ids AS int[])) AS u"
            ),
            {"ids": user_ids, "now": now, "later": now + timedelta(days=1)},
        )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # posting_tags too: without its statistics a page's tags (by posting id)
        # are guessed at thousands of rows each, enough to set off PostgreSQL's JIT
        for table in ("postings", "posting_tags", "users", "volunteers", "claims", "notifications"):
            conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
    tokens = [
        create_access_token(identity=str(uid), additional_claims={"fam": "bench"}, expires_delta=timedelta(hours=3))
        for uid in user_ids
    ]
    return wish_ids, tokens


def counts() -> dict[str, int]:
    with db.engine.connect() as conn:
        return {table: conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) for table in COUNTED}


# --- phases -------------------------------------------------------------------------


def phase(app, name: str, servers, batch: list[tuple[int, str]], args) -> driver.Figures:
    requests = [
        driver.Request(
            "POST",
            f"/api/v1/postings/{wish}/claims",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            b"{}",
        )
        for wish, token in batch
    ]
    with app.app_context():
        before = counts()
        result = driver.run(name, PORTS[name], servers[name], requests, clients=args.clients)
        after = counts()
        created = [body["id"] for status, body in result.results if status == 201]
        wanted = {table: 0 for table in COUNTED}
        wanted.update(claims=len(created), notifications=len(created))
        changed = {table: after[table] - before[table] for table in COUNTED}
        assert result.outcomes == {201: len(batch)}, f"{name}: not every claim was created: {result.outcomes}"
        assert changed == wanted, f"{name}: rows written {changed}, expected {wanted}"
        with db.engine.connect() as conn:
            claimed = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM postings WHERE id = ANY(CAST(:ids AS int[]))"
                    " AND status = 'claimed' AND claimed_count = 1"
                ),
                {"ids": [wish for wish, _ in batch]},
            )
            told = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM notifications WHERE kind = 'wish_claimed'"
                    " AND data->>'claim_id' = ANY(CAST(:ids AS text[]))"
                ),
                {"ids": [str(claim_id) for claim_id in created]},
            )
        assert claimed == len(created) == told, f"{name}: {claimed} wishes claimed, {told} told, {len(created)} 201s"
    result.label = f"claim {name}"
    return result


def race(app, servers, wish: int, tokens: list[str]) -> str:
    """Every token claims ``wish`` at once: one 201, the others 409; the claims the wish holds."""
    requests = [
        driver.Request(
            "POST",
            f"/api/v1/postings/{wish}/claims",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            b"{}",
        )
        for token in tokens
    ]
    result = driver.run("race ours", PORTS["ours"], servers["ours"], requests, clients=len(tokens), procs=4)
    with app.app_context(), db.engine.connect() as conn:
        held = conn.scalar(sa.text("SELECT count(*) FROM claims WHERE posting_id = :w"), {"w": wish})
    assert result.outcomes == {201: 1, 409: len(tokens) - 1}, result.outcomes
    return f"{held - 1}/{len(tokens)}"


def feed(app, name: str, servers, rng, n: int, token: str | None, args) -> driver.Figures:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if name == "hello":
        requests = [driver.Request("GET", "/api/v1/hello") for _ in range(n)]
    else:
        requests = [driver.Request("GET", feed_path(random_centre(rng)), headers) for _ in range(n)]
    with app.app_context():
        before = counts()
        result = driver.run(name, PORTS[name], servers[name], requests, clients=args.clients)
        assert counts() == before, f"{name}: a read wrote rows"
    assert result.outcomes == {200: n}, f"{name}: {result.outcomes}"
    result.label = "hello" if name == "hello" else f"feed {name}"
    return result


def for_me(app, name: str, servers, rng, n: int, tokens: list[str], args) -> driver.Figures:
    """``GET /postings?for_me=true``, first pages, each by one of the for_me volunteers at random."""
    requests = [
        driver.Request("GET", "/api/v1/postings?for_me=true", {"Authorization": f"Bearer {rng.choice(tokens)}"})
        for _ in range(n)
    ]
    with app.app_context():
        before = counts()
        result = driver.run(name, PORTS[name], servers[name], requests, clients=args.clients)
        assert counts() == before, f"{name}: a read wrote rows"
    assert result.outcomes == {200: n}, f"{name}: {result.outcomes}"
    result.label = f"for_me {name}"
    return result


def place_for_me(tokens: list[str], rng) -> list[str]:
    """Give the volunteers of ``tokens`` a home (``random_centre``: the feed's
    mixture), one or two skills, a 3 km radius; returns the tokens."""
    from flask_jwt_extended import decode_token

    codes = [skill.code for skill in DEFAULT_SKILLS]
    rows = []
    for token in tokens:
        lat, lng = random_centre(rng)
        skills = rng.sample(codes, rng.choice((1, 2)))
        rows.append({"u": int(decode_token(token)["sub"]), "lat": lat, "lng": lng, "skills": json.dumps(skills)})
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE volunteers SET home_lat = :lat, home_lng = :lng, skills = CAST(:skills AS json),"
                " push_radius_km = 3 WHERE user_id = :u"
            ),
            rows,
        )
    return tokens


def feed_path(centre: tuple[float, float]) -> str:
    return f"/api/v1/postings?kind=wish&near={centre[0]:.5f},{centre[1]:.5f}&radius_km=3&sort=distance&limit=20"


def check_same_feed(app, rng, token) -> None:
    """The feed answers what the database holds: ten centres, each page's ids in
    the order of the distance the database computes."""
    import http.client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn = http.client.HTTPConnection("127.0.0.1", PORTS["ours"], timeout=30)
    for _ in range(10):
        centre = random_centre(rng)
        conn.request("GET", feed_path(centre), headers=headers)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200, body
        items = body["items"]
        assert all(item["kind"] == "wish" and item["status"] == "open" for item in items)
        distances = [item["distance_km"] for item in items]
        assert distances == sorted(distances), "the page is not in distance order"
    conn.close()


def report(figures: dict[str, list[driver.Figures]]) -> None:
    def span(values, fmt="{:,.0f}"):
        return f"{fmt.format(min(values))}–{fmt.format(max(values))}"

    def ratios(top: str, bottom: str, what=lambda f: f.rate) -> list[float]:
        return [what(a) / what(b) for a, b in zip(figures[top], figures[bottom], strict=True)]

    print("\nsummary (min–max over the rounds)")
    for label, rows in figures.items():
        print(
            f"{label:<14} {span([r.rate for r in rows])}/s   p95 {span([r.percentile(95) for r in rows], '{:.1f}')} ms"
            f"   cpu {span([r.cpu_ms for r in rows], '{:.2f}')} ms/req"
        )
    if "claim ours" in figures:
        one = ratios("claim ours", "claim one")
        cpu = ratios("claim ours", "claim one", lambda f: f.cpu_ms)
        print(f"claim: ours / one statement throughput {span([100 * r for r in one])} % (goal ≥ 67 %),")
        print(f"       CPU per claim {span(cpu, '{:.2f}')}× the one statement's")
        raw = ratios("claim ours", "claim ceiling")
        print(f"       ours / the six raw statements {span([100 * r for r in raw])} %")
    if "claim planner" in figures:
        print(f"claim: ours / volunteer_planner's sign-up {span(ratios('claim ours', 'claim planner'), '{:.1f}')}×")
    if "feed" in figures:
        feed_ratio = ratios("feed", "hello")
        print(f"feed:  ours / hello throughput {span([100 * r for r in feed_ratio], '{:.1f}')} % (goal ≥ 15 %),")
        print(f"       p95 {span([r.percentile(95) for r in figures['feed']], '{:.1f}')} ms (goal ≤ 25 ms)")
        print(f"       mean {statistics.mean(r.cpu_ms for r in figures['feed']):.2f} ms CPU a page")
    if "for_me" in figures:
        print(f"for_me: p95 {span([r.percentile(95) for r in figures['for_me']], '{:.1f}')} ms (goal ≤ 30 ms),")
        print(f"       ours / hello throughput {span([100 * r for r in ratios('for_me', 'hello')], '{:.1f}')} %")
    for what, ours, before in (
        ("claim", "claim ours", "claim baseline"),
        ("feed", "feed", "feed baseline"),
        ("for_me", "for_me", "for_me baseline"),
    ):
        if before in figures:
            speedup = ratios(ours, before)
            cpu = ratios(ours, before, lambda f: f.cpu_ms)
            print(
                f"{what}: ours / baseline throughput {span(speedup, '{:.2f}')}×, CPU per request {span(cpu, '{:.2f}')}×"
            )


if __name__ == "__main__":
    main()
