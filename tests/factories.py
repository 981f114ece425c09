"""Small factories in the CTFd style: each takes overrides and returns plain
values (ids, phones, auth headers), so tests never hold detached ORM objects."""

from __future__ import annotations

import functools
import io
import itertools
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from flask import Flask, current_app
from PIL import Image

from app.clock import utcnow
from app.extensions import db
from app.geo import geocell_for
from app.models import Claim, Device, Org, OrgMember, Posting, PostingTag, ServiceRecord, Volunteer
from app.policy import PLACE_CLAIM_STATUSES, POLICIES
from app.services import accounts, tokens, volunteers
from app.services.postings.fields import tag_rows
from app.validators import id_check_char

PASSWORD = "correct-horse-battery"
# Phones the factories make (+86139 5000 0001 on) never meet the seed's (139 0000 000x,
# 138 0000 000x) nor the OpenAPI examples' (139 1234 567x), whatever order the tests run in.
_seq = itertools.count(50_000_001)


@dataclass
class Account:
    id: int
    phone: str
    password: str
    access_token: str
    refresh_token: str
    extra: dict = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def refresh_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.refresh_token}"}


def next_phone() -> str:
    return f"+86139{next(_seq):08d}"


def id_number(seq: int | None = None, born: str = "19900101") -> str:
    """A valid mainland ID number (Ningbo Haishu region code)."""
    seq = next(_seq) if seq is None else seq
    first17 = f"330203{born}{seq % 1000:03d}"
    return first17 + id_check_char(first17)


@functools.cache
def _password_hash(password: str, time_cost: int, memory_cost: int) -> str:
    return accounts.password_hasher().hash(password)


@contextmanager
def _hashed_once(password: str):
    """The factories hash each password once per process (the suite makes thousands of
    users, nearly all with PASSWORD): argon2 is the service's own, with the app's costs;
    only its salt is shared between the factories' users."""
    config = current_app.config
    cost = (config["ARGON2_TIME_COST"], config["ARGON2_MEMORY_COST"])
    original = accounts.hash_password
    accounts.hash_password = lambda given: _password_hash(given, *cost) if given == password else original(given)
    try:
        yield
    finally:
        accounts.hash_password = original


def make_user(
    app: Flask,
    *,
    phone: str | None = None,
    password: str = PASSWORD,
    name: str | None = None,
    email: str | None = None,
    admin: bool = False,
    locale: str = "zh-CN",
    consented: bool = True,
) -> Account:
    """A user who (unless ``consented=False``) accepted the current privacy policy."""
    with app.app_context():
        phone = phone or next_phone()
        with _hashed_once(password):
            user = accounts.create_user(
                phone, password, name or f"用户{phone[-4:]}", email, is_admin=admin, locale=locale
            )
        if consented:
            accounts.record_consent(user, app.config["PRIVACY_VERSION"])
        pair = tokens.issue_tokens(user)
        db.session.commit()
        return Account(user.id, phone, password, pair["access_token"], pair["refresh_token"])


def make_volunteer(
    app: Flask,
    account: Account | None = None,
    *,
    district: str = "haishu",
    skills: list[str] | None = None,
    home: tuple[float, float] | None = (29.87, 121.55),
    push_radius_km: float = 3.0,
    **user_kwargs,
) -> Account:
    account = account or make_user(app, **user_kwargs)
    with app.app_context():
        from app.models import User

        user = db.session.get(User, account.id)
        volunteers.register_volunteer(
            user,
            {
                "real_name": "张三丰",
                "id_number": id_number(account.id + 100),
                "district": district,
                "skills": skills or [],
                "home": {"lat": home[0], "lng": home[1]} if home else None,
                "push_radius_km": push_radius_km,
            },
        )
    return account


def make_org(
    app: Flask,
    coordinator: Account | None = None,
    *,
    name: str | None = None,
    kind: str = "community",
    district: str = "haishu",
    status: str = "approved",
) -> tuple[int, Account]:
    """An org (approved by default) with ``coordinator`` as its coordinator."""
    coordinator = coordinator or make_user(app)
    with app.app_context():
        org = Org(
            name=name or f"社区{next(_seq)}",
            kind=kind,
            district=district,
            status=status,
            applicant_id=coordinator.id,
            member_count=1,
        )
        db.session.add(org)
        db.session.flush()
        db.session.add(OrgMember(org_id=org.id, user_id=coordinator.id, role="coordinator"))
        db.session.commit()
        return org.id, coordinator


def add_member(app: Flask, org_id: int, account: Account, role: str = "member") -> None:
    with app.app_context():
        db.session.add(OrgMember(org_id=org_id, user_id=account.id, role=role))
        db.session.commit()


# The capacity a factory posting gets for each capacity rule of the policy.
_CAPACITY = {"one": 1, "slots": 20, "optional": None, "stock": 10}


def posting_defaults(kind: str) -> dict:
    """Column values a valid posting of ``kind`` needs, read from the kind's policy."""
    policy = POLICIES[kind]
    now = utcnow()
    values: dict = {"capacity": _CAPACITY[policy.capacity]}
    if policy.default_expiry_days:
        values["expires_at"] = now + timedelta(days=policy.default_expiry_days)
    if policy.claim_ttl_hours:
        values["claim_ttl_hours"] = policy.claim_ttl_hours
    if policy.needs_schedule:
        values.update(starts_at=now + timedelta(days=2), ends_at=now + timedelta(days=2, hours=3))
    if policy.has_energy_cost:
        values["energy_cost"] = 50
    return values


def make_posting(
    app: Flask,
    author: Account,
    *,
    kind: str = "wish",
    status: str = "open",
    org_id: int | None = None,
    title: str = "帮独居老人修水龙头",
    lat: float | None = 29.87,
    lng: float | None = 121.55,
    district: str = "haishu",
    capacity: int | None = None,
    tags: list[str] | None = None,
    **fields,
) -> int:
    """Insert a posting directly (no policy checks); returns its id."""
    defaults = posting_defaults(kind)
    values = {**defaults, **fields}
    if capacity is not None or POLICIES[kind].capacity == "optional":
        values["capacity"] = capacity
    with app.app_context():
        posting = Posting(
            kind=kind,
            status=status,
            title=title,
            description="详情",
            district=district,
            lat=lat,
            lng=lng,
            geocell=geocell_for(lat, lng),
            org_id=org_id,
            author_id=author.id,
            **values,
        )
        posting.tags = [PostingTag(**row) for row in tag_rows(tags or [], kind, status, lat, lng)]
        db.session.add(posting)
        db.session.commit()
        return posting.id


def make_claim(app: Flask, posting_id: int, claimant: Account, status: str = "active", **fields) -> int:
    """Insert ``claimant``'s claim on a posting straight into ``status``, with the
    posting's counters (and a wish's allowance) as the claim services keep them."""
    with app.app_context():
        posting = db.session.get(Posting, posting_id)
        policy = POLICIES[posting.kind]
        now = utcnow()
        values = {
            "claimed_at": now,
            "due_at": now + timedelta(hours=policy.claim_ttl_hours) if policy.claim_ttl_hours else None,
            "fulfilled_at": now if status == "fulfilled" else None,
            "minutes": 60 if status == "fulfilled" else None,
            **fields,
        }
        claim = Claim(posting_id=posting_id, user_id=claimant.id, kind=posting.kind, status=status, **values)
        db.session.add(claim)
        if status in PLACE_CLAIM_STATUSES:
            posting.claimed_count += 1
            if policy.capacity == "one":
                posting.status = "claimed"
        elif status == "waitlisted":
            posting.waitlist_count += 1
        if policy.counts_toward_claim_limit and status == "active":
            db.session.execute(
                sa.update(Volunteer)
                .where(Volunteer.user_id == claimant.id)
                .values(active_wish_claims=Volunteer.active_wish_claims + 1)
            )
        db.session.commit()
        return claim.id


# The six callers every coordinator route is tried with.
ROLES = ("coordinator", "other_coordinator", "far_coordinator", "volunteer", "anonymous", "admin")


def make_roles(app: Flask, district: str = "haishu", far_district: str = "yinzhou") -> dict:
    """An approved org with its ``coordinator``; a ``other_coordinator`` of another
    org in the same district; a ``far_coordinator`` of an org in another district;
    a ``volunteer`` who is a plain member of the first org; an ``admin``; and
    ``anonymous`` (no headers). ``org_id``, ``other_org_id`` and ``far_org_id``
    name the orgs; ``headers[role]`` is what each sends."""
    org_id, coordinator = make_org(app, district=district)
    other_org_id, other_coordinator = make_org(app, district=district)
    far_org_id, far_coordinator = make_org(app, district=far_district)
    volunteer = make_volunteer(app, district=district)
    add_member(app, org_id, volunteer)
    admin = make_user(app, admin=True)
    accounts = {
        "coordinator": coordinator,
        "other_coordinator": other_coordinator,
        "far_coordinator": far_coordinator,
        "volunteer": volunteer,
        "admin": admin,
    }
    return {
        **accounts,
        "org_id": org_id,
        "other_org_id": other_org_id,
        "far_org_id": far_org_id,
        "headers": {"anonymous": {}, **{role: account.headers for role, account in accounts.items()}},
    }


def make_record(
    app: Flask,
    volunteer: Account,
    org_id: int | None,
    *,
    minutes: int = 120,
    kind: str = "credit",
    ended_at=None,
    activity: str = "社区垃圾分类宣传",
    place: str | None = "海曙区鼓楼街道",
    recorded_by: int | None = None,
    status: str = "recorded",
    claim_id: int | None = None,
    posting_id: int | None = None,
) -> int:
    """Insert a service record straight into the table (no counters, no energy), ``recorded``
    unless told; its window is the ``minutes`` up to ``ended_at`` (default: now). Returns its id."""
    with app.app_context():
        ended_at = ended_at or utcnow()
        record = ServiceRecord(
            volunteer_id=volunteer.id,
            org_id=org_id,
            kind=kind,
            posting_kind="project" if kind == "credit" else None,
            activity=activity,
            minutes=minutes,
            started_at=ended_at - timedelta(minutes=minutes),
            ended_at=ended_at,
            place=place,
            content="服务内容",
            recorded_by=recorded_by,
            status=status,
            claim_id=claim_id,
            posting_id=posting_id,
            created_at=utcnow(),
        )
        db.session.add(record)
        db.session.commit()
        return record.id


def set_locale(client, account: Account, locale: str) -> None:
    """The account's language (``PATCH /me``): what its pushes, inbox and messages use."""
    resp = client.patch("/api/v1/me", headers=account.headers, json={"locale": locale})
    assert resp.status_code == 200, resp.get_json()


# --- photos ------------------------------------------------------------------------------------------------------

# Where a phone's EXIF says the picture was taken: a home in Haishu (29°52'N, 121°33'E).
HOME_GPS = {1: "N", 2: (29.0, 52.0, 12.5), 3: "E", 4: (121.0, 33.0, 4.25)}
_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


def photo_bytes(
    content_type: str = "image/jpeg",
    size: tuple[int, int] = (1200, 900),
    *,
    gps: bool = True,
    orientation: int | None = None,
) -> bytes:
    """A real picture as a phone sends it: its pixels (a gradient, top-left dark) and
    EXIF — the camera, the time, and (``gps``) the position of a resident's home;
    ``orientation`` is the EXIF tag a phone held sideways writes (6: turn 90° clockwise)."""
    width, height = size
    picture = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "YZ Phone"  # Make
    exif[0x0110] = "YZ Phone 12"  # Model
    exif[0x0132] = "2026:11:20 09:30:00"  # DateTime
    if gps:
        exif[0x8825] = dict(HOME_GPS)
    if orientation:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    picture.save(buffer, _FORMATS[content_type], exif=exif.tobytes())
    return buffer.getvalue()


def request_upload(client, account: Account, purpose: str = "fulfil", content_type: str = "image/jpeg", size=1000):
    """``POST /api/v1/uploads``; the answer."""
    return client.post(
        "/api/v1/uploads",
        headers=account.headers,
        json={"purpose": purpose, "content_type": content_type, "size": size},
    )


def put_bytes(client, upload: dict, data: bytes, **headers):
    """PUT ``data`` where an upload's ``upload`` says, as a phone does: to the app's
    own /files/ (local storage; the test client's host) or over HTTP to the S3 server.
    Answers something with ``status_code``."""
    url, sent = upload["url"], {**upload["headers"], **headers}
    parts = urlsplit(url)
    if parts.netloc == "localhost":
        return client.put(parts.path, data=data, headers=sent)
    return requests.put(url, data=data, headers=sent, timeout=10)


def fetch(client, url: str):
    """GET a photo URL as a phone does; answers something with ``status_code`` and ``content``."""
    parts = urlsplit(url)
    if parts.netloc == "localhost":
        resp = client.get(parts.path)
        resp.content = resp.get_data()
        return resp
    return requests.get(url, timeout=10)


def upload_photo(
    client, account: Account, purpose: str = "fulfil", data: bytes | None = None, content_type: str = "image/jpeg"
) -> int:
    """Ask for an upload and PUT a photo to it (``data``, default :func:`photo_bytes`): its id."""
    data = photo_bytes(content_type) if data is None else data
    resp = request_upload(client, account, purpose, content_type, len(data))
    assert resp.status_code == 201, resp.get_json()
    sent = put_bytes(client, resp.get_json()["upload"], data)
    assert sent.status_code == 200, sent.status_code
    return resp.get_json()["photo_id"]


def make_device(
    app: Flask, user_id: int, token: str, platform: str = "android", provider: str = "fcm", **fields
) -> int:
    """A registered phone of ``user_id`` (an FCM token, or a JPush registration ID with
    ``provider="jpush"``), seen now unless ``last_seen_at`` says otherwise."""
    with app.app_context():
        device = Device(
            user_id=user_id,
            token=token,
            platform=platform,
            provider=provider,
            last_seen_at=fields.pop("last_seen_at", None) or utcnow(),
            **fields,
        )
        db.session.add(device)
        db.session.commit()
        return device.id
