"""Postings: the five micro-postings (五微) in one table."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.ext.compiler import compiles

from app.models.base import Base, Timestamped, UTCDateTime
from app.models.photos import Photo

# "Never": the stand-in end of a posting that has none, so orders and keyset
# comparisons on when a posting stops taking claims stay total.
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


class Posting(Timestamped, Base):
    __tablename__ = "postings"
    __table_args__ = (
        # The nearby search reads this index only (PostgreSQL index-only scan): the
        # distance, the order and the page come from it; the heap is read for the
        # 20 rows of the page alone.
        # "For me" (app/services/matching.py) reads it alone too: the deadline it
        # ranks on and the author it leaves out are in it.
        sa.Index(
            "ix_postings_status_kind_geocell",
            "status",
            "kind",
            "geocell",
            postgresql_include=["lat", "lng", "created_at", "id", "expires_at", "starts_at", "author_id"],
        ),
        # the feed's default order (newest first) as a backward index scan
        sa.Index("ix_postings_status_created_at_id", "status", "created_at", "id"),
        sa.Index("ix_postings_status_expires_at", "status", "expires_at"),
        sa.Index("ix_postings_status_starts_at", "status", "starts_at"),
        # closing events, services and rewards at their end (expire_postings)
        sa.Index("ix_postings_status_ends_at", "status", "ends_at"),
        sa.Index("ix_postings_district_status", "district", "status"),
        sa.Index("ix_postings_org_id", "org_id"),
        sa.Index("ix_postings_author_id", "author_id"),
        sa.CheckConstraint("claimed_count >= 0", name="claimed_count_not_negative"),
        sa.CheckConstraint("capacity IS NULL OR claimed_count <= capacity", name="claimed_count_within_capacity"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    kind: so.Mapped[str] = so.mapped_column(sa.String(10))
    title: so.Mapped[str] = so.mapped_column(sa.String(80))
    description: so.Mapped[str] = so.mapped_column(sa.String(2000))
    status: so.Mapped[str] = so.mapped_column(sa.String(16))
    district: so.Mapped[str] = so.mapped_column(sa.String(32))
    address: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    lat: so.Mapped[float | None]
    lng: so.Mapped[float | None]
    geocell: so.Mapped[int | None]
    org_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("orgs.id", ondelete="SET NULL"))
    # An org-less wish's recording org (谁组织谁记录): the org of the coordinator who
    # approved it, set at approval; the records of its claim name it.
    recording_org_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("orgs.id", ondelete="SET NULL"))
    author_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"))
    capacity: so.Mapped[int | None]
    claimed_count: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    waitlist_count: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    starts_at: so.Mapped[datetime | None]
    ends_at: so.Mapped[datetime | None]
    expires_at: so.Mapped[datetime | None]
    claim_ttl_hours: so.Mapped[int | None]
    energy_cost: so.Mapped[int | None]
    beneficiary_name: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    beneficiary_phone: so.Mapped[str | None] = so.mapped_column(sa.String(20))
    beneficiary_address: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    review_note: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    reviewed_by: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: so.Mapped[datetime | None]
    cancel_reason: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    # The expires_at its poster was last warned about (posting_expiring, app/jobs.py);
    # a new deadline (the poster extended it) earns a new warning.
    expiry_warned_for: so.Mapped[datetime | None]
    # Links to images hosted elsewhere, before photos were uploaded (app.models.photos).
    # Nothing reads or writes it: migration e5a7c3b19d42 emptied it, and the release
    # after this one drops the column, once no running code of the previous release
    # can still write it (docs/operations.md, Upgrades).
    photo_urls: so.Mapped[list[str]] = so.mapped_column(sa.JSON, default=list, deferred=True)

    tags: so.Mapped[list[PostingTag]] = so.relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="PostingTag.position"
    )
    # Its photos, in order (at most MAX_PHOTOS); lists load them for a whole page
    # at once (app.services.photos.load_photos).
    photos: so.Mapped[list[Photo]] = so.relationship(viewonly=True, order_by="Photo.position")

    @property
    def tag_names(self) -> list[str]:
        return [t.tag for t in self.tags]


_PLACED = sa.text("geocell IS NOT NULL")


class PostingTag(Base):
    """One tag of a posting; a table of its own so the feed filters by index.

    While its posting can still be matched to volunteers (a live wish, project
    or charity activity), each row carries a copy of the posting's point
    (``lat``, ``lng``, ``geocell``; app.services.lifecycle.tag_place), so the
    live postings that carry a tag around a point — the skills part of "for
    me" — come from ``ix_posting_tags_tag_geocell`` alone, never from every
    posting with that tag in the city's history.
    """

    __tablename__ = "posting_tags"
    __table_args__ = (
        sa.Index("ix_posting_tags_tag_posting_id", "tag", "posting_id"),
        sa.Index(
            "ix_posting_tags_tag_geocell",
            "tag",
            "geocell",
            postgresql_include=["lat", "lng", "posting_id"],
            postgresql_where=_PLACED,
            sqlite_where=_PLACED,
        ),
    )

    posting_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("postings.id", ondelete="CASCADE"), primary_key=True)
    tag: so.Mapped[str] = so.mapped_column(sa.String(20), primary_key=True)
    position: so.Mapped[int] = so.mapped_column(default=0)
    lat: so.Mapped[float | None]
    lng: so.Mapped[float | None]
    geocell: so.Mapped[int | None]


class _Never(sa.sql.expression.ColumnElement[datetime]):
    """:data:`NEVER` written into the SQL as a constant: PostgreSQL matches an
    expression index only to the same expression, and a bound parameter is not
    the same expression once a statement is prepared."""

    type = UTCDateTime()
    inherit_cache = True
    _traverse_internals: list = []


@compiles(_Never)
def _never(_element, _compiler, **_kw) -> str:
    # SQLite keeps times as text, in the form its bound parameters take
    return "'9999-12-31 00:00:00.000000'"


@compiles(_Never, "postgresql")
def _never_postgresql(_element, _compiler, **_kw) -> str:
    return "CAST('9999-12-31 00:00:00+00' AS TIMESTAMP WITH TIME ZONE)"


def ending_at(model=Posting) -> sa.ColumnElement[datetime]:
    """When a posting stops taking claims: its expiry, else its end, else never
    (``sort=ending_soon`` orders by it; ``ix_postings_status_ending_at`` serves it)."""
    return sa.func.coalesce(model.expires_at, model.ends_at, _Never())


# the feed's sort=ending_soon, city-wide, as an index range instead of a sort of every open posting
sa.Index("ix_postings_status_ending_at", Posting.status, ending_at(), Posting.id)
