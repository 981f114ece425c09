"""Benchmark: the nearby-open-wishes query on 1,000,000 postings over Ningbo.

On PostgreSQL (default ``postgresql://postgres@127.0.0.1:5432/yz_bench_p``, or
``BENCH_DATABASE_URL``; the database is created if missing), bulk-loads N
postings (default 1,000,000) with generate_series — no ORM: half of them
spread evenly over the whole city (lat 29.2–30.35, lng 121.0–122.0), half
clustered around the old town (29.87, 121.55; normal, sigma ~9 km), of every
kind and status (about 200,000 open wishes). It then runs R random centres
(default 200, drawn from the same mixture, so most fall where postings are)
through ``app.services.feed.list_postings`` — the code behind
``GET /api/v1/postings?kind=wish&near=lat,lng&radius_km=3&limit=20`` — once
with ``sort=distance`` and once with the default ``sort=newest``, and prints
p50/p95/max per query, then ``EXPLAIN (ANALYZE, BUFFERS)`` of the query at the
densest point (the old town) and at one random centre.

Postings carry tags drawn at random: a quarter none, a quarter a free tag (社区),
a quarter one skill (its code or its Chinese name), a quarter two skills.

With ``--volunteers V`` it also loads V volunteers (homes from the same
mixture; push radius 3 km for 70 %, 5 km for 20 %, 10–50 km for the rest; no
skill for a fifth, one or two of the fifteen for the others) and times
``app.services.nearby_alerts`` (微呼百应) for 50 postings
(wishes and projects) opening at random points, each in a transaction that is
rolled back, printing p50/p95 and how many volunteers each reached.

With ``--for-me`` (needs the volunteers) it sends R random volunteers through
``app.services.matching.postings_for_me`` — the code behind ``GET
/api/v1/postings?for_me=true`` — for their first page and, where there is one,
their second, printing p50/p95/max, then ``EXPLAIN (ANALYZE, BUFFERS)`` of
every statement of one call for volunteers in the old town (3 km and 30 km
radius) and at the sparse north-west edge of the city (10 km).

    .venv/bin/python bench/nearby.py [--postings 1000000] [--queries 200] [--volunteers 1000000] [--for-me] [--reload]

The tables are reused when they already hold N postings and V volunteers
(``--reload`` rebuilds them).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from app.geo import GEOCELL_DEG  # noqa: E402
from app.policy import LIVE_POSTING_STATUSES, kinds_where  # noqa: E402
from app.services.feed import Near, list_postings  # noqa: E402
from app.services.permissions import Actor  # noqa: E402
from app.skills import DEFAULT_SKILLS  # noqa: E402
from bench.dbsetup import LOADER_CONFIG, ensure_database  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/yz_bench_p"
AUTHORS = 10_000
CENTRE = (29.87, 121.55)
CITY = (29.2, 30.35, 121.0, 122.0)  # min lat, max lat, min lng, max lng
SIGMA_DEG = 0.08


def load(conn: sa.Connection, postings: int) -> None:
    """Authors, then postings in one INSERT … SELECT over generate_series.

    Positions: even g uniform over the city, odd g a Box-Muller normal around
    the old town. Kinds: half wishes. Statuses: 40 % open. The geocell is the
    same formula as ``app.geo.geocell_for``.
    """
    conn.execute(
        sa.text(
            """
            INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, timezone,
                               muted_kinds, nearby_alerts, created_at, updated_at)
            SELECT g, '+86139' || lpad(g::text, 8, '0'), 'bench', '用户' || g, false, 'zh-CN',
                   'Asia/Shanghai', '[]'::json, true, now() - interval '400 days', now() - interval '400 days'
            FROM generate_series(1, :authors) AS g
            """
        ),
        {"authors": AUTHORS},
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"), {"n": AUTHORS})
    conn.execute(
        sa.text(
            """
            INSERT INTO postings (kind, title, description, status, district, author_id, capacity,
                                  claimed_count, waitlist_count, expires_at, claim_ttl_hours,
                                  lat, lng, geocell, photo_urls, created_at, updated_at)
            SELECT kind, '心愿 #' || g, '社区独居老人需要志愿者上门帮忙。', status,
                   (ARRAY['haishu','jiangbei','beilun','zhenhai','yinzhou','fenghua','yuyao','cixi',
                          'ninghai','xiangshan'])[g % 10 + 1],
                   g % :authors + 1, CASE WHEN kind = 'wish' THEN 1 ELSE 20 END, 0, 0,
                   CASE WHEN kind = 'wish' THEN created_at + interval '30 days' END,
                   CASE WHEN kind = 'wish' THEN 168 END,
                   lat, lng,
                   floor((lat + 90) / CAST(:deg AS float8))::bigint * 100000
                     + floor((lng + 180) / CAST(:deg AS float8))::bigint,
                   '[]'::json, created_at, created_at
            FROM (
                SELECT g,
                       CASE WHEN g % 2 = 0 THEN :lat0 + random() * (:lat1 - :lat0)
                            ELSE least(greatest(:clat + :sigma * sqrt(-2 * ln(1 - random()))
                                                 * cos(2 * pi() * random()), :lat0), :lat1) END AS lat,
                       CASE WHEN g % 2 = 0 THEN :lng0 + random() * (:lng1 - :lng0)
                            ELSE least(greatest(:clng + :sigma * sqrt(-2 * ln(1 - random()))
                                                 * cos(2 * pi() * random()), :lng0), :lng1) END AS lng,
                       CASE WHEN g % 20 < 10 THEN 'wish' WHEN g % 20 < 13 THEN 'project'
                            WHEN g % 20 < 15 THEN 'charity' WHEN g % 20 < 18 THEN 'service'
                            ELSE 'energy' END AS kind,
                       (ARRAY['open','open','open','open','claimed','claimed','closed','closed','expired',
                              'cancelled'])[(g / 20) % 10 + 1] AS status,
                       now() - (g::float8 / :n) * interval '365 days' AS created_at
                FROM generate_series(1, :n) AS g
            ) AS p
            """
        ),
        {
            "n": postings,
            "authors": AUTHORS,
            "deg": GEOCELL_DEG,
            "lat0": CITY[0],
            "lat1": CITY[1],
            "lng0": CITY[2],
            "lng1": CITY[3],
            "clat": CENTRE[0],
            "clng": CENTRE[1],
            "sigma": SIGMA_DEG,
        },
    )
    load_tags(conn)


def load_tags(conn: sa.Connection) -> None:
    """Tags drawn at random: none (a quarter), a free tag (a quarter), one skill (a
    quarter), two skills (a quarter); a skill as its code or its Chinese name, as
    residents and coordinators' tools write them. The tags of live wishes,
    projects and charity activities carry their posting's point, as the app
    writes them (app.services.lifecycle.tag_place)."""
    conn.execute(
        sa.text(
            """
            INSERT INTO posting_tags (posting_id, tag, position, lat, lng, geocell)
            SELECT x.id, t.tag, t.position,
                   CASE WHEN x.placed THEN x.lat END, CASE WHEN x.placed THEN x.lng END,
                   CASE WHEN x.placed THEN x.geocell END
            FROM (
                SELECT id, lat, lng, geocell, random() AS r, floor(random() * 15)::int AS first,
                       floor(random() * 14)::int AS step, random() < 0.5 AS by_name,
                       kind = ANY(CAST(:matched AS text[])) AND status = ANY(CAST(:live AS text[])) AS placed
                FROM postings OFFSET 0
            ) AS x
            CROSS JOIN LATERAL (
                SELECT '社区' AS tag, 0 AS position WHERE x.r >= 0.25 AND x.r < 0.5
                UNION ALL
                SELECT CASE WHEN x.by_name THEN (CAST(:names AS text[]))[x.first + 1]
                            ELSE (CAST(:codes AS text[]))[x.first + 1] END, 0
                WHERE x.r >= 0.5
                UNION ALL
                SELECT (CAST(:codes AS text[]))[(x.first + 1 + x.step) % 15 + 1], 1 WHERE x.r >= 0.75
            ) AS t
            """
        ),
        {
            "codes": [skill.code for skill in DEFAULT_SKILLS],
            "names": [skill.name_zh for skill in DEFAULT_SKILLS],
            "matched": list(kinds_where(matched_to_volunteers=True)),
            "live": list(LIVE_POSTING_STATUSES),
        },
    )


def load_volunteers(conn: sa.Connection, volunteers: int) -> None:
    """Users AUTHORS+1 … AUTHORS+V, each a volunteer with a home in the city."""
    conn.execute(sa.text("DELETE FROM volunteer_skills"))
    conn.execute(sa.text("DELETE FROM volunteers"))
    conn.execute(sa.text("DELETE FROM users WHERE id > :authors"), {"authors": AUTHORS})
    conn.execute(
        sa.text(
            """
            INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, timezone,
                               muted_kinds, nearby_alerts, created_at, updated_at)
            SELECT :authors + g, '+86138' || lpad(g::text, 8, '0'), 'bench', '志愿者' || g, false, 'zh-CN',
                   'Asia/Shanghai', '[]'::json, g % 10 <> 0, now(), now()
            FROM generate_series(1, :v) AS g
            """
        ),
        {"v": volunteers, "authors": AUTHORS},
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"), {"n": AUTHORS + volunteers})
    conn.execute(
        sa.text(
            """
            INSERT INTO volunteers (user_id, volunteer_no, real_name, id_hash, id_masked, skills, district,
                                    home_lat, home_lng, push_radius_km, registered_at, created_at, updated_at)
            SELECT :authors + g, 'NB' || lpad(g::text, 8, '0'), '志愿者', md5(g::text), '3302**********0000',
                   CASE WHEN k < 0.2 THEN '[]'::json
                        WHEN k < 0.6 THEN json_build_array((CAST(:codes AS text[]))[h % 15 + 1])
                        ELSE json_build_array((CAST(:codes AS text[]))[h % 15 + 1],
                                              (CAST(:codes AS text[]))[(h % 15 + 1 + (h / 15) % 14) % 15 + 1])
                   END,
                   'haishu',
                   CASE WHEN g % 2 = 0 THEN :lat0 + random() * (:lat1 - :lat0)
                        ELSE least(greatest(:clat + :sigma * sqrt(-2 * ln(1 - random()))
                                             * cos(2 * pi() * random()), :lat0), :lat1) END,
                   CASE WHEN g % 2 = 0 THEN :lng0 + random() * (:lng1 - :lng0)
                        ELSE least(greatest(:clng + :sigma * sqrt(-2 * ln(1 - random()))
                                             * cos(2 * pi() * random()), :lng0), :lng1) END,
                   CASE WHEN g % 10 < 7 THEN 3 WHEN g % 10 < 9 THEN 5 ELSE 10 + (g % 41) END,
                   now(), now(), now()
            FROM (SELECT g, random() AS k, floor(random() * 210)::int AS h
                  FROM generate_series(1, :v) AS g OFFSET 0) AS s
            """
        ),
        {
            "v": volunteers,
            "authors": AUTHORS,
            "lat0": CITY[0],
            "lat1": CITY[1],
            "lng0": CITY[2],
            "lng1": CITY[3],
            "clat": CENTRE[0],
            "clng": CENTRE[1],
            "sigma": SIGMA_DEG,
            "codes": [skill.code for skill in DEFAULT_SKILLS],
        },
    )
    conn.execute(
        sa.text(
            """
            INSERT INTO volunteer_skills (user_id, skill, home_lat, home_lng, push_radius_km)
            SELECT v.user_id, s.skill, v.home_lat, v.home_lng, v.push_radius_km
            FROM volunteers AS v CROSS JOIN LATERAL json_array_elements_text(v.skills) AS s(skill)
            """
        )
    )


def time_alerts(rng: random.Random, wishes: int = 50) -> None:
    """alert_volunteers for wishes opening at random points (rolled back)."""
    from app.geo import geocell_for
    from app.models import Posting, PostingTag
    from app.services.nearby_alerts import alert_volunteers

    timings, reached = [], []
    for i in range(wishes):
        lat, lng = random_centre(rng)
        kind = "project" if i % 4 == 3 else "wish"
        posting = Posting(
            kind=kind,
            status="open",
            title=f"附近{kind} {i}",
            description="d",
            district="haishu",
            lat=lat,
            lng=lng,
            geocell=geocell_for(lat, lng),
            author_id=1,
            capacity=1 if kind == "wish" else 20,
        )
        if i % 2:
            posting.tags = [PostingTag(tag="助老", position=0, lat=lat, lng=lng, geocell=posting.geocell)]
        db.session.add(posting)
        db.session.flush()
        started = time.perf_counter()
        reached.append(alert_volunteers(posting))
        timings.append((time.perf_counter() - started) * 1000)
        db.session.rollback()
    print(f"\n{wishes} postings opening (a quarter projects; half tagged 助老), alert_volunteers:")
    print(
        f"p50 {percentile(timings, 50):.1f} ms, p95 {percentile(timings, 95):.1f} ms, max {max(timings):.1f} ms;"
        f" volunteers reached per wish: median {statistics.median(reached):.0f}, max {max(reached)}"
    )


def time_for_me(rng: random.Random, volunteers: int, queries: int) -> None:
    """postings_for_me for random volunteers: their first page and, when there is
    one, the next."""
    from app.models import User
    from app.services.matching import postings_for_me

    firsts, seconds, counts = [], [], []
    for _ in range(queries):
        user = db.session.get(User, AUTHORS + rng.randint(1, volunteers))
        actor = Actor(user)
        started = time.perf_counter()
        items, cursor = postings_for_me(actor, limit=20)
        firsts.append((time.perf_counter() - started) * 1000)
        counts.append(len(items))
        if cursor:
            started = time.perf_counter()
            postings_for_me(actor, cursor=cursor, limit=20)
            seconds.append((time.perf_counter() - started) * 1000)
        db.session.rollback()  # end the read transaction, as a request would
    print(f"\n{queries} random volunteers, postings_for_me, 20 items:")
    print(f"{'page':<8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'n':>5}")
    for label, timings in (("first", firsts), ("second", seconds)):
        if timings:
            print(
                f"{label:<8} {percentile(timings, 50):8.2f} {percentile(timings, 95):8.2f} {max(timings):8.2f}"
                f" {len(timings):5d}"
            )
    print(f"items on the first page: mean {statistics.mean(counts):.1f}, fewer than 20: {sum(c < 20 for c in counts)}")


def explain_for_me(radius_km: float, near: tuple[float, float]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement of one postings_for_me call,
    for the two-skill volunteer with this radius nearest ``near``."""
    from app.models import User
    from app.services.matching import postings_for_me

    user_id = db.session.scalar(
        sa.text(
            "SELECT user_id FROM volunteers WHERE json_array_length(skills) = 2 AND push_radius_km = :r"
            " ORDER BY (home_lat - :lat) ^ 2 + (home_lng - :lng) ^ 2 LIMIT 1"
        ),
        {"r": radius_km, "lat": near[0], "lng": near[1]},
    )
    user = db.session.get(User, user_id)
    volunteer = user.volunteer
    captured = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        items, _ = postings_for_me(Actor(user), limit=20)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    print(
        f"\nfor_me, volunteer {user_id}: skills {volunteer.skills}, radius {radius_km:g} km,"
        f" home {volunteer.home_lat:.4f},{volunteer.home_lng:.4f}; {len(captured)} statements;"
        f" first page: {[(i.match['skills'], i.distance_km) for i in items[:3]]} …"
    )
    raw = db.session.connection().connection.driver_connection
    for statement, parameters in captured:
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        print(f"\n-- {' '.join(statement.split())[:160]} …\n{plan}")
    db.session.rollback()


def random_centre(rng: random.Random) -> tuple[float, float]:
    if rng.random() < 0.5:
        return rng.uniform(CITY[0], CITY[1]), rng.uniform(CITY[2], CITY[3])
    return rng.gauss(CENTRE[0], SIGMA_DEG), rng.gauss(CENTRE[1], SIGMA_DEG)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(centres: list[tuple[float, float]], sort: str) -> tuple[list[float], list[int]]:
    timings, counts = [], []
    for lat, lng in centres:
        started = time.perf_counter()
        items, _ = list_postings(Actor(None), kinds=["wish"], near=Near(lat, lng, 3.0), sort=sort, limit=20)
        timings.append((time.perf_counter() - started) * 1000)
        counts.append(len(items))
        db.session.rollback()  # end the read transaction, as a request would
    return timings, counts


def explain(lat: float, lng: float, sort: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact statement list_postings sends."""
    captured = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if "distance_km" in statement and not captured:
            captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        list_postings(Actor(None), kinds=["wish"], near=Near(lat, lng, 3.0), sort=sort, limit=20)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    statement, parameters = captured[0]
    raw = db.session.connection().connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    db.session.rollback()
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--volunteers", type=int, default=0, help="also time nearby alerts with this many")
    parser.add_argument("--for-me", action="store_true", help="also time postings_for_me (needs --volunteers)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--reload", action="store_true", help="rebuild the table even if it is full")
    args = parser.parse_args()

    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "APP_ENV": "development",
            "TESTING": True,
            "RATELIMIT_ENABLED": False,
            **LOADER_CONFIG,
        }
    )
    with app.app_context():
        have = 0
        if sa.inspect(db.engine).has_table("postings"):
            have = db.session.scalar(sa.text("SELECT count(*) FROM postings"))
            db.session.rollback()
        if args.reload or have != args.postings:
            db.drop_all()
            db.create_all()
            started = time.perf_counter()
            with db.engine.begin() as conn:
                load(conn, args.postings)
            loaded = time.perf_counter() - started
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE postings"))
                conn.execute(sa.text("VACUUM ANALYZE posting_tags"))
                conn.execute(sa.text("VACUUM ANALYZE users"))
            print(f"loaded {args.postings:,} postings in {loaded:.1f} s (+ VACUUM ANALYZE)")
        else:
            print(f"reusing {have:,} postings in {db.engine.url.database}")
        if args.volunteers:
            have = db.session.scalar(sa.text("SELECT count(*) FROM volunteers"))
            db.session.rollback()
            if args.reload or have != args.volunteers:
                started = time.perf_counter()
                with db.engine.begin() as conn:
                    load_volunteers(conn, args.volunteers)
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(sa.text("VACUUM ANALYZE volunteers"))
                    conn.execute(sa.text("VACUUM ANALYZE volunteer_skills"))
                    conn.execute(sa.text("VACUUM ANALYZE users"))
                print(f"loaded {args.volunteers:,} volunteers in {time.perf_counter() - started:.1f} s")
        stats = db.session.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE status = 'open' AND kind = 'wish'),"
                " pg_size_pretty(pg_table_size('postings')),"
                " pg_size_pretty(pg_relation_size('ix_postings_status_kind_geocell')) FROM postings"
            )
        ).one()
        db.session.rollback()
        print(f"open wishes: {stats[0]:,}; table {stats[1]}; (status, kind, geocell) index {stats[2]}")

        rng = random.Random(args.seed)
        centres = [random_centre(rng) for _ in range(args.queries)]
        run([random_centre(rng) for _ in range(20)], "distance")  # warm the pool and the cache
        print(f"\n{args.queries} random centres, open wishes within 3 km, 20 items, through feed.list_postings:")
        print(f"{'sort':<10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'mean items':>11}")
        for sort in ("distance", "newest"):
            timings, counts = run(centres, sort)
            print(
                f"{sort:<10} {percentile(timings, 50):8.2f} {percentile(timings, 95):8.2f} {max(timings):8.2f}"
                f" {statistics.mean(counts):11.1f}"
            )
        for label, (lat, lng) in (("the old town (densest)", CENTRE), ("a random centre", centres[0])):
            for sort in ("distance", "newest"):
                print(f"\nEXPLAIN (ANALYZE, BUFFERS), sort={sort}, {label} {lat:.4f},{lng:.4f}:")
                print(explain(lat, lng, sort))
        if args.volunteers:
            time_alerts(rng)
        if args.volunteers and args.for_me:
            run_for_me = random.Random(args.seed)
            time_for_me(run_for_me, args.volunteers, 20)  # warm the cache
            time_for_me(run_for_me, args.volunteers, args.queries)
            # the old town with the common radius and a wide one; the sparse north-west edge
            for radius_km, near in ((3.0, CENTRE), (30.0, CENTRE), (10.0, (30.25, 121.1))):
                explain_for_me(radius_km, near)


if __name__ == "__main__":
    main()
