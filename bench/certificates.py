"""Certificates and calendar feeds: what one request costs.

    .venv/bin/python bench/certificates.py                    # PostgreSQL yz_bench_certificates
    BENCH_DATABASE_URL=sqlite:////tmp/c.sqlite .venv/bin/python bench/certificates.py

Through the app's test client (the whole request path, no network), on a
database dropped and recreated first: never point it at data you want to keep.

1. ``issue``     POST /me/certificates over 20, 200 and 2,000 records.
2. ``pdf``       GET /certificates/{id}/pdf of those three: time, bytes, pages.
3. ``verify``    GET /certificates/verify/{code} (a 200-record certificate):
                 the row read, the canonical content rebuilt, the signature checked.
4. ``feed``      GET /calendar/{token}.ics for a user with 60 sign-ups in the
                 window: built, and answered 304 on a matching If-None-Match.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask_jwt_extended import create_access_token  # noqa: E402
from pypdf import PdfReader  # noqa: E402

from app import create_app  # noqa: E402
from app.clock import utcnow  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Claim, Org, OrgMember, Posting, ServiceRecord, User, Volunteer  # noqa: E402
from bench.dbsetup import ensure_database  # noqa: E402

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/yz_bench_certificates"
SECRET = secrets.token_urlsafe(48)  # made per run: a key written here would be published
SIZES = (20, 200, 2000)


def timed(fn, repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def report(name: str, samples: list[float], extra: str = "") -> None:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(f"{name:<44} n={len(samples):<4} p50 {statistics.median(samples):8.1f} ms  p95 {p95:8.1f} ms  {extra}")


def build(app) -> dict:
    """An org, one volunteer per certificate size with that many records, and a
    user with 60 sign-ups in the calendar window."""
    now = utcnow()
    with app.app_context():
        db.drop_all()
        db.create_all()
        coordinator = User(phone="+8613800000001", password_hash="x", display_name="协调员")
        db.session.add(coordinator)
        db.session.flush()
        org = Org(name="鼓楼街道志愿服务站", kind="community", district="haishu", status="approved", member_count=1)
        db.session.add(org)
        db.session.flush()
        db.session.add(OrgMember(org_id=org.id, user_id=coordinator.id, role="coordinator"))
        volunteers = {}
        for i, size in enumerate(SIZES):
            user = User(phone=f"+861390000{i:04d}", password_hash="x", display_name=f"志愿者{i}")
            db.session.add(user)
            db.session.flush()
            db.session.add(
                Volunteer(
                    user_id=user.id, volunteer_no=f"NB{user.id:08d}", real_name="欧阳娜娜", id_hash=f"h{i}",
                    id_masked="3302**********123X", district="haishu", registered_at=now,
                )
            )  # fmt: skip
            db.session.execute(
                sa.insert(ServiceRecord),
                [
                    {
                        "volunteer_id": user.id, "org_id": org.id, "kind": "credit", "status": "recorded",
                        "activity": f"敬老院陪伴第{n}次",
                        "minutes": 90, "started_at": now - timedelta(hours=n + 2), "ended_at": now - timedelta(hours=n),
                        "place": "海曙区鼓楼街道颐乐园", "created_at": now,
                    }
                    for n in range(size)
                ],
            )  # fmt: skip
            volunteers[size] = user.id
        subscriber = User(phone="+8613900009999", password_hash="x", display_name="订阅者")
        db.session.add(subscriber)
        db.session.flush()
        for n in range(60):
            start = now + timedelta(days=n % 30 - 15, hours=n % 5)
            posting = Posting(
                kind="project", title=f"社区活动{n}", description="详情" * 40, status="open", district="haishu",
                address="海曙区鼓楼街道", lat=29.87, lng=121.55, org_id=org.id, author_id=coordinator.id,
                capacity=20, starts_at=start, ends_at=start + timedelta(hours=3),
            )  # fmt: skip
            db.session.add(posting)
            db.session.flush()
            db.session.add(
                Claim(posting_id=posting.id, user_id=subscriber.id, kind="project", status="active", claimed_at=now)
            )
        db.session.commit()
        tokens = {
            size: create_access_token(identity=str(uid), additional_claims={"fam": "bench"})
            for size, uid in volunteers.items()
        }
        tokens["subscriber"] = create_access_token(identity=str(subscriber.id), additional_claims={"fam": "bench"})
        return {"org_id": org.id, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="requests per measured operation")
    args = parser.parse_args()
    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB), fresh=True)
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "RATELIMIT_ENABLED": False, "SECRET_KEY": SECRET}
        | {"JWT_SECRET_KEY": SECRET, "PUSH_BACKEND": "memory"}
    )
    data = build(app)
    client = app.test_client()

    def auth(key):
        return {"Authorization": f"Bearer {data['tokens'][key]}"}

    print(f"database: {url.split('@')[-1]}")
    certificates = {}
    for size in SIZES:
        issued = []
        samples = timed(
            lambda size=size, issued=issued: issued.append(
                client.post("/api/v1/me/certificates", json={"org_id": data["org_id"]}, headers=auth(size)).get_json()
            ),
            max(3, args.repeat // (size // 20 or 1)),
        )
        certificates[size] = issued[-1]
        assert "id" in issued[-1], issued[-1]
        report(f"issue, {size} records", samples)
    for size in SIZES:
        path = f"/api/v1/certificates/{certificates[size]['id']}/pdf"
        body = client.get(path, headers=auth(size)).data
        pages = len(PdfReader(io.BytesIO(body)).pages)
        repeat = max(3, args.repeat // (size // 20 or 1))
        samples = timed(lambda path=path, size=size: client.get(path, headers=auth(size)), repeat)
        report(f"pdf, {size} records", samples, f"{len(body) / 1024:.0f} KiB, {pages} pages")
    code = certificates[200]["code"]
    report(
        "verify (JSON), 200-record certificate", timed(lambda: client.get(f"/api/v1/certificates/verify/{code}"), 200)
    )
    report("verify (HTML page)", timed(lambda: client.get(f"/verify/{code}"), 200))

    feed_path = (
        client.post("/api/v1/me/calendar", headers=auth("subscriber")).get_json()["url"].split("localhost", 1)[1]
    )
    first = client.get(feed_path)
    events = first.data.count(b"BEGIN:VEVENT")
    report("calendar feed, built", timed(lambda: client.get(feed_path), 100), f"{events} events, {len(first.data)} B")
    etag = first.headers["ETag"]
    samples = timed(lambda: client.get(feed_path, headers={"If-None-Match": etag}), 100)
    report("calendar feed, 304 on If-None-Match", samples)
    with app.app_context():
        db.engine.dispose()


if __name__ == "__main__":
    main()
