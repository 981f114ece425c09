"""A volunteer's reputation (服务评价): the ratings of their confirmed work, once per rater.

Each rater counts once: ``volunteer_ratings`` keeps one row per (volunteer,
rater), the rater's latest rating; ``volunteer.rating`` is the mean over those
rows and its ``count`` the number of raters. A second account rating the same
volunteer five times moves the average once, not five times.

The volunteer row carries the sum and the count (``rating_total``,
``rating_count``) so a page of claims reads reputations without a query each;
they move with the rating rows, in the same transaction, while the caller
holds the volunteer's time (:func:`app.services.records.hold_time`), so two
ratings of one volunteer never interleave.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.models import Volunteer, VolunteerRating


def rate(volunteer_id: int, rater_id: int, rating: int, claim_id: int | None) -> None:
    """``rater_id``'s rating of ``volunteer_id``'s work (1-5), replacing their earlier
    one; the caller holds the volunteer's time and commits."""
    earlier = db.session.execute(
        sa.select(VolunteerRating.id, VolunteerRating.rating).where(
            VolunteerRating.volunteer_id == volunteer_id, VolunteerRating.rater_id == rater_id
        )
    ).first()
    now = utcnow()
    if earlier is None:
        db.session.add(
            VolunteerRating(
                volunteer_id=volunteer_id, rater_id=rater_id, rating=rating, claim_id=claim_id, rated_at=now
            )
        )
        values = {"rating_total": Volunteer.rating_total + rating, "rating_count": Volunteer.rating_count + 1}
    else:
        db.session.execute(
            sa.update(VolunteerRating)
            .where(VolunteerRating.id == earlier.id)
            .values(rating=rating, claim_id=claim_id, rated_at=now)
            .execution_options(synchronize_session=False)
        )
        values = {"rating_total": Volunteer.rating_total + rating - earlier.rating}
    db.session.execute(
        sa.update(Volunteer)
        .where(Volunteer.user_id == volunteer_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
