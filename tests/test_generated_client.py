"""Clients generated from the served OpenAPI document, as app teams make them on
day one, used against a live server: the Python client (openapi-python-client)
plays a wish journey and downloads the PDF, CSV and XLSX; the TypeScript client
(openapi-typescript types, openapi-fetch calls: what a React Native or uni-app
team uses) compiles with ``tsc --strict`` only if every nullable field is typed
nullable, then runs a journey that reads them. Skip them with
``-m "not generated_client"``; the Python one skips by itself where
openapi-python-client (requirements-dev.txt) is not installed, the TypeScript one
where Node.js is not (``make test`` installs its packages from
clients/package-lock.json when npm is there; CI installs Node.js)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import yaml
from werkzeug.serving import make_server

from app import create_app
from tests.conftest import _config_dict
from tests.factories import PASSWORD, add_member, make_org, make_posting, make_record, make_volunteer
from tests.helpers import sent_code

pytestmark = [pytest.mark.generated_client, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "clients"
PACKAGE = "yong_volunteer_api_client"  # from the document's ASCII title
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PDF, CSV_BOM, ZIP = b"%PDF-", b"\xef\xbb\xbf", b"PK\x03\x04"


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> Path:
    """The served OpenAPI document, as a file."""
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    path = tmp_path_factory.mktemp("document") / "openapi.json"
    path.write_text(app.test_client().get("/api/v1/openapi.json").get_data(as_text=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def generated_client(document, tmp_path_factory):
    """Generate the Python client with the repository's generator settings
    (clients/openapi-python-client.yaml) and pip-install it into a directory of
    its own; yield the imported package."""
    pytest.importorskip("openapi_python_client")
    pytest.importorskip("wheel")  # pip builds the generated setup.py with it
    if not GENERATOR.exists():
        pytest.skip("openapi-python-client is not installed")
    work = tmp_path_factory.mktemp("python-client")
    settings = yaml.safe_load((CLIENTS / "openapi-python-client.yaml").read_text(encoding="utf-8"))
    config = work / "generator.json"
    config.write_text(json.dumps({**settings, "post_hooks": []}))  # ruff may not be on PATH here
    generated = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--meta", "setup", "--output-path", str(work / "src")]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # Every operation and every answer made it into the client (a skipped one is a warning).
    assert "WARNING" not in generated.stdout + generated.stderr, generated.stdout + generated.stderr
    target = work / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation"]
        + ["--target", str(target), str(work / "src")],
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


@pytest.fixture
def an_org_with_records(app, client):
    """An org, its coordinator, a volunteer member with recorded hours and a
    certificate of them, and an open project of the org near the volunteer's home."""
    org_id, coordinator = make_org(app, district="haishu")
    volunteer = make_volunteer(app, skills=["elderly"])
    add_member(app, org_id, volunteer)
    make_record(app, volunteer, org_id, minutes=90)
    issued = client.post("/api/v1/me/certificates", json={"org_id": org_id}, headers=volunteer.headers)
    assert issued.status_code == 201, issued.get_json()
    project = make_posting(app, coordinator, kind="project", org_id=org_id, tags=["elderly"])
    return {
        "org_id": org_id,
        "coordinator": coordinator,
        "volunteer": volunteer,
        "certificate_id": issued.get_json()["id"],
        "posting_id": project,
    }


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


def test_downloads_and_nullable_fields_through_the_python_client(generated_client, live_server, an_org_with_records):
    """The certificate PDF and the records CSV and XLSX come back as bytes; nullable
    objects and enums are typed "this or None", one class per enum."""
    c, world = generated_client, an_org_with_records
    api = importlib.import_module(f"{PACKAGE}.api")
    m = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    for module in ("auth.login", "certificates.certificate_pdf", "orgs.export_records_csv", "orgs.export_records_xlsx"):
        importlib.import_module(f"{PACKAGE}.api.{module}")
    for module in ("orgs.list_orgs", "postings.get_posting", "me.get_me"):
        importlib.import_module(f"{PACKAGE}.api.{module}")
    anonymous = c.Client(base_url=live_server, raise_on_unexpected_status=True)

    def signed_in(account):
        tokens = api.auth.login.sync(client=anonymous, body=m.Login(phone=account.phone, password=PASSWORD))
        return c.AuthenticatedClient(base_url=live_server, token=tokens.access_token, raise_on_unexpected_status=True)

    volunteer, coordinator = signed_in(world["volunteer"]), signed_in(world["coordinator"])
    pdf = api.certificates.certificate_pdf.sync(world["certificate_id"], client=volunteer)
    assert isinstance(pdf, types.File) and pdf.payload.read(5) == PDF
    csv = api.orgs.export_records_csv.sync(world["org_id"], client=coordinator)
    assert isinstance(csv, types.File) and csv.payload.read(3) == CSV_BOM
    xlsx = api.orgs.export_records_xlsx.sync(world["org_id"], client=coordinator)
    assert isinstance(xlsx, types.File) and xlsx.payload.read(4) == ZIP

    # A public page is read without a token; what may be null is None, not a crash.
    posting = api.postings.get_posting.sync(world["posting_id"], client=anonymous)
    assert posting.my_claim is None and posting.location.lat == 29.87 and posting.org.id == world["org_id"]
    me = api.me.get_me.sync(client=coordinator)
    assert me.volunteer is None and me.quiet_hours is None
    # A nullable enum is one class (Org + role), or None.
    mine = api.orgs.list_orgs.sync(client=coordinator, mine=True)
    assert [org.role for org in mine.items] == [m.OrgRole.COORDINATOR]
    assert not [name for name in dir(m) if name.startswith("OrgRoleType")]


def _node() -> tuple[str, Path]:
    """Node.js and the clients' packages (make install), or a skip saying what is missing."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js is missing: .ci/run installs it (apt-get install nodejs npm)")
        pytest.skip("needs Node.js (apt-get install nodejs npm), then make install")
    modules = CLIENTS / "node_modules"
    if not (modules / ".bin" / "tsc").exists():
        pytest.fail("clients/node_modules is missing: run make clients (npm ci in clients/; make test does it)")
    return node, modules


def test_the_typescript_client_compiles_strictly_and_reads_every_nullable_field(
    document, live_server, an_org_with_records, tmp_path
):
    node, modules = _node()
    for name in ("journey.ts", "tsconfig.json", "package.json"):
        shutil.copy(CLIENTS / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(modules)
    generated = subprocess.run(
        [str(modules / ".bin" / "openapi-typescript"), str(document), "--output", str(tmp_path / "api.ts")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    compiled = subprocess.run(
        [str(modules / ".bin" / "tsc"), "--project", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr

    world = an_org_with_records
    journey = {
        "base": live_server,
        "volunteer": {"phone": world["volunteer"].phone, "password": PASSWORD},
        "coordinator": {"phone": world["coordinator"].phone, "password": PASSWORD},
        **{key: world[key] for key in ("org_id", "posting_id", "certificate_id")},
    }
    ran = subprocess.run(
        [node, str(tmp_path / "out" / "journey.js"), json.dumps(journey)], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    read = json.loads(ran.stdout)
    assert read["places"] == [[29.87, 121.55]] and read["orgs"] == [read["orgs"][0]] and read["orgs"][0]
    assert read["volunteer_no"] and read["quiet_hours"] is None
    assert (read["my_claim_before"], read["claim_status"], read["my_claim_after"]) == (None, "active", "active")
    assert read["match"] == [["elderly"]]
    assert read["roles"] == ["coordinator"]
    assert read["pdf"] == {"status": 200, "head": list(PDF)}
    assert read["csv"] == {"status": 200, "head": list(CSV_BOM)}
    assert read["xlsx"] == {"status": 200, "head": list(ZIP)}
