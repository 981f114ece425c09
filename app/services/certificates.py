"""Certificates of volunteer service (志愿服务证明): issue, sign, verify, void.

China's record rules say whoever recorded the hours certifies them (谁记录谁证明):
a certificate covers a volunteer's records *with one org* in a period, and
the org's coordinators may void it.

A certificate is a snapshot. When it is issued, the figures (credit and honor
minutes, the number of records), the table of records and the names on it
are copied into its row; nothing added or changed later moves them.

Its public **code** is what a school or an employer checks at
``/verify/{code}``::

    base64url( version (1 byte) | key id (4) | certificate id (8, big-endian) | signature (64) )

The signature is Ed25519 over :func:`signed_content`, a canonical
serialisation of the row's certified content. Checking a code recomputes that
content from the stored row and verifies the signature with the key the code
names, so a guessed, altered or forged code, or a row altered in the database,
answers 404. The key id is the first 4 bytes of the SHA-256 of the public key:
after a rotation (``CERTIFICATE_SIGNING_KEY`` replaced) the old public key in
``CERTIFICATE_VERIFY_KEYS`` keeps the certificates it signed verifying; drop
it and they stop verifying.

The certificate **number** (``NB-2026-000123``) is made from the year of issue
(Asia/Shanghai) and the row's id: unique because the id is, readable over the
phone, but not a secret (the code is).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from datetime import date, timedelta

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from flask import current_app
from flask_babel import gettext

from app.certificate_keys import KEY_ID_BYTES, CertificateKeys, certificate_key
from app.clock import day_start, isoformat, local_date, utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import Certificate, ServiceRecord
from app.models.base import MAX_ID
from app.outbox import notify
from app.services.audit import audit
from app.services.certificate_pdf import render_certificate_pdf
from app.services.orgs import get_org, require_approved
from app.services.pagination import paginate
from app.services.permissions import Actor
from app.services.records import counted, served_at
from app.validators import check_period

log = logging.getLogger(__name__)

NUMBER_PREFIX = "NB"
CODE_VERSION = 1
_ID_BYTES = 8
_SIGNATURE_BYTES = 64
_CODE_BYTES = 1 + KEY_ID_BYTES + _ID_BYTES + _SIGNATURE_BYTES
CODE_LENGTH = len(base64.urlsafe_b64encode(bytes(_CODE_BYTES)).rstrip(b"="))
_CODE_SHAPE = re.compile(r"[A-Za-z0-9_-]+")
# Domain separation: these bytes sign certificates of this app and nothing else.
_SIGNED_PREFIX = b"yongzhiyuan/certificate/v1\n"


# --- the signed content and the code ----------------------------------------------------------------------------


def signed_content(certificate: Certificate) -> bytes:
    """The canonical bytes a certificate's signature covers: everything the
    certificate states (not its status, which voiding changes)."""
    content = {
        "id": certificate.id,
        "number": certificate.number,
        "volunteer": {
            "volunteer_no": certificate.volunteer_no,
            "real_name": certificate.real_name,
            "id_number_masked": certificate.id_masked,
        },
        "org": {"id": certificate.org_id, "name": certificate.org_name},
        "from": certificate.period_from.isoformat(),
        "to": certificate.period_to.isoformat(),
        "credit_minutes": certificate.credit_minutes,
        "honor_minutes": certificate.honor_minutes,
        "records_count": certificate.records_count,
        "records": certificate.records,
        "issued_at": isoformat(certificate.issued_at),
    }
    return _SIGNED_PREFIX + json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _encode_code(key: bytes, certificate_id: int, signature: bytes) -> str:
    raw = bytes([CODE_VERSION]) + key + certificate_id.to_bytes(_ID_BYTES, "big") + signature
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_code(code: str) -> tuple[bytes, int, bytes] | None:
    """(key id, certificate id, signature), or None for anything not a well-formed code."""
    if len(code) != CODE_LENGTH or not _CODE_SHAPE.fullmatch(code):
        return None
    raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    # The last character carries spare bits: only the one canonical spelling is the code.
    if len(raw) != _CODE_BYTES or raw[0] != CODE_VERSION or base64.urlsafe_b64encode(raw).rstrip(b"=") != code.encode():
        return None
    key = raw[1 : 1 + KEY_ID_BYTES]
    certificate_id = int.from_bytes(raw[1 + KEY_ID_BYTES : 1 + KEY_ID_BYTES + _ID_BYTES], "big")
    return key, certificate_id, raw[1 + KEY_ID_BYTES + _ID_BYTES :]


def sign(certificate: Certificate, keys: CertificateKeys) -> None:
    """Set the certificate's code (its id and number must be set)."""
    signature = keys.signing.sign(signed_content(certificate))
    certificate.code = _encode_code(keys.signing_id, certificate.id, signature)
    certificate.key_id = keys.signing_id.hex()


def verify_code(code: str) -> Certificate:
    """The certificate a public code stands for, or 404 when the code is unknown,
    malformed or altered, or the certificate's row no longer matches its signature."""
    decoded = _decode_code(code)
    if decoded is None:
        raise NotFound()
    key, certificate_id, signature = decoded
    public_key = certificate_key(current_app).verifying.get(key)
    if public_key is None or not 0 < certificate_id <= MAX_ID:
        raise NotFound()
    certificate = db.session.get(Certificate, certificate_id)
    if certificate is None:
        raise NotFound()
    try:
        public_key.verify(signature, signed_content(certificate))
    except InvalidSignature:
        if _superseded(certificate, code):
            return certificate
        if code == certificate.code:
            # Our own code no longer matches its row: the row was changed behind our back.
            log.error("certificate %s no longer matches its signature", certificate.id)
        raise NotFound() from None
    return certificate


def _code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _superseded(certificate: Certificate, code: str) -> bool:
    """``code`` is the one printed before the volunteer's names were erased, and the
    row as it is now still carries a valid signature of its own."""
    if not certificate.superseded_code_hash or not hmac.compare_digest(
        certificate.superseded_code_hash, _code_digest(code)
    ):
        return False
    current = _decode_code(certificate.code or "")
    public_key = certificate_key(current_app).verifying.get(current[0]) if current else None
    if public_key is None:
        return False
    try:
        public_key.verify(current[2], signed_content(certificate))
    except InvalidSignature:
        return False
    return True


def erase_names(volunteer_id: int, erased_name: str) -> int:
    """The names on a volunteer's certificates give way to ``erased_name`` (the erase
    of an account): each row is signed again over what it now says, and the code
    printed before keeps verifying (its digest is kept). The figures, the org and
    the volunteer number stay: the certificate remains the org's word. Runs in the
    caller's transaction; returns how many certificates changed."""
    keys = certificate_key(current_app)
    certificates = db.session.scalars(
        sa.select(Certificate).where(Certificate.volunteer_id == volunteer_id, Certificate.real_name != erased_name)
    ).all()
    for certificate in certificates:
        printed = certificate.superseded_code_hash or _code_digest(certificate.code or "")
        certificate.real_name, certificate.id_masked = erased_name, ""
        certificate.superseded_code_hash = printed
        sign(certificate, keys)
    return len(certificates)


# --- issuing ----------------------------------------------------------------------------------------------------


def issue_certificate(actor: Actor, org_id: int, first: date | None, last: date | None) -> Certificate:
    """Certify the caller's ``recorded`` records with ``org_id`` from ``first`` to
    ``last`` (dates in Asia/Shanghai, inclusive; no ``first``: since the first
    record, no ``last``: today), and tell them (``certificate_issued``). Pending
    and rejected records are not the org's record: they are left out.

    The org must be approved (409 ``org_not_approved``): a pending or rejected
    org has recorded nothing and vouches for nothing. 422 ``no_records`` when
    nothing falls in the period, or what does adds up to 0 minutes.
    """
    keys = certificate_key(current_app)  # a missing key fails here, before anything is written
    volunteer = actor.user.volunteer
    if volunteer is None:
        raise Forbidden("volunteer_required")
    org = require_approved(get_org(org_id))
    now = utcnow()
    today = local_date(now)
    last = last or today
    if last > today:
        raise Invalid("to", gettext("Must not be after today."))
    try:
        check_period(first, last)
    except ValueError as exc:
        raise Invalid("from", str(exc)) from exc

    when = served_at()
    stmt = (
        sa.select(ServiceRecord, when)
        .where(
            ServiceRecord.volunteer_id == actor.id,
            ServiceRecord.org_id == org.id,
            counted(),
            when < day_start(last + timedelta(days=1)),
        )
        .order_by(when, ServiceRecord.id)
    )
    if first is not None:
        stmt = stmt.where(when >= day_start(first))
    rows = db.session.execute(stmt).all()
    if not sum(record.minutes for record, _ in rows):
        raise Invalid(
            "org_id",
            gettext("You have no recorded service hours with this organisation in the period."),
            "no_records",
        )

    records = [
        {
            "id": record.id,
            "date": local_date(served).isoformat(),
            "activity": record.activity,
            "place": record.place,
            "minutes": record.minutes,
            "kind": record.kind,
        }
        for record, served in rows
    ]
    certificate = Certificate(
        volunteer_id=actor.id,
        org_id=org.id,
        volunteer_no=volunteer.volunteer_no,
        real_name=volunteer.real_name,
        id_masked=volunteer.id_masked,
        org_name=org.name,
        period_from=first or date.fromisoformat(records[0]["date"]),
        period_to=last,
        credit_minutes=sum(r["minutes"] for r in records if r["kind"] == "credit"),
        honor_minutes=sum(r["minutes"] for r in records if r["kind"] == "honor"),
        records_count=len(records),
        records=records,
        # Whole seconds: the signed text of the time must survive the database's round trip.
        issued_at=now.replace(microsecond=0),
        status="valid",
    )
    db.session.add(certificate)
    db.session.flush()
    certificate.number = f"{NUMBER_PREFIX}-{local_date(certificate.issued_at).year}-{certificate.id:06d}"
    sign(certificate, keys)
    audit(
        actor.id,
        "certificate.issue",
        "certificate",
        certificate.id,
        number=certificate.number,
        org_id=org.id,
        period_from=certificate.period_from.isoformat(),
        period_to=certificate.period_to.isoformat(),
        credit_minutes=certificate.credit_minutes,
        honor_minutes=certificate.honor_minutes,
        records_count=certificate.records_count,
    )
    notify(
        [actor.id],
        "certificate_issued",
        dedupe=f"certificate:{certificate.id}",
        certificate_id=certificate.id,
        org_id=org.id,
        org=org.name,
        number=certificate.number,
    )
    db.session.commit()
    return certificate


# --- reading and voiding ----------------------------------------------------------------------------------------


def get_certificate(actor: Actor, certificate_id: int) -> Certificate:
    """One certificate, for its volunteer, the org's coordinators and admins (404 for others)."""
    certificate = db.session.get(Certificate, certificate_id) if 0 < certificate_id <= MAX_ID else None
    if certificate is None or not actor.may_see_certificate(certificate):
        raise NotFound()
    return certificate


def certificate_pdf(
    actor: Actor, certificate_id: int, verify_url: Callable[[Certificate], str]
) -> tuple[Certificate, bytes]:
    """The certificate and its PDF (for those who may see it); ``verify_url(certificate)``
    is the public check's address, printed and drawn as a QR code."""
    certificate = get_certificate(actor, certificate_id)
    return certificate, render_certificate_pdf(certificate, verify_url(certificate))


def list_my_certificates(actor: Actor, *, cursor: str | None, limit: int) -> tuple[list[Certificate], str | None]:
    """The caller's certificates, newest first."""
    stmt = sa.select(Certificate).where(Certificate.volunteer_id == actor.id)
    return paginate(db.session, stmt, [(Certificate.id, True)], cursor, limit, lambda c: [c.id])


def void_certificate(actor: Actor, certificate_id: int, reason: str) -> Certificate:
    """Void a certificate (the org's coordinators, admins; never one's own); the
    public check then says ``void``. 409 ``certificate_void`` if it already is."""
    certificate = get_certificate(actor, certificate_id)
    actor.require_may_void(certificate)
    now = utcnow()
    done = db.session.execute(
        sa.update(Certificate)
        .where(Certificate.id == certificate.id, Certificate.status == "valid")
        .values(status="void", voided_at=now, voided_by=actor.id, void_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        db.session.rollback()
        raise Conflict("certificate_void")
    audit(actor.id, "certificate.void", "certificate", certificate.id, number=certificate.number, reason=reason)
    db.session.commit()
    return db.session.get(Certificate, certificate.id, populate_existing=True)
