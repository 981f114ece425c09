"""A posting as one viewer sees it: what is public, and what only its contacts see."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by

from app.errors import NotFound
from app.extensions import db
from app.models import Claim, Org, Photo, Posting, PostingTag, User
from app.policy import LIVE_CLAIM_STATUSES, POLICIES
from app.services.permissions import Actor
from app.services.photos import load_photos, photos_of_postings
from app.services.posting_place import ShownPlace, shown_place
from app.validators import mask_name

# What the hot reads (the feed, "for me", a posting's page) select of a posting:
# every column but the retired photo_urls, as plain rows (``sa.Row`` reads like
# the model: ``row.kind``), never ORM objects.
POSTING_COLUMNS = tuple(column for column in Posting.__table__.c if column.key != "photo_urls")


@dataclass
class PostingView:
    """A posting as one viewer sees it: the row plus what depends on the viewer.

    ``posting`` is a ``Posting``, or a row of ``POSTING_COLUMNS`` (the hot reads)."""

    posting: Posting | sa.Row
    author: dict[str, Any]
    org: dict[str, Any] | None
    beneficiary: dict[str, Any]
    # its point, address and distance as this viewer may know them (place.shown_place)
    place: ShownPlace
    my_claim: Claim | None = None
    # "for me": the viewer's skills the tags name, and the distance from their home
    match: dict[str, Any] | None = None
    # the tags' names, when read with the page rather than through posting.tags
    tag_names: list[str] | None = None
    # its story (微故事): the confirmed fulfilment's note and photos, when public
    story: dict[str, Any] | None = None
    # its photos, when read with the page rather than through posting.photos
    photos: list | None = None

    def __post_init__(self) -> None:
        if self.tag_names is None:
            self.tag_names = self.posting.tag_names
        if self.photos is None:
            self.photos = self.posting.photos

    def __getattr__(self, name: str) -> Any:
        # Everything else is the posting's own column.
        return getattr(self.posting, name)

    @property
    def location(self) -> dict[str, float] | None:
        return self.place.location

    @property
    def address(self) -> str | None:
        return self.place.address

    @property
    def distance_km(self) -> float | None:
        return self.place.distance_km

    @property
    def reject_reason(self) -> str | None:
        return self.posting.review_note if self.posting.status == "rejected" else None


def get_posting(actor: Actor, posting_id: int) -> PostingView:
    """One posting as ``actor`` may see it; 404 if they may not (a posting's page:
    read as a row, like the feed)."""
    row = posting_rows([posting_id]).get(posting_id)
    if row is None or not actor.may_view_posting(row, lambda: _held_claim(actor, row)):
        raise NotFound()
    return views_of(actor, [row], detail=True, **names_of([row]))[0]


def page_columns(postgresql: bool) -> tuple[sa.ColumnElement, ...]:
    """What a page's statement selects beside ``POSTING_COLUMNS`` and the names,
    so the page needs no statement of its own for them: whether the posting
    has photos (``has_photos``: their query runs only for those that do) and, on
    PostgreSQL, its tags in order (``tag_list``; SQLite, whose aggregates take
    no order, reads them with :func:`tag_names_of`)."""
    has_photos = sa.exists().where(Photo.posting_id == Posting.id).label("has_photos")
    if not postgresql:
        return (has_photos,)
    tags = (
        sa.select(sa.func.json_agg(aggregate_order_by(PostingTag.tag, PostingTag.position)))
        .where(PostingTag.posting_id == Posting.id)
        .scalar_subquery()
    )
    return has_photos, sa.type_coerce(tags, sa.JSON).label("tag_list")


@cache
def _rows(postgresql: bool) -> sa.Select:
    return (
        sa.select(
            *POSTING_COLUMNS,
            User.display_name.label("author_name"),
            Org.name.label("org_name"),
            *page_columns(postgresql),
        )
        .join(User, User.id == Posting.author_id)
        .outerjoin(Org, Org.id == Posting.org_id)
        .where(Posting.id.in_(sa.bindparam("ids", expanding=True)))
    )


def posting_rows(posting_ids: Sequence[int]) -> dict[int, sa.Row]:
    """Postings by id as rows of ``POSTING_COLUMNS`` with ``author_name``,
    ``org_name`` and :func:`page_columns` (one statement, built once)."""
    if not posting_ids:
        return {}
    stmt = _rows(db.session.get_bind().dialect.name == "postgresql")
    return {row.id: row for row in db.session.execute(stmt, {"ids": list(posting_ids)})}


def names_of(rows: Sequence[sa.Row]) -> dict[str, Any]:
    """What rows carrying ``author_name``, ``org_name`` and :func:`page_columns`
    spare :func:`views_of`: its ``author_names``, ``org_names``, the query of
    their tags (on PostgreSQL) and that of their photos when they have none."""
    aggregated = bool(rows) and "tag_list" in rows[0]._fields
    return {
        "author_names": {row.author_id: row.author_name for row in rows},
        "org_names": {row.org_id: row.org_name for row in rows if row.org_id is not None},
        "tag_names": (
            {row.id: row.tag_list or [] for row in rows} if aggregated else tag_names_of([row.id for row in rows])
        ),
        "photographed": [row.id for row in rows if row.has_photos],
    }


_TAGS = (
    sa.select(PostingTag.posting_id, PostingTag.tag)
    .where(PostingTag.posting_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(PostingTag.posting_id, PostingTag.position)
)


def tag_names_of(posting_ids: Sequence[int]) -> dict[int, list[str]]:
    """The tags of a page of postings as plain names, in their order: one light
    statement instead of loading a PostingTag object per tag."""
    names: dict[int, list[str]] = {posting_id: [] for posting_id in posting_ids}
    if posting_ids:
        for posting_id, tag in db.session.execute(_TAGS, {"ids": list(posting_ids)}):
            names[posting_id].append(tag)
    return names


def visible_posting(actor: Actor, posting_id: int) -> Posting:
    posting = db.session.get(Posting, posting_id)
    if posting is None or not actor.may_view_posting(posting, lambda: _held_claim(actor, posting)):
        raise NotFound()
    return posting


def _held_claim(actor: Actor, posting: Posting | sa.Row) -> bool:
    held = sa.select(Claim.id).where(Claim.posting_id == posting.id, Claim.user_id == actor.id).limit(1)
    return db.session.scalar(held) is not None


def view_of(actor: Actor, posting: Posting) -> PostingView:
    """The full view of one posting: the beneficiary's contact for those allowed."""
    return views_of(actor, [posting], detail=True)[0]


def views_of(
    actor: Actor,
    postings: Sequence[Posting | sa.Row],
    *,
    detail: bool = False,
    distances: Mapping[int, float] | None = None,
    origin: tuple[float, float] | None = None,
    matches: Mapping[int, list[str]] | None = None,
    author_names: Mapping[int, str] | None = None,
    org_names: Mapping[int, str] | None = None,
    tag_names: Mapping[int, list[str]] | None = None,
    photographed: Sequence[int] | None = None,
) -> list[PostingView]:
    """Views of many postings in a fixed number of queries (authors, orgs, the
    viewer's claims), never one per posting. Lists (``detail=False``) never
    carry a beneficiary's phone or address. ``distances`` (km, measured from
    ``origin`` by a search) and ``matches`` (skills matched, for "for me") are
    per posting id; the place each viewer sees is ``place.shown_place``'s; ``author_names`` and
    ``org_names``, when the caller read them with the postings, spare a query each;
    so does ``tag_names`` the loading of ``posting.tags``, and ``photographed``
    (the ids of those with photos) the photos' query for the others. ``postings`` may be
    ``Posting`` objects or rows of ``POSTING_COLUMNS``."""
    if not postings:
        return []
    ids = [p.id for p in postings]
    authors = author_names
    if authors is None:
        authors = dict(
            db.session.execute(
                sa.select(User.id, User.display_name).where(User.id.in_({p.author_id for p in postings}))
            ).all()
        )
    orgs = org_names
    org_ids = {p.org_id for p in postings if p.org_id is not None}
    if orgs is None:
        orgs = dict(db.session.execute(sa.select(Org.id, Org.name).where(Org.id.in_(org_ids))).all()) if org_ids else {}
    claims = viewer_claims(actor, ids) if actor.signed_in else {}
    stories = public_stories(postings)
    load_photos(claims=[*claims.values(), *stories.values()])
    photos = photos_of_postings(ids if photographed is None else photographed)

    views = []
    for posting in postings:
        my_claim = claims.get(posting.id)
        claim_status = my_claim.status if my_claim else None
        contact = detail and actor.is_contact(posting, claim_status)
        place = shown_place(
            actor,
            posting,
            claim_status,
            origin=origin,
            distance_km=distances.get(posting.id) if distances else None,
        )
        views.append(
            PostingView(
                posting=posting,
                author={"id": posting.author_id, "display_name": authors.get(posting.author_id)},
                org={"id": posting.org_id, "name": orgs.get(posting.org_id)} if posting.org_id else None,
                beneficiary=_beneficiary(posting, contact),
                place=place,
                my_claim=my_claim,
                match={"skills": matches[posting.id], "distance_km": place.distance_km} if matches else None,
                tag_names=tag_names.get(posting.id) if tag_names is not None else None,
                story=_story(stories.get(posting.id)),
                photos=photos.get(posting.id, []),
            )
        )
    return views


def public_stories(postings: Sequence[Posting]) -> dict[int, Claim]:
    """The fulfilment each finished posting shows everyone as its story (one query,
    only when the page holds such postings): the confirmed claim of a kind with a
    public story, whose confirmer did not keep the photos private."""
    ids = [p.id for p in postings if p.status == "closed" and POLICIES[p.kind].public_story]
    if not ids:
        return {}
    return {claim.posting_id: claim for claim in db.session.scalars(_STORIES, {"ids": ids})}


_STORIES = sa.select(Claim).where(
    Claim.posting_id.in_(sa.bindparam("ids", expanding=True)),
    Claim.status == "confirmed",
    Claim.photos_private.is_(False),
)


def _story(claim: Claim | None) -> dict[str, Any] | None:
    return None if claim is None else {"note": claim.note, "photos": claim.photos}


_VIEWER_CLAIMS = (
    sa.select(Claim)
    .where(Claim.user_id == sa.bindparam("user_id"), Claim.posting_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(Claim.id)
)


def viewer_claims(actor: Actor, posting_ids: Sequence[int]) -> dict[int, Claim]:
    """The viewer's claim on each posting: the live one, else the latest (one query,
    built once)."""
    rows = db.session.scalars(_VIEWER_CLAIMS, {"user_id": actor.id, "ids": list(posting_ids)})
    chosen: dict[int, Claim] = {}
    for claim in rows:
        current = chosen.get(claim.posting_id)
        if current is None or claim.status in LIVE_CLAIM_STATUSES or current.status not in LIVE_CLAIM_STATUSES:
            chosen[claim.posting_id] = claim
    return chosen


def _beneficiary(posting: Posting, contact: bool) -> dict[str, Any]:
    beneficiary: dict[str, Any] = {"name_masked": mask_name(posting.beneficiary_name)}
    if contact and posting.beneficiary_name is not None:
        beneficiary["phone"] = posting.beneficiary_phone
        beneficiary["address"] = posting.beneficiary_address
    return beneficiary
