"""Energy (微能量): redemption debits at claim, refunds, the append-only ledger."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Claim, EnergyEntry, Posting, Volunteer
from app.services import energy
from tests.factories import make_org, make_posting, make_volunteer


def claim(client, account, posting_id, **body):
    return client.post(f"/api/v1/postings/{posting_id}/claims", json=body, headers=account.headers)


def act(client, account, claim_id, action, **body):
    return client.post(f"/api/v1/claims/{claim_id}/{action}", json=body, headers=account.headers)


def set_energy(app, user_id, balance) -> None:
    with app.app_context():
        db.session.execute(sa.update(Volunteer).where(Volunteer.user_id == user_id).values(energy_balance=balance))
        db.session.commit()


def balance(app, user_id) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Volunteer.energy_balance).where(Volunteer.user_id == user_id))


def ledger(app, user_id) -> list[tuple[str, int, int]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(EnergyEntry.reason, EnergyEntry.delta, EnergyEntry.balance_after)
            .where(EnergyEntry.user_id == user_id)
            .order_by(EnergyEntry.id)
        )
        return [tuple(r) for r in rows]


@pytest.fixture
def shop(app):
    """爱心超市: a coordinator's reward of 50 points, 2 in stock, and a volunteer with 120 points."""
    org_id, coordinator = make_org(app)
    reward = make_posting(
        app, coordinator, kind="energy", org_id=org_id, capacity=2, energy_cost=50, title="大米一袋", lat=None, lng=None
    )
    volunteer = make_volunteer(app)
    set_energy(app, volunteer.id, 120)
    return {"org_id": org_id, "coordinator": coordinator, "reward": reward, "volunteer": volunteer}


def test_redeeming_debits_at_claim_time(app, client, shop):
    resp = claim(client, shop["volunteer"], shop["reward"])
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["energy_debited"] == 50
    assert balance(app, shop["volunteer"].id) == 70
    assert ledger(app, shop["volunteer"].id) == [("redeem", -50, 70)]

    energy_view = client.get("/api/v1/me/energy", headers=shop["volunteer"].headers)
    assert energy_view.status_code == 200
    body = energy_view.get_json()
    assert body["balance"] == 70
    assert [(e["reason"], e["delta"], e["balance_after"]) for e in body["items"]] == [("redeem", -50, 70)]
    assert body["items"][0]["claim_id"] == resp.get_json()["id"]
    assert body["items"][0]["posting_id"] == shop["reward"]
    assert body["next_cursor"] is None


def test_insufficient_energy(app, client, shop):
    set_energy(app, shop["volunteer"].id, 49)
    resp = claim(client, shop["volunteer"], shop["reward"])
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "insufficient_energy"
    assert balance(app, shop["volunteer"].id) == 49
    assert ledger(app, shop["volunteer"].id) == []
    with app.app_context():
        posting = db.session.get(Posting, shop["reward"])
        assert (posting.claimed_count, posting.status) == (0, "open")
        assert db.session.scalar(sa.select(sa.func.count(Claim.id))) == 0


def test_exact_balance_is_enough(app, client, shop):
    set_energy(app, shop["volunteer"].id, 50)
    assert claim(client, shop["volunteer"], shop["reward"]).status_code == 201
    assert balance(app, shop["volunteer"].id) == 0


def test_out_of_stock(app, client, shop):
    others = [make_volunteer(app) for _ in range(3)]
    for other in others:
        set_energy(app, other.id, 100)
    assert claim(client, others[0], shop["reward"]).status_code == 201
    assert claim(client, others[1], shop["reward"]).status_code == 201
    resp = claim(client, others[2], shop["reward"])
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_full"
    assert balance(app, others[2].id) == 100


def test_withdrawing_refunds(app, client, shop):
    claim_id = claim(client, shop["volunteer"], shop["reward"]).get_json()["id"]
    resp = act(client, shop["volunteer"], claim_id, "withdraw")
    assert resp.status_code == 200
    assert balance(app, shop["volunteer"].id) == 120
    assert ledger(app, shop["volunteer"].id) == [("redeem", -50, 70), ("refund_withdrawn", 50, 120)]
    # the stock is back
    with app.app_context():
        assert db.session.get(Posting, shop["reward"]).claimed_count == 0
    # a second withdrawal refunds nothing more
    assert act(client, shop["volunteer"], claim_id, "withdraw").status_code == 409
    assert balance(app, shop["volunteer"].id) == 120


def test_cancelling_the_reward_refunds(app, client, shop):
    from app.services.claims import cancel_claims_for_posting

    claim(client, shop["volunteer"], shop["reward"])
    with app.app_context():
        posting = db.session.get(Posting, shop["reward"])
        posting.status = "cancelled"
        cancel_claims_for_posting(posting)
        db.session.commit()
    assert balance(app, shop["volunteer"].id) == 120
    assert ledger(app, shop["volunteer"].id)[-1] == ("refund_cancelled", 50, 120)


def test_hand_over_keeps_the_points_spent(app, client, shop):
    claim_id = claim(client, shop["volunteer"], shop["reward"]).get_json()["id"]
    resp = act(client, shop["coordinator"], claim_id, "confirm")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "confirmed"
    assert act(client, shop["volunteer"], claim_id, "withdraw").get_json()["error"] == "claim_not_active"
    assert balance(app, shop["volunteer"].id) == 70


def test_redeeming_twice_is_a_duplicate(app, client, shop):
    assert claim(client, shop["volunteer"], shop["reward"]).status_code == 201
    resp = claim(client, shop["volunteer"], shop["reward"])
    assert resp.get_json()["error"] == "duplicate_claim"
    assert balance(app, shop["volunteer"].id) == 70


def test_ledger_paging(app, client, shop):
    volunteer = shop["volunteer"]
    with app.app_context():
        for points in (1, 2, 3):
            energy.credit(volunteer.id, points, reason="service_hours")
        db.session.commit()
    page = client.get("/api/v1/me/energy?limit=2", headers=volunteer.headers).get_json()
    assert page["balance"] == 126
    assert [e["delta"] for e in page["items"]] == [3, 2]
    rest = client.get(f"/api/v1/me/energy?limit=2&cursor={page['next_cursor']}", headers=volunteer.headers).get_json()
    assert [e["delta"] for e in rest["items"]] == [1]


def test_energy_of_a_user_without_a_volunteer_profile(app, client):
    from tests.factories import make_user

    user = make_user(app)
    body = client.get("/api/v1/me/energy", headers=user.headers).get_json()
    assert body == {"balance": 0, "items": [], "next_cursor": None}


def test_debit_never_overdraws_and_the_balance_cannot_go_negative(app, shop):
    volunteer = shop["volunteer"]
    with app.app_context():
        assert energy.debit(volunteer.id, 121, reason="redeem") is None
        assert energy.debit(volunteer.id, 120, reason="redeem") == 0
        db.session.commit()
        # the database refuses a negative balance whatever the code does
        with pytest.raises(IntegrityError):
            db.session.execute(sa.update(Volunteer).where(Volunteer.user_id == volunteer.id).values(energy_balance=-1))
        db.session.rollback()
    assert balance(app, volunteer.id) == 0
