"""flask seed: demo postings of every kind around Ningbo, idempotent."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Notification, Posting


def test_seed_posts_every_kind_near_ningbo_once(app, runner, client):
    first = runner.invoke(args=["seed"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=["seed"])
    assert second.exit_code == 0, second.output
    assert "created wish" in first.output and "created wish" not in second.output
    with app.app_context():
        rows = db.session.scalars(sa.select(Posting)).all()
        assert {p.kind for p in rows} == {"wish", "project", "charity", "service", "energy"}
        assert len(rows) == 9  # one of each kind and more, and the wish confirmed for the records
        assert sum(p.status == "pending_review" for p in rows) == 1
        assert (
            db.session.scalar(
                sa.select(sa.func.count()).select_from(Notification).where(Notification.kind == "nearby_posting")
            )
            >= 1
        )
    feed = client.get("/api/v1/postings?near=29.87,121.55&radius_km=10&sort=distance").get_json()["items"]
    assert {item["kind"] for item in feed} == {"wish", "project", "charity", "service", "energy"}
    assert all(item["distance_km"] <= 10 for item in feed)
