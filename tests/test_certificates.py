"""Certificates of volunteer service (志愿服务证明): issue, PDF, public check, void.

The issue's "done when": issue → the PDF's text holds the number and the name →
the public check shows the same hours → an altered code is 404 → after a void
the check says void; a certificate's figures do not move when a record is added.
"""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pypdf import PdfReader

from app import clock
from app.certificate_keys import CertificateKeyError, certificate_key, new_signing_key
from app.extensions import db
from app.models import AuditEntry, Certificate, Notification, Volunteer
from tests.factories import add_member, make_org, make_record, make_user, make_volunteer, set_locale
from tests.helpers import fresh_keys
from tests.moments import YEAR

NOW = datetime(YEAR, 11, 30, 4, 0, tzinfo=UTC)  # 12:00 in Ningbo
MINE = "/api/v1/me/certificates"


def issue(client, account, org_id, **period):
    return client.post(MINE, json={"org_id": org_id, **period}, headers=account.headers)


def pdf_pages(data: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def certificate_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Certificate))


def altered(code: str, position: int) -> str:
    replacement = "A" if code[position] != "A" else "B"
    return code[:position] + replacement + code[position + 1 :]


@pytest.fixture
def served(app):
    """A volunteer (欧阳娜娜) with three records at one org and one at another."""
    clock.freeze(NOW)
    org_id, coordinator = make_org(app, name="鼓楼街道志愿服务站")
    other_org, _ = make_org(app, name="江北区青年志愿者协会", district="jiangbei")
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)
    with app.app_context():
        db.session.execute(sa.update(Volunteer).where(Volunteer.user_id == volunteer.id).values(real_name="欧阳娜娜"))
        db.session.commit()
    make_record(app, volunteer, org_id, minutes=180, ended_at=NOW - timedelta(days=20), activity="敬老院陪伴")
    make_record(app, volunteer, org_id, minutes=90, ended_at=NOW - timedelta(days=10), activity="垃圾分类宣传")
    make_record(app, volunteer, org_id, minutes=60, kind="honor", ended_at=NOW - timedelta(days=5), activity="抗疫表彰")
    make_record(app, volunteer, other_org, minutes=600, ended_at=NOW - timedelta(days=3))
    return {"org_id": org_id, "coordinator": coordinator, "volunteer": volunteer, "other_org": other_org}


# --- the whole flow ---------------------------------------------------------------------------------------------


def test_issue_pdf_verify_alter_void(app, client, served):
    volunteer, coordinator = served["volunteer"], served["coordinator"]
    resp = issue(client, volunteer, served["org_id"])
    assert resp.status_code == 201, resp.get_json()
    cert = resp.get_json()
    assert re.fullmatch(rf"NB-{YEAR}-\d{{6}}", cert["number"])
    assert cert["volunteer"]["real_name"] == "欧阳娜娜"
    assert re.fullmatch(r"3302\*{10}\w{4}", cert["volunteer"]["id_number_masked"])
    assert cert["org"] == {"id": served["org_id"], "name": "鼓楼街道志愿服务站"}
    assert (cert["credit_hours"], cert["honor_hours"], cert["records_count"]) == (4.5, 1.0, 3)
    assert (cert["from"], cert["to"]) == (f"{YEAR}-11-10", f"{YEAR}-11-30")  # first record's day .. today
    assert cert["status"] == "valid"
    assert cert["issued_at"].endswith("Z")
    assert cert["verify_url"] == f"http://localhost/verify/{cert['code']}"

    pdf = client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=volunteer.headers)
    assert pdf.status_code == 200
    assert pdf.mimetype == "application/pdf"
    assert pdf.headers["Cache-Control"] == "no-store"
    text = "".join(pdf_pages(pdf.data))
    for expected in (
        "志愿服务证明",
        "欧阳娜娜",
        cert["number"],
        "鼓楼街道志愿服务站",
        "4.5",
        "敬老院陪伴",
        f"{YEAR}-11-10",
    ):
        assert expected in text, expected
    assert cert["volunteer"]["id_number_masked"] in text

    public = client.get(f"/api/v1/certificates/verify/{cert['code']}")
    assert public.status_code == 200
    assert public.get_json() == {
        "valid": True,
        "status": "valid",
        "number": cert["number"],
        "volunteer": {"real_name_masked": "欧***", "volunteer_no": cert["volunteer"]["volunteer_no"]},
        "org": cert["org"],
        "from": f"{YEAR}-11-10",
        "to": f"{YEAR}-11-30",
        "credit_hours": 4.5,
        "honor_hours": 1.0,
        "issued_at": cert["issued_at"],
    }
    page = client.get(f"/verify/{cert['code']}")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "证明有效" in html and "4.5 小时" in html and cert["number"] in html
    assert "欧阳娜娜" not in html and cert["volunteer"]["id_number_masked"] not in html

    for position in (3, 20, len(cert["code"]) // 2, len(cert["code"]) - 2):
        bad = altered(cert["code"], position)
        resp = client.get(f"/api/v1/certificates/verify/{bad}")
        assert resp.status_code == 404, position
        assert resp.get_json()["error"] == "not_found"
        assert client.get(f"/verify/{bad}").status_code == 404

    voided = client.post(
        f"/api/v1/certificates/{cert['id']}/void", json={"reason": "记录有误，重新出具"}, headers=coordinator.headers
    )
    assert voided.status_code == 200, voided.get_json()
    assert voided.get_json()["status"] == "void"
    assert voided.get_json()["void_reason"] == "记录有误，重新出具"
    public = client.get(f"/api/v1/certificates/verify/{cert['code']}").get_json()
    assert (public["valid"], public["status"], public["credit_hours"]) == (False, "void", 4.5)
    html = client.get(f"/verify/{cert['code']}").get_data(as_text=True)
    assert "已作废" in html and "证明有效" not in html
    void_pdf = "".join(pdf_pages(client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=volunteer.headers).data))
    assert "已作废" in void_pdf


def test_figures_are_frozen_when_a_record_is_added(app, client, served):
    volunteer = served["volunteer"]
    cert = issue(client, volunteer, served["org_id"]).get_json()
    make_record(app, volunteer, served["org_id"], minutes=240, ended_at=NOW - timedelta(hours=1), activity="新记录")
    with app.app_context():
        db.session.execute(sa.update(Volunteer).where(Volunteer.user_id == volunteer.id).values(real_name="欧阳娜"))
        db.session.commit()

    again = client.get(f"/api/v1/certificates/{cert['id']}", headers=volunteer.headers).get_json()
    assert (again["credit_hours"], again["honor_hours"], again["records_count"]) == (4.5, 1.0, 3)
    assert again["volunteer"]["real_name"] == "欧阳娜娜"
    public = client.get(f"/api/v1/certificates/verify/{cert['code']}").get_json()
    assert (public["valid"], public["credit_hours"]) == (True, 4.5)
    assert "新记录" not in "".join(
        pdf_pages(client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=volunteer.headers).data)
    )
    # A new certificate counts the new record.
    fresh = issue(client, volunteer, served["org_id"]).get_json()
    assert (fresh["credit_hours"], fresh["records_count"], fresh["volunteer"]["real_name"]) == (8.5, 4, "欧阳娜")
    assert fresh["number"] != cert["number"] and fresh["code"] != cert["code"]


# --- periods and what is counted --------------------------------------------------------------------------------


def test_period_is_inclusive_in_shanghai(app, client):
    clock.freeze(NOW)
    org_id, _ = make_org(app)
    volunteer = make_volunteer(app)
    # 1 November 00:30 and 23:59 in Ningbo are on the 1st; 31 October 23:59 is not.
    make_record(app, volunteer, org_id, minutes=60, ended_at=datetime(YEAR, 10, 31, 16, 30, tzinfo=UTC))
    make_record(app, volunteer, org_id, minutes=30, ended_at=datetime(YEAR, 11, 1, 15, 59, tzinfo=UTC))
    make_record(app, volunteer, org_id, minutes=600, ended_at=datetime(YEAR, 10, 31, 15, 59, tzinfo=UTC))
    make_record(app, volunteer, org_id, minutes=600, ended_at=datetime(YEAR, 11, 1, 16, 0, tzinfo=UTC))
    resp = issue(client, volunteer, org_id, **{"from": f"{YEAR}-11-01", "to": f"{YEAR}-11-01"})
    assert resp.status_code == 201, resp.get_json()
    cert = resp.get_json()
    assert (cert["from"], cert["to"], cert["credit_hours"], cert["records_count"]) == (
        f"{YEAR}-11-01",
        f"{YEAR}-11-01",
        1.5,
        2,
    )
    everything = issue(client, volunteer, org_id).get_json()
    assert (everything["from"], everything["to"], everything["records_count"]) == (f"{YEAR}-10-31", f"{YEAR}-11-30", 4)


def test_only_the_orgs_own_records_count(app, client, served):
    cert = issue(client, served["volunteer"], served["other_org"]).get_json()
    assert (cert["credit_hours"], cert["records_count"], cert["org"]["name"]) == (10.0, 1, "江北区青年志愿者协会")


def test_no_records_in_the_period_is_422_and_writes_nothing(app, client, served):
    volunteer = served["volunteer"]
    for period in ({"from": f"{YEAR}-01-01", "to": f"{YEAR}-06-30"}, {"to": f"{YEAR}-11-01"}):
        resp = issue(client, volunteer, served["org_id"], **period)
        assert resp.status_code == 422, resp.get_json()
        assert resp.get_json()["error"] == "no_records"
    stranger_org, _ = make_org(app)
    assert issue(client, volunteer, stranger_org).get_json()["error"] == "no_records"
    assert certificate_count(app) == 0
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0


def test_only_recorded_hours_are_certified_and_nothing_for_nothing(app, client, served):
    """Pending and rejected records are not the org's record; records adding up to 0
    minutes certify nothing."""
    volunteer, org_id = served["volunteer"], served["org_id"]
    make_record(app, volunteer, org_id, minutes=300, status="pending", ended_at=NOW - timedelta(days=1))
    make_record(app, volunteer, org_id, minutes=300, status="rejected", ended_at=NOW - timedelta(days=2))
    cert = issue(client, volunteer, org_id).get_json()
    assert (cert["credit_hours"], cert["honor_hours"], cert["records_count"]) == (4.5, 1.0, 3)
    zero_org, _ = make_org(app)
    make_record(app, volunteer, zero_org, minutes=0, ended_at=NOW - timedelta(days=4))
    make_record(app, volunteer, zero_org, minutes=600, status="pending", ended_at=NOW - timedelta(days=6))
    resp = issue(client, volunteer, zero_org)
    assert (resp.status_code, resp.get_json()["error"]) == (422, "no_records")


def _fonts(data: bytes) -> list[dict]:
    """Every font the PDF's pages use (descendants of composite fonts included), resolved."""
    found = {}
    for page in PdfReader(io.BytesIO(data)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            found[font["/BaseFont"]] = font
            for descendant in font.get("/DescendantFonts", []):
                found[descendant.get_object()["/BaseFont"]] = descendant.get_object()
    return list(found.values())


def test_the_pdf_embeds_every_glyph_it_uses(app, client, served):
    """Every font is a subset embedded in the file (a TrueType FontFile2): the PDF reads
    the same where no Chinese font — and no Helvetica — is installed."""
    cert = issue(client, served["volunteer"], served["org_id"]).get_json()
    pdf = client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=served["volunteer"].headers).data
    fonts = _fonts(pdf)
    assert fonts
    for font in fonts:
        name = str(font["/BaseFont"])
        assert "Helvetica" not in name and "STSong" not in name, name
        descriptor = font.get("/FontDescriptor")
        if descriptor is None:  # a Type0 font: its descendant carries the glyphs
            continue
        descriptor = descriptor.get_object()
        assert "/FontFile2" in descriptor, name
        assert len(descriptor["/FontFile2"].get_object().get_data()) > 1000, name
        assert re.match(r"^/?[A-Z]{6}\+", name), name  # a subset's tag
    text = "".join(pdf_pages(pdf))
    for expected in (
        "志愿服务证明",
        "欧阳娜娜",
        "3302",
        cert["number"],
        "鼓楼街道志愿服务站",
        "服务内容",
        "敬老院陪伴",
    ):
        assert expected in text, expected


def test_pdffonts_sees_every_font_embedded(app, client, served, tmp_path):
    """The same with poppler's pdffonts, where it is installed (.ci/run installs poppler-utils)."""
    import shutil
    import subprocess

    if shutil.which("pdffonts") is None:
        pytest.skip("pdffonts (poppler-utils) is not installed")
    cert = issue(client, served["volunteer"], served["org_id"]).get_json()
    path = tmp_path / "certificate.pdf"
    path.write_bytes(client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=served["volunteer"].headers).data)
    lines = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert lines
    for line in lines:
        emb, sub = line.split()[-5:-3]
        assert (emb, sub) == ("yes", "yes"), line


def test_places_in_the_pdf_are_names_never_codes(app, client):
    clock.freeze(NOW)
    org_id, _ = make_org(app, name="鄞州区青年志愿者协会", district="yinzhou")
    volunteer = make_volunteer(app)
    make_record(app, volunteer, org_id, place="yinzhou", activity="巡河护水", ended_at=NOW - timedelta(days=1))
    cert = issue(client, volunteer, org_id).get_json()
    text = "".join(pdf_pages(client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=volunteer.headers).data))
    assert "鄞州区" in text and "yinzhou" not in text


def test_without_its_font_the_certificate_says_what_to_install(make_app, served, tmp_path):
    from app.services.certificate_pdf import check_font

    missing = str(tmp_path / "none.ttc")
    assert "fonts-wqy-microhei" in check_font(missing)
    not_a_font = tmp_path / "fake.ttf"
    not_a_font.write_bytes(b"not a font")
    assert "cannot be embedded" in check_font(str(not_a_font))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"from": f"{YEAR}-11-20", "to": f"{YEAR}-11-10"}, "from"),
        ({"to": f"{YEAR}-12-01"}, "to"),
        ({"from": f"{YEAR}/11/01"}, "from"),
        ({"from": f"{YEAR}1101"}, "from"),
        ({"to": "1999-12-31"}, "to"),
        ({"from": f"{YEAR}-02-30"}, "from"),
        ({"org_id": "1"}, "org_id"),
        ({"until": f"{YEAR}-11-01"}, "until"),
    ],
)
def test_bad_periods_are_422(app, client, served, body, field):
    resp = client.post(MINE, json={"org_id": served["org_id"], **body}, headers=served["volunteer"].headers)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"]["json"]
    assert certificate_count(app) == 0


def test_from_after_to_is_the_same_rule_as_every_period(app, client, served):
    """A certificate's period and an org's query periods say one rule in one message."""
    late, early = f"{YEAR}-11-20", f"{YEAR}-11-10"
    body = {"org_id": served["org_id"], "from": late, "to": early}
    certificate = client.post(MINE, json=body, headers=served["volunteer"].headers)
    export = client.get(
        f"/api/v1/orgs/{served['org_id']}/records.csv",
        query_string={"from": late, "to": early},
        headers=served["coordinator"].headers,
    )
    assert (certificate.status_code, export.status_code) == (422, 422)
    said = certificate.get_json()["errors"]["json"]["from"]
    assert said == export.get_json()["errors"]["query"]["from"] and said[0]
    assert certificate_count(app) == 0


def test_the_org_must_exist_and_be_approved(app, client, served):
    volunteer = served["volunteer"]
    assert issue(client, volunteer, 987654321).status_code == 404
    # an id no database holds is refused as input, like every body id
    assert issue(client, volunteer, 2**40).status_code == 422
    pending, _ = make_org(app, status="pending")
    make_record(app, volunteer, pending)
    resp = issue(client, volunteer, pending)
    assert (resp.status_code, resp.get_json()["error"]) == (409, "org_not_approved")
    assert certificate_count(app) == 0


def test_only_volunteers_get_certificates(app, client, served):
    resident = make_user(app)
    make_record(app, resident, served["org_id"])
    resp = issue(client, resident, served["org_id"])
    assert (resp.status_code, resp.get_json()["error"]) == (403, "volunteer_required")
    assert client.post(MINE, json={"org_id": served["org_id"]}).status_code == 401
    assert certificate_count(app) == 0


def test_issuing_notifies_and_audits(app, client, served):
    volunteer = served["volunteer"]
    cert = issue(client, volunteer, served["org_id"]).get_json()
    inbox = client.get("/api/v1/me/notifications", headers=volunteer.headers).get_json()["items"]
    assert [n["kind"] for n in inbox] == ["certificate_issued"]
    assert inbox[0]["data"] == {
        "kind": "certificate_issued",
        "certificate_id": str(cert["id"]),
        "org_id": str(served["org_id"]),
        "notification_id": str(inbox[0]["id"]),
    }
    assert cert["number"] in inbox[0]["body"] and "鼓楼街道志愿服务站" in inbox[0]["body"]
    with app.app_context():
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "certificate.issue"))
        assert (entry.actor_id, entry.target_id) == (volunteer.id, cert["id"])
        assert entry.data["credit_minutes"] == 270 and entry.data["number"] == cert["number"]


def test_a_retried_issue_with_the_same_key_issues_once(app, client, served):
    headers = {**served["volunteer"].headers, "Idempotency-Key": "cert-1"}
    first = client.post(MINE, json={"org_id": served["org_id"]}, headers=headers)
    second = client.post(MINE, json={"org_id": served["org_id"]}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert certificate_count(app) == 1


# --- who sees and who voids -------------------------------------------------------------------------------------


def test_who_may_see_a_certificate(app, client, served):
    volunteer, coordinator = served["volunteer"], served["coordinator"]
    cert = issue(client, volunteer, served["org_id"]).get_json()
    admin = make_user(app, admin=True)
    _, other_coordinator = make_org(app)
    stranger = make_volunteer(app)
    for account, status in (
        (volunteer, 200),
        (coordinator, 200),
        (admin, 200),
        (other_coordinator, 404),
        (stranger, 404),
    ):
        resp = client.get(f"/api/v1/certificates/{cert['id']}", headers=account.headers)
        assert resp.status_code == status, account
        pdf = client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=account.headers)
        assert pdf.status_code == status, account
        if status == 404:
            assert resp.get_json()["error"] == pdf.get_json()["error"] == "not_found"
    assert client.get(f"/api/v1/certificates/{cert['id']}").status_code == 401
    assert client.get("/api/v1/certificates/99999999999", headers=admin.headers).status_code == 404


def test_my_certificates_are_mine_newest_first_in_pages(app, client, served):
    volunteer = served["volunteer"]
    ids = [issue(client, volunteer, served["org_id"]).get_json()["id"] for _ in range(3)]
    other = make_volunteer(app)
    make_record(app, other, served["org_id"])
    issue(client, other, served["org_id"])
    page = client.get(f"{MINE}?limit=2", headers=volunteer.headers).get_json()
    assert [c["id"] for c in page["items"]] == ids[::-1][:2]
    rest = client.get(f"{MINE}?limit=2&cursor={page['next_cursor']}", headers=volunteer.headers).get_json()
    assert [c["id"] for c in rest["items"]] == ids[:1] and rest["next_cursor"] is None
    forged = client.get(f"{MINE}?cursor=forged", headers=volunteer.headers)
    assert (forged.status_code, forged.get_json()["error"]) == (400, "invalid_cursor")


def test_who_may_void(app, client, served):
    volunteer, coordinator = served["volunteer"], served["coordinator"]
    cert = issue(client, volunteer, served["org_id"]).get_json()
    path = f"/api/v1/certificates/{cert['id']}/void"
    _, other_coordinator = make_org(app)

    resp = client.post(path, json={"reason": "不想要了"}, headers=volunteer.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (403, "own_certificate")
    assert client.post(path, json={"reason": "x"}, headers=other_coordinator.headers).status_code == 404
    assert client.post(path, json={}, headers=coordinator.headers).status_code == 422
    assert client.post(path, json={"reason": ""}, headers=coordinator.headers).status_code == 422
    with app.app_context():
        assert db.session.get(Certificate, cert["id"]).status == "valid"

    assert client.post(path, json={"reason": "信息有误"}, headers=coordinator.headers).status_code == 200
    again = client.post(path, json={"reason": "信息有误"}, headers=make_user(app, admin=True).headers)
    assert (again.status_code, again.get_json()["error"]) == (409, "certificate_void")
    with app.app_context():
        row = db.session.get(Certificate, cert["id"])
        assert (row.status, row.voided_by, row.void_reason) == ("void", coordinator.id, "信息有误")
        entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "certificate.void")).all()
        assert [(e.actor_id, e.target_id, e.data["reason"]) for e in entries] == [
            (coordinator.id, cert["id"], "信息有误")
        ]


def test_a_coordinator_cannot_void_their_own_certificate(app, client, served):
    coordinator = served["coordinator"]
    make_volunteer(app, coordinator)
    make_record(app, coordinator, served["org_id"])
    cert = issue(client, coordinator, served["org_id"]).get_json()
    resp = client.post(f"/api/v1/certificates/{cert['id']}/void", json={"reason": "x"}, headers=coordinator.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (403, "own_certificate")


# --- the code ---------------------------------------------------------------------------------------------------


def test_codes_that_are_not_ours_are_404(app, client, served):
    cert = issue(client, served["volunteer"], served["org_id"]).get_json()
    code = cert["code"]
    other = issue(client, served["volunteer"], served["other_org"]).get_json()
    raw = base64.urlsafe_b64decode(code + "=")
    # The other certificate's id with this one's signature.
    swapped = base64.urlsafe_b64encode(raw[:5] + other["id"].to_bytes(8, "big") + raw[13:]).rstrip(b"=").decode()
    # The same content signed by a key the server does not know.
    stranger = Ed25519PrivateKey.generate()
    forged = base64.urlsafe_b64encode(raw[:13] + stranger.sign(b"anything")).rstrip(b"=").decode()
    # A spare bit of the last character flipped: decodes to the same bytes, but is not the code.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(code[-1])
    spare = code[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    for bad in (swapped, forged, spare, code[:-1], code + "A", "x" * len(code), "..", "A" * 300):
        resp = client.get(f"/api/v1/certificates/verify/{bad}")
        assert resp.status_code == 404, bad
        assert resp.get_json()["error"] == "not_found"
    # a NUL is refused before any lookup, as in every path
    assert client.get("/api/v1/certificates/verify/%00").get_json()["error"] == "bad_request"
    assert client.get(f"/api/v1/certificates/verify/{code}").status_code == 200


def test_a_row_changed_in_the_database_no_longer_verifies(app, client, served):
    cert = issue(client, served["volunteer"], served["org_id"]).get_json()
    with app.app_context():
        db.session.execute(sa.update(Certificate).where(Certificate.id == cert["id"]).values(credit_minutes=6000))
        db.session.commit()
    assert client.get(f"/api/v1/certificates/verify/{cert['code']}").status_code == 404
    assert client.get(f"/verify/{cert['code']}").status_code == 404


def test_key_rotation_keeps_old_certificates_verifying_while_the_old_key_is_listed(make_app, served):
    old_seed, old_public = new_signing_key()
    new_seed, _ = new_signing_key()
    before = make_app(CERTIFICATE_SIGNING_KEY=old_seed)
    old_cert = issue(before.test_client(), served["volunteer"], served["org_id"]).get_json()

    rotated = make_app(CERTIFICATE_SIGNING_KEY=new_seed, CERTIFICATE_VERIFY_KEYS=f" {old_public} ")
    rotated_client = rotated.test_client()
    assert rotated_client.get(f"/api/v1/certificates/verify/{old_cert['code']}").status_code == 200
    new_cert = issue(rotated_client, served["volunteer"], served["org_id"]).get_json()
    assert new_cert["code"][:8] != old_cert["code"][:8]  # another key id
    assert rotated_client.get(f"/api/v1/certificates/verify/{new_cert['code']}").status_code == 200

    forgotten = make_app(CERTIFICATE_SIGNING_KEY=new_seed).test_client()
    assert forgotten.get(f"/api/v1/certificates/verify/{old_cert['code']}").status_code == 404
    assert forgotten.get(f"/api/v1/certificates/verify/{new_cert['code']}").status_code == 200
    with rotated.app_context():
        assert {row.key_id for row in db.session.scalars(sa.select(Certificate))} == {
            before.extensions["certificate_keys"].signing_id.hex(),
            rotated.extensions["certificate_keys"].signing_id.hex(),
        }


def _as_production(app):
    """An app made in development, then read as production (no start-up check ran)."""
    app.config["APP_ENV"] = "production"
    app.testing = app.debug = False
    app.extensions.pop("certificate_keys", None)
    return app


def test_the_signing_key_is_required_in_production(make_app):
    from app.secrets import UnsafeConfiguration

    keys = fresh_keys()
    with pytest.raises(UnsafeConfiguration, match="CERTIFICATE_SIGNING_KEY is not set"):
        make_app(TESTING=False, APP_ENV="production", CERTIFICATE_SIGNING_KEY=None, **keys)
    with pytest.raises(CertificateKeyError, match="CERTIFICATE_SIGNING_KEY is not set"):
        certificate_key(_as_production(make_app(CERTIFICATE_SIGNING_KEY=None)))
    debug = make_app(TESTING=False, DEBUG=True, CERTIFICATE_SIGNING_KEY=None)
    assert certificate_key(debug).signing_id == certificate_key(make_app()).signing_id  # derived, stable


@pytest.mark.parametrize("form", ["seed", "pem"])
def test_the_signing_key_is_read_as_a_seed_or_a_pem(make_app, form):
    key = Ed25519PrivateKey.generate()
    if form == "seed":
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        text = base64.b64encode(raw).decode()
    else:
        text = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    keys = certificate_key(make_app(TESTING=False, CERTIFICATE_SIGNING_KEY=text))
    assert keys.signing.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CERTIFICATE_SIGNING_KEY", "not-a-key"),
        ("CERTIFICATE_SIGNING_KEY", base64.b64encode(b"x" * 31).decode()),
        ("CERTIFICATE_VERIFY_KEYS", "c2hvcnQ="),
    ],
)
def test_an_unreadable_key_fails_with_its_name(make_app, name, value):
    with pytest.raises(CertificateKeyError, match=name):
        certificate_key(make_app(**{name: value}))


def test_verify_urls_use_the_public_base_url(make_app, served):
    public = make_app(PUBLIC_BASE_URL="https://zhiyuan.example.cn/")
    cert = issue(public.test_client(), served["volunteer"], served["org_id"]).get_json()
    assert cert["verify_url"] == f"https://zhiyuan.example.cn/verify/{cert['code']}"
    pdf = public.test_client().get(f"/api/v1/certificates/{cert['id']}/pdf", headers=served["volunteer"].headers)
    assert cert["verify_url"] in "".join(pdf_pages(pdf.data)).replace("\n", "")


# --- the PDF and the page ---------------------------------------------------------------------------------------


def test_a_long_table_breaks_across_pages_with_its_header(app, client):
    clock.freeze(NOW)
    org_id, _ = make_org(app, name="鄞州区青年志愿者协会")
    volunteer = make_volunteer(app)
    for i in range(200):
        make_record(
            app,
            volunteer,
            org_id,
            minutes=30 + i,
            ended_at=NOW - timedelta(hours=200 - i),
            activity=f"巡河护水第{i + 1}次",
        )
    cert = issue(client, volunteer, org_id).get_json()
    assert cert["records_count"] == 200
    pages = pdf_pages(client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=volunteer.headers).data)
    assert len(pages) > 2
    assert "巡河护水第1次" in pages[0]
    last = next(i for i, text in enumerate(pages) if "巡河护水第200次" in text)
    assert last > 1 and "出具单位" in "".join(pages[last:])
    for text in pages[1 : last + 1]:
        assert "服务活动" in text and "时长（小时）" in text  # the header row, repeated
    assert all(cert["number"] in text for text in pages)  # the footer


def test_the_verify_page_is_self_contained_and_mobile_friendly(app, client, served):
    cert = issue(client, served["volunteer"], served["org_id"]).get_json()
    page = client.get(f"/verify/{cert['code']}")
    html = page.get_data(as_text=True)
    assert '<html lang="zh-CN">' in html
    assert 'name="viewport"' in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)  # no external assets
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-cache"
    assert page.headers["X-Robots-Tag"] == "noindex"
    missing = client.get("/verify/nonsense")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "未找到该证明" in missing.get_data(as_text=True)


# --- rate limits ------------------------------------------------------------------------------------------------


@pytest.fixture
def limited(make_app):
    return lambda **config: make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://", **config)


def test_the_public_check_is_rate_limited_per_ip(limited, served):
    app = limited(RATELIMIT_VERIFY_IP="3/minute")
    client = app.test_client()
    code = issue(client, served["volunteer"], served["org_id"]).get_json()["code"]
    here, there = {"REMOTE_ADDR": "10.0.0.1"}, {"REMOTE_ADDR": "10.0.0.2"}
    assert client.get(f"/api/v1/certificates/verify/{code}", environ_base=here).status_code == 200
    assert client.get("/api/v1/certificates/verify/unknown", environ_base=here).status_code == 404
    assert client.get(f"/verify/{code}", environ_base=here).status_code == 200  # one budget for both
    limited_json = client.get(f"/api/v1/certificates/verify/{code}", environ_base=here)
    assert limited_json.status_code == 429
    assert limited_json.get_json()["error"] == "rate_limited" and int(limited_json.headers["Retry-After"]) <= 60
    limited_page = client.get(f"/verify/{code}", environ_base=here)
    assert limited_page.status_code == 429 and limited_page.mimetype == "text/html"
    assert "查询过于频繁" in limited_page.get_data(as_text=True) and limited_page.headers["Retry-After"]
    assert client.get(f"/verify/{code}", environ_base=there).status_code == 200


def test_issuing_is_rate_limited_per_user(limited, served):
    client = limited(RATELIMIT_CERTIFICATE_ISSUE="2/day").test_client()
    volunteer = served["volunteer"]
    assert [issue(client, volunteer, served["org_id"]).status_code for _ in range(3)] == [201, 201, 429]
    other = make_volunteer(client.application)
    make_record(client.application, other, served["org_id"])
    assert issue(client, other, served["org_id"]).status_code == 201


def test_two_voids_at_once_void_once(app, served, postgres_only):
    from tests.test_races import at_once

    client = app.test_client()
    cert = issue(client, served["volunteer"], served["org_id"]).get_json()
    admin = make_user(app, admin=True)
    path = f"/api/v1/certificates/{cert['id']}/void"
    results = at_once(app, [("POST", path, a.headers, {"reason": "重复"}) for a in (served["coordinator"], admin)])
    assert sorted((status, body.get("error")) for status, body in results) == [(200, None), (409, "certificate_void")]
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action == "certificate.void")
            )
            == 1
        )


def test_keygen_prints_a_key_the_app_accepts(runner, make_app):
    result = runner.invoke(args=["certificates", "keygen"])
    assert result.exit_code == 0, result.output
    seed = re.search(r"^CERTIFICATE_SIGNING_KEY=(\S+)$", result.output, re.M).group(1)
    public = re.search(r"public key .*: (\S+)$", result.output, re.M).group(1)
    configured = make_app(TESTING=False, CERTIFICATE_SIGNING_KEY=seed)
    shown = configured.test_cli_runner().invoke(args=["certificates", "public-key"])
    assert shown.exit_code == 0 and shown.output.startswith(public)
    unset = _as_production(make_app(CERTIFICATE_SIGNING_KEY=None)).test_cli_runner()
    failed = unset.invoke(args=["certificates", "public-key"])
    assert failed.exit_code != 0 and "CERTIFICATE_SIGNING_KEY is not set" in failed.output


def test_the_openapi_document_describes_certificates_and_calendar(app, client, served):
    from tests.test_openapi import _conforms

    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    assert paths["/api/v1/certificates/verify/{code}"]["get"]["security"] == []
    assert paths["/api/v1/calendar/{token}.ics"]["get"]["security"] == []
    assert "text/calendar" in paths["/api/v1/calendar/{token}.ics"]["get"]["responses"]["200"]["content"]
    assert "application/pdf" in paths["/api/v1/certificates/{certificate_id}/pdf"]["get"]["responses"]["200"]["content"]
    issue_op = paths["/api/v1/me/certificates"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in issue_op["parameters"])
    assert not any(
        p.get("name") == "Idempotency-Key" for p in paths["/api/v1/me/calendar"]["post"].get("parameters", [])
    )
    assert {"from", "to", "org_id"} <= set(spec["components"]["schemas"]["CertificateCreate"]["properties"])

    cert = issue(client, served["volunteer"], served["org_id"]).get_json()
    _conforms(spec, "Certificate", cert)
    _conforms(spec, "CertificateVerification", client.get(f"/api/v1/certificates/verify/{cert['code']}").get_json())
    _conforms(spec, "CertificatePage", client.get(MINE, headers=served["volunteer"].headers).get_json())
    _conforms(spec, "CalendarFeed", client.post("/api/v1/me/calendar", headers=served["volunteer"].headers).get_json())


def test_the_pdf_and_the_page_in_english(app, client, served):
    """The PDF follows its reader's language, the public page the browser's; dates and
    numbers are written the language's way."""
    volunteer = served["volunteer"]
    cert = issue(client, volunteer, served["org_id"]).get_json()
    set_locale(client, volunteer, "en")
    pdf = client.get(f"/api/v1/certificates/{cert['id']}/pdf", headers=volunteer.headers)
    text = " ".join(pdf_pages(pdf.data))
    for expected in (
        "Certificate of Volunteer Service",
        "This is to certify that",
        f"November 10, {YEAR}",
        "4.5 hours",
    ):
        assert expected in text, expected
    assert "证明编号" not in text and "欧阳娜娜" in text
    page = client.get(f"/verify/{cert['code']}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="en">' in page
    assert "The certificate is valid" in page and "4.5 hours" in page and f"November 10, {YEAR}" in page
    chinese = client.get(f"/verify/{cert['code']}").get_data(as_text=True)
    assert '<html lang="zh-CN">' in chinese and f"{YEAR}年11月10日" in chinese
