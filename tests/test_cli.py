"""``flask users create-admin`` and ``flask seed``, through ``runner.invoke``."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Claim, Notification, Org, OrgMember, RefreshToken, ServiceRecord, User, Volunteer
from app.seed import ADMIN, APPLICATION, DEMO_PASSWORD, ORGS, VOLUNTEERS
from tests.factories import make_user

CREATE_ADMIN = ["users", "create-admin", "--phone", "13800000009", "--password", "admin-pass-1", "--name", "管理员"]


def counts(app) -> dict[str, int]:
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (User, Org, OrgMember, Volunteer, RefreshToken)
        }


def login(client, phone: str, password: str):
    return client.post("/api/v1/auth/login", json={"phone": phone, "password": password})


# --- users create-admin ------------------------------------------------------


def test_create_admin(app, runner, client):
    result = runner.invoke(args=CREATE_ADMIN)
    assert result.exit_code == 0, result.output
    with app.app_context():
        admin = db.session.scalars(sa.select(User)).one()
        assert (admin.phone, admin.display_name, admin.is_admin) == ("+8613800000009", "管理员", True)
        assert admin.password_hash.startswith("$argon2id$")
        assert result.output.strip() == f"admin {admin.id} 138****0009"
    resp = login(client, "13800000009", "admin-pass-1")
    assert resp.status_code == 200
    assert "admin" in resp.get_json()["user"]["roles"]


def test_created_admin_can_approve_orgs(app, runner, client):
    runner.invoke(args=CREATE_ADMIN)
    token = login(client, "13800000009", "admin-pass-1").get_json()["access_token"]
    applicant = make_user(app)
    org = client.post(
        "/api/v1/orgs", headers=applicant.headers, json={"name": "新社区", "kind": "community", "district": "beilun"}
    ).get_json()
    admin = {"Authorization": f"Bearer {token}"}
    # The new admin has not accepted the privacy policy yet: that comes first.
    resp = client.post(f"/api/v1/orgs/{org['id']}/approve", headers=admin)
    assert resp.status_code == 428 and resp.get_json()["error"] == "consent_required"
    version = client.get("/api/v1/legal").get_json()["privacy_version"]
    assert client.post("/api/v1/me/consents", headers=admin, json={"privacy_version": version}).status_code == 200
    resp = client.post(f"/api/v1/orgs/{org['id']}/approve", headers=admin)
    assert resp.status_code == 200 and resp.get_json()["status"] == "approved"


def test_create_admin_twice_promotes_and_resets_password(app, runner, client):
    existing = make_user(app, phone="+8613800000009", name="老用户")
    result = runner.invoke(args=CREATE_ADMIN)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"admin {existing.id} 138****0009"
    assert counts(app)["users"] == 1
    with app.app_context():
        user = db.session.get(User, existing.id)
        assert user.is_admin and user.display_name == "老用户"
    assert login(client, existing.phone, "admin-pass-1").status_code == 200
    assert login(client, existing.phone, existing.password).status_code == 401
    again = runner.invoke(args=CREATE_ADMIN)
    assert again.exit_code == 0 and counts(app)["users"] == 1


def test_create_admin_rejects_a_bad_phone(app, runner):
    result = runner.invoke(
        args=["users", "create-admin", "--phone", "12345", "--password", "admin-pass-1", "--name", "x"]
    )
    assert result.exit_code == 2
    assert "not a mainland mobile number" in result.output
    assert counts(app)["users"] == 0


def test_create_admin_rejects_a_short_password(app, runner):
    result = runner.invoke(
        args=["users", "create-admin", "--phone", "13800000009", "--password", "short", "--name", "x"]
    )
    assert result.exit_code == 2
    assert "at least 8 characters" in result.output
    assert counts(app)["users"] == 0


def test_create_admin_needs_every_option(app, runner):
    result = runner.invoke(args=["users", "create-admin", "--phone", "13800000009"])
    assert result.exit_code == 2
    assert "Missing option" in result.output
    assert counts(app)["users"] == 0


def test_create_admin_normalises_the_phone(app, runner):
    """Any spelling of an existing number finds that account."""
    make_user(app, phone="+8613800000010")
    result = runner.invoke(
        args=["users", "create-admin", "--phone", "+86 138 0000 0010", "--password", "admin-pass-1", "--name", "x"]
    )
    assert result.exit_code == 0, result.output
    assert counts(app)["users"] == 1


# --- seed ------------------------------------------------------------------------------


def test_seed_creates_demo_data(app, runner, client):
    result = runner.invoke(args=["seed"])
    assert result.exit_code == 0, result.output
    assert counts(app) == {
        # and the applicant of a pending org, and 鼓楼's second coordinator
        "users": 1 + len(ORGS) + len(VOLUNTEERS) + 1 + 1,
        "orgs": len(ORGS) + 1,
        # and the party branch's member (小陈, reporting to 鼓楼)
        "org_members": len(ORGS) + 1 + 1 + 1,
        "volunteers": len(VOLUNTEERS),
        "refresh_tokens": 0,
    }
    assert "created admin" in result.output
    with app.app_context():
        assert db.session.scalars(sa.select(User.phone).where(User.is_admin)).all() == [ADMIN[0]]
        statuses = dict(db.session.execute(sa.select(Org.name, Org.status)).tuples().all())
        assert statuses == {**{org[0]: "approved" for org in ORGS}, APPLICATION[2]: "pending"}
        # the coordinators' side has something to show: records to export, a withdrawal
        first_org = db.session.scalar(sa.select(Org.id).where(Org.name == ORGS[0][0]))
        kinds = db.session.execute(
            sa.select(ServiceRecord.kind, ServiceRecord.status).where(ServiceRecord.org_id == first_org)
        ).all()
        # the coordinator's confirmation is recorded; the honor hours wait for the second coordinator
        assert sorted(kinds) == [("credit", "recorded"), ("honor", "pending")]
        assert db.session.scalar(sa.select(sa.func.count()).where(Claim.status == "withdrawn")) == 1
        told = set(db.session.scalars(sa.select(Notification.kind)))
        assert {"org_submitted", "posting_submitted", "claim_withdrawn", "record_pending"} <= told
        numbers = db.session.scalars(sa.select(Volunteer.volunteer_no)).all()
        assert len(set(numbers)) == len(VOLUNTEERS) and all(numbers)
    # The demo accounts can sign in and see what the seed made.
    admin = login(client, ADMIN[0], DEMO_PASSWORD)
    assert admin.status_code == 200 and "admin" in admin.get_json()["user"]["roles"]
    coordinator = login(client, ORGS[0][3], DEMO_PASSWORD).get_json()["user"]
    assert "coordinator" in coordinator["roles"]
    assert coordinator["orgs"][0]["name"] == ORGS[0][0]
    volunteer = login(client, VOLUNTEERS[0][0], DEMO_PASSWORD).get_json()["user"]
    assert volunteer["volunteer"]["real_name"] == VOLUNTEERS[0][2]
    assert volunteer["volunteer"]["id_number_masked"] == VOLUNTEERS[0][3][:4] + "*" * 10 + VOLUNTEERS[0][3][-4:]


def test_seed_is_idempotent(app, runner):
    first = runner.invoke(args=["seed"])
    assert first.exit_code == 0, first.output
    after_first = counts(app)
    second = runner.invoke(args=["seed"])
    assert second.exit_code == 0, second.output
    assert counts(app) == after_first
    assert "created" not in second.output
    assert second.output.count("kept") == 1 + len(ORGS) + len(VOLUNTEERS)


def test_seed_fills_in_what_is_missing(app, runner):
    runner.invoke(args=["seed"])
    full = counts(app)
    with app.app_context():
        db.session.execute(sa.delete(Volunteer))
        db.session.execute(sa.delete(Org).where(Org.name == ORGS[1][0]))
        db.session.commit()
    result = runner.invoke(args=["seed"])
    assert result.exit_code == 0, result.output
    assert counts(app) == full
    assert result.output.count("created volunteer") == len(VOLUNTEERS)
    assert "created org" in result.output


def test_every_command_the_readme_names_exists(runner):
    """The README's `flask …` commands are the app's: each answers --help."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"flask(?: --app wsgi)? ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", readme))
    assert ("users", "create-admin") in named
    for group, command in sorted(named):
        args = [group, command] if command and command not in {"run"} else [group]
        result = runner.invoke(args=[*args, "--help"])
        if result.exit_code != 0 and command:  # "flask seed" followed by prose
            result = runner.invoke(args=[group, "--help"])
        assert result.exit_code == 0, (group, command, result.output)
