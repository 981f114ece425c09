"""Photos (照片): handed out for upload, checked when first used, attached once, purged.

The life of a photo:

1. :func:`create_upload` writes its row (``pending``) and hands out a
   presigned PUT to ``uploads/<key>``, valid ``UPLOAD_URL_TTL``; the phone
   sends the bytes straight to storage, never through a web worker.
2. The first time it is used — a posting's or a fulfilment's ``photo_ids``,
   ``PATCH /me {avatar_photo_id}`` — :func:`usable_photos` checks it: the
   caller's own, uploaded for that purpose, not used yet; its bytes there
   (422 ``photo_not_uploaded``), exactly the declared size and a picture of
   the declared type (422 ``invalid_photo``; the photo is discarded). It is
   re-encoded without its metadata (``app.images``) into the display size and
   the thumbnail, the original is deleted, and the row is ``ready`` —
   committed on its own, so a retry after a refused posting does not check
   it again. This runs in the request, within a bound: at most
   ``MAX_PHOTOS`` photos, each at most ``MAX_PHOTO_BYTES`` and
   ``MAX_PHOTO_PIXELS`` (bench/photos.py measures it).
3. :func:`attach` links it to what it belongs to in the caller's transaction,
   one conditional UPDATE that a second use of the same photo cannot pass:
   a photo is used once.
4. Who sees it follows what it belongs to (``app.services.postings.views``,
   the claim's readers, ``GET /me``); its URLs are presigned GETs that expire
   (``app.storage.download_url``).
5. The ``purge_photos`` job deletes, files and row, every photo that belongs
   to nothing: an upload unused for ``UNUSED_PHOTO_TTL``, a photo taken off
   its posting or avatar, or whose posting, claim or account went
   (:func:`delete_user_photos`); and, once an upload URL has expired, the
   original of a photo in use (a phone could have PUT it again meanwhile).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_babel import format_decimal, gettext

from app import images
from app.clock import utcnow
from app.errors import Conflict, Invalid
from app.extensions import db
from app.models import Claim, Photo, Posting, User
from app.models.photos import UNLINKED
from app.policy import (
    CHECKED_PHOTO_STATUSES,
    DISPLAY_LONGEST_SIDE,
    MAX_PHOTO_PIXELS,
    MAX_UNUSED_UPLOADS,
    SPENT_PHOTO_STATUSES,
    THUMB_LONGEST_SIDE,
    UNUSED_PHOTO_STATUSES,
    UNUSED_PHOTO_TTL,
    UPLOAD_URL_TTL,
)
from app.services.batches import batch_of
from app.services.permissions import Actor
from app.storage import storage

log = logging.getLogger(__name__)

# An upload URL's own life, and a margin for the storage service's clock.
UPLOAD_CLOSES_AFTER = UPLOAD_URL_TTL + timedelta(minutes=5)
_UNLINKED = sa.text(UNLINKED)
# What a photo may be attached to: the column on the photo that says so.
OWNERS = {"posting": Photo.posting_id, "fulfil": Photo.claim_id, "avatar": Photo.avatar_user_id}


@dataclass(frozen=True)
class Upload:
    """Where and how the phone sends a photo's bytes."""

    photo_id: int
    url: str
    headers: dict[str, str]
    expires_at: datetime
    method: str = "PUT"

    @property
    def upload(self) -> dict:
        return {"method": self.method, "url": self.url, "headers": self.headers}


# --- storage keys ------------------------------------------------------------------------------------------------


def original_key(photo: Photo) -> str:
    return f"uploads/{photo.key}"


def display_key(photo: Photo) -> str:
    return f"photos/{photo.key}.{images.EXTENSIONS[photo.content_type]}"


def thumb_key(photo: Photo) -> str:
    return f"photos/{photo.key}-thumb.{images.EXTENSIONS[photo.content_type]}"


def all_keys(photo: Photo) -> list[str]:
    return [original_key(photo), display_key(photo), thumb_key(photo)]


# --- 1. the upload -----------------------------------------------------------------------------------------------


def create_upload(actor: Actor, purpose: str, content_type: str, size: int) -> Upload:
    """A new photo of ``purpose`` and the presigned PUT its bytes go to.

    A user holds at most ``MAX_UNUSED_UPLOADS`` uploads not used yet (409
    ``upload_limit``): each may be ``MAX_PHOTO_BYTES`` of storage for a day."""
    now = utcnow()
    # One user's uploads one at a time (PostgreSQL), so the count below holds.
    db.session.execute(sa.select(User.id).where(User.id == actor.id).with_for_update())
    unused = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Photo)
        .where(
            Photo.owner_id == actor.id,
            Photo.status.in_(UNUSED_PHOTO_STATUSES),
            Photo.created_at > now - UNUSED_PHOTO_TTL,
        )
    )
    if unused >= MAX_UNUSED_UPLOADS:
        db.session.rollback()
        raise Conflict(
            "upload_limit",
            gettext(
                "You have %(count)s photos uploaded and not used yet: use them, or wait a day for them to go.",
                count=format_decimal(unused),
            ),
        )
    photo = Photo(
        owner_id=actor.id,
        purpose=purpose,
        content_type=content_type,
        size=size,
        key=secrets.token_urlsafe(24),
        status="pending",
        created_at=now,
    )
    db.session.add(photo)
    db.session.flush()
    url, headers = storage().upload_url(original_key(photo), content_type, UPLOAD_URL_TTL)
    db.session.commit()
    return Upload(photo_id=photo.id, url=url, headers=headers, expires_at=now + UPLOAD_URL_TTL)


# --- 2. the check ------------------------------------------------------------------------------------------------


def usable_photos(
    actor: Actor, photo_ids: Sequence[int], purpose: str, *, field: str = "photo_ids", kept: Iterable[int] = ()
) -> list[Photo]:
    """The photos ``photo_ids`` names, in that order, checked and ready to attach
    for ``purpose``: the caller's own, unused, uploaded and really a picture of
    their type (422 ``invalid_photo`` / ``photo_not_uploaded`` naming ``field``).
    ``kept`` are the photos the thing being edited already holds: those stay,
    whoever uploaded them. Checking commits what it found out about each photo."""
    if not photo_ids:
        return []
    kept = set(kept)
    found = {p.id: p for p in db.session.scalars(sa.select(Photo).where(Photo.id.in_(photo_ids)))}
    oldest = utcnow() - UNUSED_PHOTO_TTL
    for photo_id in photo_ids:
        photo = found.get(photo_id)
        if photo_id in kept and photo is not None:
            continue
        if photo is None or photo.owner_id != actor.id:
            raise _invalid(field, gettext("Photo %(id)s does not exist or is not yours.", id=photo_id))
        if photo.purpose != purpose:
            raise _invalid(
                field,
                gettext("Photo %(id)s was uploaded for %(purpose)s.", id=photo_id, purpose=photo.purpose),
            )
        if photo.status not in UNUSED_PHOTO_STATUSES or photo.created_at <= oldest:
            raise _invalid(field, gettext("Photo %(id)s was used already or has expired.", id=photo_id))
    pending = [found[photo_id] for photo_id in photo_ids if found[photo_id].status == "pending"]
    if pending:
        _check(pending, field)
    return [found[photo_id] for photo_id in photo_ids]


@dataclass(frozen=True)
class _Upload:
    """What examining one upload needs: plain values, for a worker thread."""

    photo_id: int
    original: str
    display: str
    thumb: str
    content_type: str
    size: int


@dataclass(frozen=True)
class _Outcome:
    status: str  # ready | discarded | missing (no bytes yet) | gone (checked meanwhile by another request)
    reason: str = ""
    width: int | None = None
    height: int | None = None


def _check(photos: Sequence[Photo], field: str) -> None:
    """Examine the uploads of ``photos`` (two at a time: the storage reads and
    Pillow's work release the GIL), record what each is, commit, then refuse the
    request at the first that is not a usable photo (in the order given)."""
    store = storage()
    uploads = [_Upload(p.id, original_key(p), display_key(p), thumb_key(p), p.content_type, p.size) for p in photos]
    if len(uploads) == 1:
        outcomes = [_examine(store, uploads[0])]
    else:
        with ThreadPoolExecutor(max_workers=images.DECODES_AT_ONCE, thread_name_prefix="photo-check") as pool:
            outcomes = list(pool.map(lambda upload: _examine(store, upload), uploads))
    now = utcnow()
    for photo, outcome in zip(photos, outcomes, strict=True):
        if outcome.status in ("ready", "discarded"):
            db.session.execute(
                sa.update(Photo)
                .where(Photo.id == photo.id, Photo.status == "pending")
                .values(status=outcome.status, width=outcome.width, height=outcome.height, checked_at=now)
                .execution_options(synchronize_session=False)
            )
        if outcome.status == "discarded":
            log.info("photo %s refused: %s", photo.id, outcome.reason)
    db.session.commit()
    for photo, outcome in zip(photos, outcomes, strict=True):
        db.session.refresh(photo)
        if photo.status == "ready":
            continue  # checked here, or by another request meanwhile ("gone")
        if outcome.status == "discarded":
            raise _invalid(
                field,
                gettext(
                    "Photo %(id)s is not a %(type)s picture of the %(size)s bytes declared "
                    "(at most %(pixels)s megapixels).",
                    id=photo.id,
                    type=photo.content_type.split("/")[-1].upper(),
                    size=format_decimal(photo.size),
                    pixels=format_decimal(MAX_PHOTO_PIXELS // 2**20),
                ),
            )
        raise _not_uploaded(photo, field)


def _examine(store, upload: _Upload) -> _Outcome:
    """Read one upload, refuse it or re-encode it (no database here). A refused
    original and a checked one are both deleted at once: what the phone sent —
    EXIF, GPS and all — is kept no longer than it takes to read it."""
    size = store.size_of(upload.original)
    if size is None:
        return _Outcome("missing")
    if size != upload.size:
        store.delete([upload.original])
        return _Outcome("discarded", f"{size} bytes, {upload.size} declared")
    data = store.read(upload.original)
    if data is None:
        return _Outcome("gone")
    if len(data) != upload.size:
        store.delete([upload.original])
        return _Outcome("discarded", f"{len(data)} bytes, {upload.size} declared")
    try:
        rendered = images.render(
            data,
            upload.content_type,
            max_pixels=MAX_PHOTO_PIXELS,
            display_side=DISPLAY_LONGEST_SIDE,
            thumb_side=THUMB_LONGEST_SIDE,
        )
    except images.BadImage as exc:
        store.delete([upload.original])
        return _Outcome("discarded", str(exc))
    store.write(upload.display, rendered.display.data, upload.content_type)
    store.write(upload.thumb, rendered.thumb.data, upload.content_type)
    store.delete([upload.original])
    return _Outcome("ready", width=rendered.display.width, height=rendered.display.height)


def _invalid(field: str, message: str) -> Invalid:
    db.session.rollback()
    return Invalid(field, message, slug="invalid_photo")


def _not_uploaded(photo: Photo, field: str) -> Invalid:
    db.session.rollback()
    return Invalid(
        field,
        gettext("Photo %(id)s has not been uploaded yet: PUT its bytes to its upload URL first.", id=photo.id),
        slug="photo_not_uploaded",
    )


# --- 3. attaching ------------------------------------------------------------------------------------------------


def attach(purpose: str, owner_id: int, photos: Sequence[Photo], *, field: str = "photo_ids") -> None:
    """Make ``photos`` (checked by :func:`usable_photos`) exactly what ``owner_id``
    holds for ``purpose``, in that order: the posting's photos, the fulfilment's,
    the user's avatar. What it held and no longer does belongs to nothing (the
    purge job removes it). Nothing is committed; a photo another request used
    meanwhile rolls everything back (422 ``invalid_photo``)."""
    column = OWNERS[purpose]
    ids = [photo.id for photo in photos]
    db.session.execute(
        sa.update(Photo)
        .where(column == owner_id, Photo.id.not_in(ids))
        .values({column.key: None})
        .execution_options(synchronize_session=False)
    )
    if not ids:
        return
    now = utcnow()
    free = sa.and_(Photo.status == "ready", _UNLINKED)
    moved = db.session.execute(
        sa.update(Photo)
        .where(Photo.id.in_(ids), sa.or_(free, column == owner_id))
        .values(
            {
                column.key: owner_id,
                "position": sa.case({photo_id: i for i, photo_id in enumerate(ids)}, value=Photo.id),
                "status": "used",
                "attached_at": sa.func.coalesce(Photo.attached_at, now),
            }
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != len(ids):
        raise _invalid(field, gettext("A photo was used meanwhile; upload it again."))


def delete_user_photos(user_id: int) -> int:
    """Every photo ``user_id`` uploaded — their postings', their fulfilments', their
    avatar — and any avatar they hold leave what they belong to now: nobody is
    shown them again, and the ``purge_photos`` job deletes their files and rows
    (within ``JOB_PURGE_PHOTOS_SECONDS``, once an upload URL still live has
    expired). For the erasure of an account; runs in the caller's transaction
    and commits nothing. Returns how many photos went."""
    return db.session.execute(
        sa.update(Photo)
        .where(sa.or_(Photo.owner_id == user_id, Photo.avatar_user_id == user_id))
        .values(posting_id=None, claim_id=None, avatar_user_id=None, status="discarded")
        .execution_options(synchronize_session=False)
    ).rowcount


# --- 4. reading --------------------------------------------------------------------------------------------------


def load_photos(postings: Sequence[Posting] = (), claims: Sequence[Claim] = ()) -> None:
    """Set ``photos`` of many postings and claims in one query (a page's worth)."""
    posting_ids = {p.id for p in postings}
    claim_ids = {c.id for c in claims}
    if not posting_ids and not claim_ids:
        return
    rows = db.session.scalars(
        sa.select(Photo)
        .where(sa.or_(Photo.posting_id.in_(posting_ids), Photo.claim_id.in_(claim_ids)))
        .order_by(Photo.position, Photo.id)
    )
    by_posting: dict[int, list[Photo]] = {}
    by_claim: dict[int, list[Photo]] = {}
    for photo in rows:
        if photo.posting_id is not None:
            by_posting.setdefault(photo.posting_id, []).append(photo)
        else:
            by_claim.setdefault(photo.claim_id, []).append(photo)
    for posting in postings:
        so.attributes.set_committed_value(posting, "photos", by_posting.get(posting.id, []))
    for claim in claims:
        so.attributes.set_committed_value(claim, "photos", by_claim.get(claim.id, []))


_POSTING_PHOTOS = (
    sa.select(Photo).where(Photo.posting_id.in_(sa.bindparam("ids", expanding=True))).order_by(Photo.position, Photo.id)
)


def photos_of_postings(posting_ids: Sequence[int]) -> dict[int, list[Photo]]:
    """The photos of a page of postings, in order, by posting id (one query, none
    for an empty page): for pages built from rows rather than ``Posting`` objects."""
    by_posting: dict[int, list[Photo]] = {}
    if posting_ids:
        for photo in db.session.scalars(_POSTING_PHOTOS, {"ids": list(posting_ids)}):
            by_posting.setdefault(photo.posting_id, []).append(photo)
    return by_posting


def avatar_of(user: User) -> Photo | None:
    return db.session.scalar(sa.select(Photo).where(Photo.avatar_user_id == user.id))


def set_avatar(actor: Actor, photo_id: int | None) -> None:
    """The caller's avatar becomes ``photo_id`` (None: no avatar; the one it is
    already: nothing changes); the old one goes. Nothing is committed."""
    current = db.session.scalar(sa.select(Photo.id).where(Photo.avatar_user_id == actor.id))
    photos = usable_photos(actor, [photo_id], "avatar", field="avatar_photo_id", kept=[current]) if photo_id else []
    # One avatar change at a time per user (PostgreSQL): the avatar's uniqueness holds.
    db.session.execute(sa.select(User.id).where(User.id == actor.id).with_for_update())
    attach("avatar", actor.id, photos, field="avatar_photo_id")


# --- 5. the purge ------------------------------------------------------------------------------------------------


def purge_photos(limit: int) -> int:
    """Delete (files, then rows) up to ``limit`` photos that belong to nothing: used
    or discarded ones, and uploads unused for ``UNUSED_PHOTO_TTL`` — each only once
    its upload URL has expired, so no PUT can bring a file back after it."""
    now = utcnow()
    rule = (
        _UNLINKED,
        Photo.created_at < now - UPLOAD_CLOSES_AFTER,
        sa.or_(Photo.status.in_(SPENT_PHOTO_STATUSES), Photo.created_at < now - UNUSED_PHOTO_TTL),
    )
    doomed = db.session.scalars(sa.select(Photo).where(batch_of(Photo, rule, limit), *rule)).all()
    if not doomed:
        return 0
    storage().delete([key for photo in doomed for key in all_keys(photo)])
    db.session.execute(
        sa.delete(Photo)
        .where(Photo.id.in_([photo.id for photo in doomed]), *rule)
        .execution_options(synchronize_session=False)
    )
    return len(doomed)


def close_uploads(limit: int) -> int:
    """Once the upload URL of a checked photo has expired, delete its original once
    more (a phone may have PUT it again after the check) and mark it closed."""
    now = utcnow()
    rule = (
        sa.not_(Photo.upload_closed),
        Photo.created_at < now - UPLOAD_CLOSES_AFTER,
        Photo.status.in_(CHECKED_PHOTO_STATUSES),
    )
    photos = db.session.scalars(sa.select(Photo).where(batch_of(Photo, rule, limit), *rule)).all()
    if not photos:
        return 0
    storage().delete([original_key(photo) for photo in photos])
    db.session.execute(
        sa.update(Photo)
        .where(Photo.id.in_([photo.id for photo in photos]))
        .values(upload_closed=True)
        .execution_options(synchronize_session=False)
    )
    return len(photos)
