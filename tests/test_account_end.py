"""The copy of one's data, deleting the account, and the erase: what goes, what stays."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import (
    AuditEntry,
    CalendarFeed,
    Certificate,
    Claim,
    Consent,
    Device,
    IdempotencyKey,
    Notification,
    Org,
    OrgMember,
    Photo,
    Posting,
    RefreshToken,
    ServiceRecord,
    User,
    Volunteer,
    VolunteerSkill,
)
from app.scheduler import job_spec, run_job
from tests.factories import (
    PASSWORD,
    add_member,
    make_claim,
    make_org,
    make_posting,
    make_record,
    make_user,
    make_volunteer,
    upload_photo,
)
from tests.helpers import assert_error, register, sms_code

ME = "/api/v1/me"
LOGIN = "/api/v1/auth/login"


def erase(app) -> dict:
    with app.app_context():
        return run_job(job_spec("erase_accounts").ref)


def delete_me(client, account, **body):
    return client.delete(ME, headers=account.headers, json=body or {"password": PASSWORD})


# --- the copy ---------------------------------------------------------------------------------------------------------


def test_the_export_holds_everything_and_no_secret(app, client):
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app, skills=["elderly"])
    add_member(app, org_id, volunteer)
    make_record(app, volunteer, org_id)
    wish = make_posting(app, volunteer, beneficiary_name="张阿婆", beneficiary_phone="+8613812340001")
    make_claim(app, make_posting(app, coordinator, kind="project", org_id=org_id), volunteer)
    client.post(
        f"{ME}/devices", headers=volunteer.headers, json={"token": "device-token-secret", "platform": "android"}
    )
    client.post(f"{ME}/calendar", headers=volunteer.headers)
    assert client.post(f"{ME}/certificates", headers=volunteer.headers, json={"org_id": org_id}).status_code == 201
    avatar = upload_photo(client, volunteer, "avatar")
    assert client.patch(ME, json={"avatar_photo_id": avatar}, headers=volunteer.headers).status_code == 200
    unused = upload_photo(client, volunteer, "posting")

    resp = client.get(f"{ME}/export", headers=volunteer.headers)
    assert resp.status_code == 200, resp.get_json()
    copy = resp.get_json()
    assert set(copy) == {
        "generated_at",
        "profile",
        "consents",
        "volunteer",
        "org_memberships",
        "join_requests",
        "postings",
        "claims",
        "service_records",
        "energy_ledger",
        "certificates",
        "notifications",
        "photos",
        "devices",
        "sessions",
        "calendar_feed",
    }
    assert copy["profile"]["id"] == volunteer.id and copy["profile"]["phone_masked"].count("*") == 4
    assert copy["volunteer"]["id_number_masked"].count("*") == 10 and copy["volunteer"]["skills"] == ["elderly"]
    assert [c["version"] for c in copy["consents"]] == [app.config["PRIVACY_VERSION"]]
    assert copy["org_memberships"][0]["org"]["id"] == org_id
    assert [p["id"] for p in copy["postings"]] == [wish]
    assert copy["postings"][0]["beneficiary"]["name_masked"] == "张**"
    assert len(copy["claims"]) == 1 and len(copy["service_records"]) == 1 and len(copy["certificates"]) == 1
    assert copy["notifications"] and copy["devices"][0]["platform"] == "android" and copy["calendar_feed"]
    assert copy["sessions"]
    assert copy["profile"]["avatar"]["id"] == avatar
    photos = {p["id"]: p for p in copy["photos"]}
    assert photos[avatar]["avatar"] is True and photos[avatar]["file"]["thumb_url"]
    assert photos[unused]["purpose"] == "posting" and photos[unused]["file"] is None  # never checked: no files
    text = json.dumps(copy, ensure_ascii=False)
    with app.app_context():
        user = db.session.get(User, volunteer.id)
        secrets = [user.password_hash, user.volunteer.id_hash, "device-token-secret", volunteer.refresh_token]
        secrets += [
            db.session.scalar(sa.select(CalendarFeed.token_hash)),
            db.session.scalar(sa.select(Certificate.code)),
        ]
        secrets += list(db.session.scalars(sa.select(RefreshToken.jti)))
    for secret in secrets:
        assert secret not in text
    assert volunteer.phone[3:] not in text and "password" not in text


# --- deleting -----------------------------------------------------------------------------------------------------


def test_deleting_schedules_the_erase_and_ends_every_session(app, client):
    account = make_user(app)
    now = clock.utcnow()
    resp = delete_me(client, account)
    assert resp.status_code == 202, resp.get_json()
    scheduled = datetime.fromisoformat(resp.get_json()["deletion_scheduled_at"].replace("Z", "+00:00"))
    assert abs((scheduled - (now + timedelta(days=15))).total_seconds()) < 5
    assert_error(client.get(ME, headers=account.headers), 401, "token_revoked")
    assert client.post("/api/v1/auth/refresh", headers=account.refresh_headers).status_code == 401
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.target_id == account.id)) == (
            "account.deletion_requested"
        )


def test_signing_in_again_keeps_the_account(app, client):
    account = make_user(app)
    assert delete_me(client, account).status_code == 202
    clock.advance(timedelta(days=14))
    resp = client.post(LOGIN, json={"phone": account.phone, "password": PASSWORD})
    assert resp.status_code == 200 and resp.get_json()["user"]["deletion_scheduled_at"] is None
    clock.advance(timedelta(days=2))
    assert erase(app)["erased"] == 0
    headers = {"Authorization": f"Bearer {resp.get_json()['access_token']}"}
    assert client.get(ME, headers=headers).get_json()["deletion_scheduled_at"] is None


def test_cancelling_keeps_the_account(app, client):
    account = make_user(app)
    assert delete_me(client, account).status_code == 202
    code = sms_code(app, client, account.phone, "login")
    signed_in = client.post(LOGIN, json={"phone": account.phone, "sms_code": code}).get_json()
    headers = {"Authorization": f"Bearer {signed_in['access_token']}"}
    resp = client.post(f"{ME}/deletion/cancel", headers=headers)
    assert resp.status_code == 200 and resp.get_json()["deletion_scheduled_at"] is None


def test_deleting_with_a_code(app, client):
    account = make_user(app)
    assert_error(delete_me(client, account, sms_code="000000"), 422, "invalid_sms_code")
    code = sms_code(app, client, account.phone, "delete_account")
    assert delete_me(client, account, sms_code=code).status_code == 202


def test_deleting_needs_one_right_proof(app, client):
    account = make_user(app)
    assert_error(delete_me(client, account, password="wrong-password"), 422, "wrong_password")
    assert_error(client.delete(ME, headers=account.headers, json={}), 422, "validation_error")
    both = {"password": PASSWORD, "sms_code": "123456"}
    assert_error(client.delete(ME, headers=account.headers, json=both), 422, "validation_error")
    assert client.get(ME, headers=account.headers).get_json()["deletion_scheduled_at"] is None


def test_the_last_coordinator_cannot_leave_an_org_orphaned(app, client):
    org_id, coordinator = make_org(app)
    assert_error(delete_me(client, coordinator), 409, "last_coordinator")
    second = make_user(app)
    add_member(app, org_id, second, role="coordinator")
    assert delete_me(client, coordinator).status_code == 202


def test_an_erase_that_would_orphan_an_org_waits(app, client):
    org_id, coordinator = make_org(app)
    second = make_user(app)
    add_member(app, org_id, second, role="coordinator")
    assert delete_me(client, coordinator).status_code == 202
    with app.app_context():
        db.session.execute(sa.delete(OrgMember).where(OrgMember.user_id == second.id))
        db.session.commit()
    clock.advance(timedelta(days=16))
    assert erase(app)["postponed"] == 1
    with app.app_context():
        assert db.session.get(User, coordinator.id).erased_at is None


# --- the erase ----------------------------------------------------------------------------------------------------


def test_the_erase_removes_the_person_and_keeps_the_orgs_records(app, client):
    org_id, coordinator = make_org(app)
    resident = make_user(app)
    volunteer = make_volunteer(app, skills=["elderly"])
    other = make_volunteer(app)
    add_member(app, org_id, volunteer)
    make_record(app, volunteer, org_id, minutes=90)
    certificate = client.post(f"{ME}/certificates", headers=volunteer.headers, json={"org_id": org_id}).get_json()
    printed_code = certificate["code"] if "code" in certificate else certificate["verify_url"].rsplit("/", 1)[1]
    # A wish the volunteer holds, an event where someone waits behind them, their own open wish.
    wish = make_posting(app, resident)
    held = make_claim(app, wish, volunteer)
    later = clock.utcnow() + timedelta(days=30)  # still ahead when the erase comes
    event = make_posting(
        app, coordinator, kind="project", org_id=org_id, capacity=1, starts_at=later, ends_at=later + timedelta(hours=2)
    )
    make_claim(app, event, volunteer)
    waiting = make_claim(app, event, other, status="waitlisted")
    own = make_posting(app, volunteer, beneficiary_name="李大爷", beneficiary_phone="+8613812340002")
    booked = make_claim(app, own, other)
    client.post(f"{ME}/devices", headers=volunteer.headers, json={"token": "tok-1", "platform": "ios"})
    client.post(f"{ME}/calendar", headers=volunteer.headers)
    avatar = upload_photo(client, volunteer, "avatar")
    assert client.patch(ME, json={"avatar_photo_id": avatar}, headers=volunteer.headers).status_code == 200
    keyed = {**volunteer.headers, "Idempotency-Key": "k-erase"}
    client.post("/api/v1/orgs", headers=keyed, json={"name": "某组织", "kind": "ngo", "district": "haishu"})

    with app.app_context():
        members_before = db.session.get(Org, org_id).member_count
    assert delete_me(client, volunteer).status_code == 202
    clock.advance(timedelta(days=14))
    assert erase(app)["erased"] == 0  # not yet
    clock.advance(timedelta(days=1, minutes=1))
    result = erase(app)
    assert result["erased"] == 1 and result["postponed"] == 0

    with app.app_context():
        user = db.session.get(User, volunteer.id)
        assert user.erased_at is not None and user.display_name == "已注销"
        assert user.phone == f"erased:{volunteer.id}" and user.email is None and user.password_hash == "!"
        record = db.session.scalars(sa.select(Volunteer).where(Volunteer.user_id == volunteer.id)).one()
        assert record.real_name == "已注销" and record.volunteer_no and record.id_masked == ""
        assert record.birth_date is None and record.home_lat is None and record.skills == []
        for model, column in (
            (Device, Device.user_id),
            (RefreshToken, RefreshToken.user_id),
            (Notification, Notification.user_id),
            (CalendarFeed, CalendarFeed.user_id),
            (IdempotencyKey, IdempotencyKey.user_id),
            (Consent, Consent.user_id),
            (VolunteerSkill, VolunteerSkill.user_id),
            (OrgMember, OrgMember.user_id),
        ):
            assert db.session.scalar(sa.select(sa.func.count()).select_from(model).where(column == volunteer.id)) == 0
        assert db.session.get(Org, org_id).member_count == members_before - 1
        # The org's records stay, under the volunteer number.
        assert db.session.scalar(sa.select(ServiceRecord.volunteer_id)) == volunteer.id
        kept = db.session.scalars(sa.select(Certificate)).one()
        assert kept.real_name == "已注销" and kept.volunteer_no == record.volunteer_no and kept.id_masked == ""
        # Live claims were withdrawn through the volunteer's own service: the wish reopened,
        # the one waiting took the place, and the posters were told — with no name.
        assert db.session.get(Claim, held).status == "withdrawn"
        assert db.session.get(Posting, wish).status == "open"
        assert db.session.get(Claim, waiting).status == "active"
        told = db.session.scalars(
            sa.select(Notification).where(Notification.user_id == resident.id, Notification.kind == "claim_withdrawn")
        ).one()
        assert "已注销" in told.body
        # Their own wish was cancelled (its booking too) and keeps no beneficiary contact.
        own_row = db.session.get(Posting, own)
        assert own_row.status == "cancelled" and own_row.beneficiary_phone is None
        assert db.session.get(Claim, booked).status == "cancelled"
        entry = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "account.erase")).one()
        assert entry.target_id == volunteer.id and entry.data["claims_withdrawn"] == 2
        # Their photos belong to nothing any more (purge_photos deletes the files).
        photo = db.session.get(Photo, avatar)
        assert photo.status == "discarded" and photo.avatar_user_id is None and entry.data["photos"] == 1

    # The certificate printed before still verifies; the name reads 已注销.
    check = client.get(f"/api/v1/certificates/verify/{printed_code}")
    assert check.status_code == 200, check.get_json()
    assert check.get_json()["volunteer"]["real_name_masked"] == "已注销"
    assert check.get_json()["valid"] is True
    # Nothing signs in, and the number may register again.
    assert_error(client.post(LOGIN, json={"phone": volunteer.phone, "password": PASSWORD}), 401, "invalid_credentials")
    assert_error(client.get(ME, headers=volunteer.headers), 401, "token_revoked")
    again = register(app, client, phone=volunteer.phone)
    assert again.status_code == 201 and again.get_json()["user"]["id"] != volunteer.id


def test_the_erase_is_idempotent_and_bounded(app, client):
    accounts = [make_user(app) for _ in range(3)]
    for account in accounts:
        assert delete_me(client, account).status_code == 202
    clock.advance(timedelta(days=16))
    with app.app_context():
        first = run_job(job_spec("erase_accounts").ref, batch_size=2)
    assert first["erased"] == 3 and first["batches"] == 2
    assert erase(app)["erased"] == 0
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User).where(User.erased_at.is_not(None))) == 3
