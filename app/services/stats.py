"""Public figures (数据看板), for the whole city or one district.

- ``volunteers``: registered volunteers (by their own district);
- ``wishes_posted``: public wishes (``PUBLIC_POSTING_STATUSES``: the ones
  anybody can see, on the wall or finished);
- ``wishes_claimed``: wishes a volunteer took on and has not given up
  (``TAKEN_CLAIM_STATUSES``: active, fulfilled, confirmed);
- ``wishes_fulfilled``: wishes marked done (``DONE_CLAIM_STATUSES``);
- ``credit_hours``: recorded credit hours served on postings (by the posting's district);
- ``postings_by_kind``: public postings of each kind.

Each figure is one indexed aggregate; the answer may be cached by a proxy for
``CACHE_SECONDS``.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Claim, Posting, ServiceRecord, Volunteer
from app.policy import DONE_CLAIM_STATUSES, POSTING_KINDS, PUBLIC_POSTING_STATUSES, TAKEN_CLAIM_STATUSES, hours
from app.services.records import counted

CACHE_SECONDS = 60


def city_stats(district: str | None = None) -> dict:
    published = Posting.status.in_(PUBLIC_POSTING_STATUSES)

    def in_district(stmt: sa.Select, column) -> sa.Select:
        return stmt.where(column == district) if district else stmt

    volunteers = db.session.scalar(in_district(sa.select(sa.func.count(Volunteer.id)), Volunteer.district))
    by_kind = dict.fromkeys(POSTING_KINDS, 0)
    rows = db.session.execute(
        in_district(
            sa.select(Posting.kind, sa.func.count(Posting.id)).where(published).group_by(Posting.kind),
            Posting.district,
        )
    ).all()
    by_kind.update({kind: count for kind, count in rows})

    def wishes_with_claims(statuses: tuple[str, ...]) -> int:
        stmt = (
            sa.select(sa.func.count(sa.distinct(Claim.posting_id)))
            .join(Posting, Posting.id == Claim.posting_id)
            .where(Claim.kind == "wish", Claim.status.in_(statuses))
        )
        return db.session.scalar(in_district(stmt, Posting.district)) or 0

    credit_minutes = db.session.scalar(
        in_district(
            sa.select(sa.func.coalesce(sa.func.sum(ServiceRecord.minutes), 0))
            .join(Posting, Posting.id == ServiceRecord.posting_id)
            .where(ServiceRecord.kind == "credit", counted()),
            Posting.district,
        )
    )
    return {
        "district": district,
        "volunteers": volunteers or 0,
        "wishes_posted": by_kind["wish"],
        "wishes_claimed": wishes_with_claims(TAKEN_CLAIM_STATUSES),
        "wishes_fulfilled": wishes_with_claims(DONE_CLAIM_STATUSES),
        "credit_hours": hours(credit_minutes),
        "postings_by_kind": by_kind,
    }
