"""A client generated from the served OpenAPI document installs, imports and
plays a whole wish journey against a live server — what an app team does on
day one. Skip it with ``-m "not generated_client"``; it skips by itself where
openapi-python-client (requirements-dev.txt) is not installed."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.factories import PASSWORD, make_org
from tests.helpers import sent_code

pytestmark = pytest.mark.generated_client

PACKAGE = "yong_volunteer_api_client"  # from the document's ASCII title
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture
def generated_client(app, tmp_path):
    """Generate the client from the app's own document and pip-install it into a
    directory of its own; yield the imported package."""
    pytest.importorskip("openapi_python_client")
    pytest.importorskip("wheel")  # pip builds the generated setup.py with it
    if not GENERATOR.exists():
        pytest.skip("openapi-python-client is not installed")
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(app.test_client().get("/api/v1/openapi.json").get_json()), encoding="utf-8")
    config = tmp_path / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}))
    generated = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "setup", "--output-path", str(tmp_path / "src")]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation"]
        + ["--target", str(target), str(tmp_path / "src")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (target / PACKAGE / "__init__.py").exists()
    sys.path.insert(0, str(target))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(target))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def live_server(app):
    """The app on 127.0.0.1, a free port, in a thread (the test database)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_a_wish_journey_through_the_generated_client(app, generated_client, live_server):
    c = generated_client
    api = importlib.import_module(f"{PACKAGE}.api")
    auth = importlib.import_module(f"{PACKAGE}.api.auth")
    m = importlib.import_module(f"{PACKAGE}.models")
    for module in ("auth.send_sms_code", "auth.register", "auth.login", "legal.get_legal", "me.register_volunteer"):
        importlib.import_module(f"{PACKAGE}.api.{module}")
    for module in ("me.get_me", "me.my_claims"):
        importlib.import_module(f"{PACKAGE}.api.{module}")
    for module in ("postings.create_posting", "postings.approve_posting", "postings.list_postings"):
        importlib.import_module(f"{PACKAGE}.api.{module}")
    for module in ("claims.claim_posting", "claims.fulfil_claim", "claims.confirm_claim", "records.approve_record"):
        importlib.import_module(f"{PACKAGE}.api.{module}")
    importlib.import_module(f"{PACKAGE}.api.orgs.list_org_records")
    anonymous = c.Client(base_url=live_server, raise_on_unexpected_status=True)

    def signed_in(result):
        assert isinstance(result, m.AuthResult), result
        return c.AuthenticatedClient(base_url=live_server, token=result.access_token, raise_on_unexpected_status=True)

    legal = api.legal.get_legal.sync(client=anonymous)
    assert isinstance(legal, m.Legal), legal

    def code_for(phone: str, purpose) -> str:
        sent = auth.send_sms_code.sync(client=anonymous, body=m.SmsCodeRequest(phone=phone, purpose=purpose))
        assert isinstance(sent, m.SmsCodeSent) and sent.expires_in_s == 300, sent
        return sent_code(app, phone, "register")

    # A resident signs up with a code (a retry with the same key replays the answer) ...
    sign_up = m.Register(
        phone="13912340001",
        sms_code=code_for("13912340001", m.SmsCodeRequestPurpose.REGISTER),
        password="resident-pass-1",
        display_name="王阿姨",
        privacy_version=legal.privacy_version,
    )
    key = str(uuid.uuid4())
    first = auth.register.sync(client=anonymous, body=sign_up, idempotency_key=key)
    retried = auth.register.sync(client=anonymous, body=sign_up, idempotency_key=key)
    assert retried.user.id == first.user.id
    assert first.user.consent_required is False
    resident = signed_in(first)
    # ... and so does a volunteer, who registers as one.
    volunteer = signed_in(
        auth.register.sync(
            client=anonymous,
            body=m.Register(
                phone="13912340002",
                sms_code=code_for("13912340002", m.SmsCodeRequestPurpose.REGISTER),
                password="volunteer-pass-1",
                display_name="小李",
                privacy_version=legal.privacy_version,
            ),
        )
    )
    profile = api.me.register_volunteer.sync(
        client=volunteer,
        body=m.VolunteerRegister(
            real_name="李小明",
            id_number="330203199001011236",
            district=m.VolunteerRegisterDistrict.HAISHU,
            home=m.Location(lat=29.8683, lng=121.544),
            skills=["elderly"],
        ),
    )
    assert isinstance(profile, m.Volunteer), profile

    # The resident posts a wish; it waits for the district's coordinators.
    wish = api.postings.create_posting.sync(
        client=resident,
        body=m.PostingCreate(
            kind=m.PostingCreateKind.WISH,
            title="帮忙买菜",
            description="每周六上午帮忙买菜送上门",
            district=m.PostingCreateDistrict.HAISHU,
            location=m.Location(lat=29.8683, lng=121.544),
            tags=["助老"],
        ),
    )
    assert isinstance(wish, m.Posting), wish
    assert wish.status == m.PostingStatus.PENDING_REVIEW
    assert wish.location.lat == 29.8683 and wish.org is None

    org_id, coordinator_account = make_org(app, district="haishu")
    coordinator = signed_in(
        auth.login.sync(client=anonymous, body=m.Login(phone=coordinator_account.phone, password=PASSWORD))
    )
    approved = api.postings.approve_posting.sync(wish.id, client=coordinator)
    assert approved.status == m.PostingStatus.OPEN

    # The volunteer finds it on the wall near home, claims it, does it.
    wall = api.postings.list_postings.sync(client=anonymous, near="29.8683,121.544")
    assert wish.id in [item.id for item in wall.items]
    claim = api.claims.claim_posting.sync(
        wish.id, client=volunteer, body=m.ClaimCreate(message="周六上午我来"), idempotency_key=str(uuid.uuid4())
    )
    assert isinstance(claim, m.Claim), claim
    assert claim.status == m.ClaimStatus.ACTIVE
    # A second claim is refused with a slug the client knows.
    refused = api.claims.claim_posting.sync(wish.id, client=volunteer, body=m.ClaimCreate())
    assert isinstance(refused, m.Error)
    assert refused.error in {m.ErrorError.DUPLICATE_CLAIM, m.ErrorError.POSTING_NOT_OPEN}
    done = api.claims.fulfil_claim.sync(claim.id, client=volunteer, body=m.ClaimFulfil(note="已送到", minutes=60))
    assert done.status == m.ClaimStatus.FULFILLED

    # The resident confirms and rates; the record waits for the coordinator's org,
    # whose coordinator approves it; the volunteer's hours and rating show it.
    confirmed = api.claims.confirm_claim.sync(claim.id, client=resident, body=m.ClaimConfirm(rating=5))
    assert confirmed.status == m.ClaimStatus.CONFIRMED
    assert api.me.get_me.sync(client=volunteer).volunteer.credit_hours == 0.0
    queue = api.orgs.list_org_records.sync(org_id, client=coordinator, status=m.ListOrgRecordsStatus.PENDING)
    [record] = queue.items
    assert record.status == m.RecordStatus.PENDING
    assert api.records.approve_record.sync(record.id, client=coordinator).status == m.RecordStatus.RECORDED
    me = api.me.get_me.sync(client=volunteer)
    assert me.volunteer.credit_hours == 1.0
    assert me.volunteer.rating.count == 1 and me.volunteer.rating.average == 5.0
    mine = api.me.my_claims.sync(client=volunteer)
    assert [item.posting.title for item in mine.items] == ["帮忙买菜"]
