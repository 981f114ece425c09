"""Volunteer registration (志愿者注册)."""

from __future__ import annotations

import hashlib
import hmac

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext
from sqlalchemy.exc import IntegrityError

from app.clock import local_date, utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import OrgMember, User, Volunteer, VolunteerSkill
from app.policy import GUARDIAN_CONSENT_UNDER_AGE, age_on
from app.services import sms_codes
from app.services.audit import audit
from app.services.permissions import Actor
from app.skills import vocabulary
from app.validators import mask_id_number, validate_id_number

VOLUNTEER_FIELDS = ("real_name", "gender", "skills", "district", "push_radius_km")


def id_number_hash(number: str) -> str:
    """Keyed hash of a normalised ID number: equal numbers match, nothing reverses."""
    key = current_app.config["ID_HASH_KEY"].encode()
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()


def register_volunteer(user: User, data: dict) -> Volunteer:
    """Create or update the caller's volunteer profile (PUT semantics). Someone
    under GUARDIAN_CONSENT_UNDER_AGE needs a guardian's consent (see :func:`_guardian`)."""
    today = local_date(utcnow())
    try:
        number, born = validate_id_number(data["id_number"], today)
    except ValueError as exc:
        raise Invalid("id_number", str(exc.args[0])) from None
    if data.get("birth_date") and data["birth_date"] != born:
        raise Invalid("birth_date", gettext("Does not match the ID number."))
    if data["district"] not in current_app.config["DISTRICTS"]:
        raise Invalid("district", gettext("Unknown district."))
    unknown = vocabulary().unknown(data.get("skills") or [])
    if unknown:
        raise Invalid(
            "skills",
            gettext(
                "Unknown skills: %(skills)s (the codes are listed at GET /api/v1/skills).", skills=", ".join(unknown)
            ),
        )

    guardian = _guardian(user, data.get("guardian"), id_number_hash(number), age_on(born, today))

    # Two first registrations of one account can race (a double tap): the
    # loser's INSERT hits the unique user_id, and it retries as an update of
    # the winner's row. Any other unique violation is the ID number's.
    for attempt in range(2):
        if guardian is not None:
            # In the profile's transaction: a refused save leaves the code unspent.
            sms_codes.require_code(guardian[1], "guardian_consent", guardian[3], field="guardian")
        volunteer = user.volunteer
        if volunteer is None:
            volunteer = Volunteer(user_id=user.id, registered_at=utcnow())
            db.session.add(volunteer)
        else:
            # One save of a profile at a time (a double tap): the second reads what
            # the first wrote, so the row and its skills index never disagree.
            db.session.refresh(volunteer, with_for_update=True)
        _apply(volunteer, data, number, born)
        if guardian is not None:
            volunteer.guardian_name, volunteer.guardian_phone, volunteer.guardian_relation = guardian[:3]
            volunteer.guardian_consented_at = utcnow()
        try:
            db.session.flush()
            if volunteer.volunteer_no is None:
                # Assigned once, from the row id: stable, unique, never reused.
                volunteer.volunteer_no = f"NB{volunteer.id:08d}"
            index_skills(volunteer)
            db.session.commit()
            return volunteer
        except IntegrityError:
            db.session.rollback()
            if attempt or user.volunteer is None:
                break
    raise Conflict("id_number_taken")


def _guardian(user: User, guardian: dict | None, id_hash: str, age: int) -> tuple[str, str, str, str] | None:
    """The guardian's consent to record, if one is needed and given now.

    Under GUARDIAN_CONSENT_UNDER_AGE a consent must be on the record for this ID
    number: one given earlier stands (a later edit of the profile needs no new
    code), a new ID number needs a new one. It is proven by a code sent to the
    guardian's own phone for ``guardian_consent`` — never the account's own
    number, which the minor holds (the caller spends the code). 422
    ``guardian_required`` without it.
    """
    if age >= GUARDIAN_CONSENT_UNDER_AGE:
        return None
    record = user.volunteer
    on_record = record is not None and record.guardian_consented_at is not None and record.id_hash == id_hash
    if guardian is None:
        if on_record:
            return None
        raise Invalid(
            "guardian",
            gettext(
                "Volunteers under %(age)d need a guardian's consent: the guardian's name, phone, relation "
                "and the SMS code sent to that phone.",
                age=GUARDIAN_CONSENT_UNDER_AGE,
            ),
            slug="guardian_required",
        )
    if guardian["phone"] == user.phone:
        raise Invalid("guardian", gettext("The guardian's phone must be the guardian's own, not this account's."))
    return guardian["name"].strip(), guardian["phone"], guardian["relation"].strip(), guardian["sms_code"]


def _apply(volunteer: Volunteer, data: dict, number: str, born) -> None:
    id_hash = id_number_hash(number)
    if volunteer.verified and (id_hash != volunteer.id_hash or data["real_name"] != volunteer.real_name):
        # What a coordinator checked is no longer what the profile says.
        volunteer.verified, volunteer.verified_at, volunteer.verified_by = False, None, None
    if id_hash != volunteer.id_hash:
        # A guardian consented for the holder of the old number, not of this one.
        volunteer.guardian_name = volunteer.guardian_phone = volunteer.guardian_relation = None
        volunteer.guardian_consented_at = None
    volunteer.id_hash = id_hash
    volunteer.id_masked = mask_id_number(number)
    volunteer.birth_date = born
    for field in VOLUNTEER_FIELDS:
        if field in data and data[field] is not None:
            setattr(volunteer, field, data[field])
    if "home" in data:
        home = data["home"]
        volunteer.home_lat, volunteer.home_lng = (home["lat"], home["lng"]) if home else (None, None)


def index_skills(volunteer: Volunteer) -> None:
    """Rebuild the volunteer's rows of the skills index (``volunteer_skills``) from
    the profile: one per skill, with the home and reach they are alerted within.
    The caller holds the volunteer's row (a new one, or locked)."""
    db.session.execute(
        sa.delete(VolunteerSkill)
        .where(VolunteerSkill.user_id == volunteer.user_id)
        .execution_options(synchronize_session=False)
    )
    rows = [
        {
            "user_id": volunteer.user_id,
            "skill": skill,
            "home_lat": volunteer.home_lat,
            "home_lng": volunteer.home_lng,
            "push_radius_km": volunteer.push_radius_km,
        }
        for skill in dict.fromkeys(volunteer.skills or [])
    ]
    if rows:
        db.session.execute(sa.insert(VolunteerSkill), rows)


def verify_volunteer(actor: Actor, org_id: int, user_id: int) -> Volunteer:
    """实名核验: a coordinator of the org (or an admin) has checked a member's ID card
    against their real name in person. Never one's own; audited."""
    if not actor.manages_org(org_id):
        raise Forbidden("coordinator_required")
    if user_id == actor.id:
        raise Forbidden("own_verification")
    member = db.session.scalar(
        sa.select(OrgMember.id).where(OrgMember.org_id == org_id, OrgMember.user_id == user_id).limit(1)
    )
    volunteer = db.session.scalar(sa.select(Volunteer).where(Volunteer.user_id == user_id))
    if member is None or volunteer is None:
        raise NotFound()
    if not volunteer.verified:
        volunteer.verified, volunteer.verified_at, volunteer.verified_by = True, utcnow(), actor.id
        audit(actor.id, "volunteer.verify", "volunteer", volunteer.id, org_id=org_id, user_id=user_id)
        db.session.commit()
    return volunteer
