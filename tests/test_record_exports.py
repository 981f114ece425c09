"""An org's records out for the district office: records.csv and records.xlsx."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook

from app import clock
from app.extensions import db
from app.models import ServiceRecord, User
from app.services import record_exports
from tests.factories import ROLES, make_org, make_roles, make_user, make_volunteer, set_locale
from tests.moments import YEAR

NOW = datetime(YEAR, 4, 10, 2, 0, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"
HEADER_ZH = [
    "记录编号",
    "志愿者编号",
    "姓名",
    "证件号码",
    "活动名称",
    "服务内容",
    "服务地点",
    "开始时间",
    "结束时间",
    "服务时长（小时）",
    "时长类型",
    "服务评价",
    "记录人",
    "记录时间",
]


def sh(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Ningbo wall-clock time in YEAR as UTC (UTC+8, no DST)."""
    return datetime(YEAR, month, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def add_record(app, org_id: int, volunteer_id: int, recorded_by: int, ended_at: datetime, **values) -> int:
    minutes = values.pop("minutes", 90)
    with app.app_context():
        record = ServiceRecord(
            volunteer_id=volunteer_id,
            org_id=org_id,
            kind=values.pop("kind", "credit"),
            status=values.pop("status", "recorded"),
            activity=values.pop("activity", "为独居老人买菜"),
            minutes=minutes,
            started_at=values.pop("started_at", ended_at - timedelta(minutes=minutes)),
            ended_at=ended_at,
            place=values.pop("place", "鼓楼街道公园路社区"),
            content=values.pop("content", "陪王奶奶去菜场，帮忙拎回家。"),
            evaluation=values.pop("evaluation", "优秀"),
            recorded_by=recorded_by,
            created_at=values.pop("created_at", ended_at + timedelta(hours=1)),
            **values,
        )
        db.session.add(record)
        db.session.commit()
        return record.id


@pytest.fixture
def roles(app):
    clock.freeze(NOW)
    return make_roles(app)


def url(org_id: int, query: str = "", extension: str = "csv") -> str:
    return f"/api/v1/orgs/{org_id}/records.{extension}" + (f"?{query}" if query else "")


def read_csv(resp) -> list[list[str]]:
    raw = resp.get_data()
    assert raw.startswith(BOM)
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def read_xlsx(resp) -> list[list]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    sheet = load_workbook(io.BytesIO(resp.get_data())).active
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def volunteer_fields(app, user_id: int) -> tuple[str, str]:
    with app.app_context():
        user = db.session.get(User, user_id)
        return user.volunteer.volunteer_no, user.volunteer.id_masked


def test_csv_has_a_bom_the_header_and_one_row_per_record_in_chinese(app, client, roles):
    volunteer = roles["volunteer"]
    coordinator = roles["coordinator"]
    record_id = add_record(app, roles["org_id"], volunteer.id, coordinator.id, sh(3, 14, 16, 30))
    resp = client.get(url(roles["org_id"]), headers=coordinator.headers)
    assert resp.status_code == 200
    assert resp.is_streamed
    assert resp.mimetype == "text/csv" and resp.mimetype_params["charset"] == "utf-8"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="records-{roles["org_id"]}.csv"'
    assert resp.headers["Cache-Control"] == "no-store"
    header, *rows = read_csv(resp)
    assert header == HEADER_ZH
    volunteer_no, id_masked = volunteer_fields(app, volunteer.id)
    with app.app_context():
        recorder = db.session.get(User, coordinator.id).display_name
    assert rows == [
        [
            str(record_id),
            volunteer_no,
            "张三丰",
            id_masked,
            "为独居老人买菜",
            "陪王奶奶去菜场，帮忙拎回家。",
            "鼓楼街道公园路社区",
            f"{YEAR}-03-14 15:00",
            f"{YEAR}-03-14 16:30",
            "1.5",
            "志愿服务时长",
            "优秀",
            recorder,
            f"{YEAR}-03-14 17:30",
        ]
    ]
    assert "*" in id_masked and len(id_masked) == 18  # never the whole number


def test_only_this_orgs_records_honor_ones_included(app, client, roles):
    volunteer = roles["volunteer"]
    mine = add_record(app, roles["org_id"], volunteer.id, roles["coordinator"].id, sh(3, 1, 10))
    honor = add_record(
        app, roles["org_id"], volunteer.id, roles["coordinator"].id, sh(3, 2, 10), kind="honor", evaluation=None
    )
    add_record(app, roles["other_org_id"], volunteer.id, roles["other_coordinator"].id, sh(3, 1, 10))
    rows = read_csv(client.get(url(roles["org_id"]), headers=roles["admin"].headers))[1:]
    assert [(r[0], r[10], r[11]) for r in rows] == [(str(mine), "志愿服务时长", "优秀"), (str(honor), "荣誉时长", "")]


def test_the_period_is_local_days_inclusive(app, client, roles):
    org_id, v, c = roles["org_id"], roles["volunteer"].id, roles["coordinator"].id
    before = add_record(app, org_id, v, c, sh(2, 28, 23, 50))  # 15:50Z on the 28th: still February in Ningbo
    first = add_record(app, org_id, v, c, sh(3, 1, 0, 10))  # 16:10Z on 28 Feb: 1 March in Ningbo
    last = add_record(app, org_id, v, c, sh(3, 31, 23, 59))
    after = add_record(app, org_id, v, c, sh(4, 1, 0, 0))
    resp = client.get(url(org_id, f"from={YEAR}-03-01&to={YEAR}-03-31"), headers=roles["coordinator"].headers)
    assert [r[0] for r in read_csv(resp)[1:]] == [str(first), str(last)]
    assert resp.headers["Content-Disposition"].endswith(f'filename="records-{org_id}-{YEAR}-03-01-{YEAR}-03-31.csv"')
    only_from = client.get(url(org_id, f"from={YEAR}-03-01"), headers=roles["coordinator"].headers)
    assert [r[0] for r in read_csv(only_from)[1:]] == [str(first), str(last), str(after)]
    only_to = client.get(url(org_id, f"to={YEAR}-02-28"), headers=roles["coordinator"].headers)
    assert [r[0] for r in read_csv(only_to)[1:]] == [str(before)]
    one_day = client.get(url(org_id, f"from={YEAR}-03-31&to={YEAR}-03-31"), headers=roles["coordinator"].headers)
    assert [r[0] for r in read_csv(one_day)[1:]] == [str(last)]


def test_only_recorded_records_are_the_orgs_record(app, client, roles):
    """A pending record waits for approval and a rejected one never counts: neither is exported."""
    org_id, v, c = roles["org_id"], roles["volunteer"].id, roles["coordinator"].id
    recorded = add_record(app, org_id, v, c, sh(3, 5, 9))
    add_record(app, org_id, v, c, sh(3, 5, 12), status="pending")
    add_record(app, org_id, v, c, sh(3, 5, 15), status="rejected")
    for extension in ("csv", "xlsx"):
        resp = client.get(url(org_id, extension=extension), headers=roles["admin"].headers)
        rows = read_csv(resp)[1:] if extension == "csv" else read_xlsx(resp)[1:]
        assert [str(row[0]) for row in rows] == [str(recorded)], extension


def test_places_read_as_names_never_district_codes(app, client, roles):
    """A record whose place is a district's code (written before places were named) reads 海曙区."""
    add_record(app, roles["org_id"], roles["volunteer"].id, roles["coordinator"].id, sh(3, 5, 9), place="haishu")
    [csv_row] = read_csv(client.get(url(roles["org_id"]), headers=roles["admin"].headers))[1:]
    [xlsx_row] = read_xlsx(client.get(url(roles["org_id"], extension="xlsx"), headers=roles["admin"].headers))[1:]
    assert csv_row[6] == xlsx_row[6] == "海曙区"


def test_formula_cells_are_neutralised(app, client, roles):
    org_id, v, c = roles["org_id"], roles["volunteer"].id, roles["coordinator"].id
    add_record(
        app,
        org_id,
        v,
        c,
        sh(3, 1, 10),
        activity='=HYPERLINK("http://evil.example","点我")',
        content="+1+1",
        place="-2+3",
        evaluation="@SUM(A1)",
    )
    [row] = read_csv(client.get(url(org_id), headers=roles["admin"].headers))[1:]
    assert row[4:7] == ['\'=HYPERLINK("http://evil.example","点我")', "'+1+1", "'-2+3"]
    assert row[11] == "'@SUM(A1)"


def test_a_provider_without_a_volunteer_profile_is_named(app, client, roles):
    provider = make_user(app, name="李师傅")
    add_record(app, roles["org_id"], provider.id, roles["coordinator"].id, sh(3, 1, 10))
    [row] = read_csv(client.get(url(roles["org_id"]), headers=roles["admin"].headers))[1:]
    assert row[1:4] == ["", "李师傅", ""]


def test_rows_are_read_in_batches_and_none_is_lost_or_repeated(app, client, roles, monkeypatch):
    monkeypatch.setattr(record_exports, "BATCH_SIZE", 3)
    volunteers = [make_volunteer(app) for _ in range(2)]
    expected = [
        add_record(app, roles["org_id"], volunteers[i % 2].id, roles["coordinator"].id, sh(3, 1 + i, 10))
        for i in range(10)
    ]
    resp = client.get(url(roles["org_id"]), headers=roles["coordinator"].headers, buffered=False)
    chunks = list(resp.response)
    assert len(chunks) == 1 + 4  # the header, then one chunk per batch of 3
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"), newline="")))
    assert [r[0] for r in rows[1:]] == [str(i) for i in expected]


def test_english_headers_for_a_user_who_reads_english(app, client, roles):
    add_record(app, roles["org_id"], roles["volunteer"].id, roles["coordinator"].id, sh(3, 1, 10))
    set_locale(client, roles["admin"], "en")
    resp = client.get(url(roles["org_id"]), headers=roles["admin"].headers)
    header, row = read_csv(resp)
    assert header[:3] == ["Record no.", "Volunteer no.", "Real name"]
    assert row[10] == "credit" and row[2] == "张三丰"


@pytest.mark.parametrize("extension", ["csv", "xlsx"])
@pytest.mark.parametrize("role", ROLES)
def test_who_may_export(app, client, roles, role, extension):
    add_record(app, roles["org_id"], roles["volunteer"].id, roles["coordinator"].id, sh(3, 1, 10))
    resp = client.get(url(roles["org_id"], extension=extension), headers=roles["headers"][role])
    if role in ("coordinator", "admin"):
        assert resp.status_code == 200
        assert len(resp.get_data()) > 100
        return
    body = resp.get_json()
    if role == "anonymous":
        assert (resp.status_code, body["error"]) == (401, "authorization_required")
    else:
        # a member (even the volunteer whose record it is), another org's coordinator, another district's
        assert (resp.status_code, body["error"]) == (403, "coordinator_required")


def test_a_pending_orgs_applicant_may_not_export(app, client, roles):
    org_id, applicant = make_org(app, status="pending")
    resp = client.get(url(org_id), headers=applicant.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (403, "coordinator_required")
    resp = client.get(url(2000000000), headers=roles["admin"].headers)
    assert (resp.status_code, resp.get_json()["error"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"from={YEAR}-02-30", "from"),
        (f"from={YEAR}/03/01", "from"),
        ("to=yesterday", "to"),
        (f"from={YEAR}-03-02&to={YEAR}-03-01", "from"),
        ("from=1999-12-31", "from"),
        ("to=2101-01-01", "to"),
    ],
)
@pytest.mark.parametrize("extension", ["csv", "xlsx"])
def test_bad_periods_are_422(client, roles, query, field, extension):
    resp = client.get(url(roles["org_id"], query, extension), headers=roles["admin"].headers)
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["error"] == "validation_error"
    assert field in body["errors"]["query"]


# --- XLSX -------------------------------------------------------------------------------------------


def test_xlsx_has_the_same_rows_with_typed_cells(app, client, roles):
    org_id, v, c = roles["org_id"], roles["volunteer"].id, roles["coordinator"].id
    record_id = add_record(app, org_id, v, c, sh(3, 14, 16, 30), activity="=1+1")
    add_record(app, org_id, v, c, sh(3, 15, 9), content="含控制字符\x07的内容")
    resp = client.get(url(org_id, f"from={YEAR}-03-01&to={YEAR}-03-31", "xlsx"), headers=roles["admin"].headers)
    assert resp.status_code == 200
    assert resp.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert resp.headers["Content-Disposition"].endswith('.xlsx"')
    sheet = load_workbook(io.BytesIO(resp.get_data())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == HEADER_ZH
    first = rows[1]
    assert first[0] == record_id
    assert first[2] == "张三丰"
    assert first[4] == "=1+1"  # text, never a formula
    assert sheet.cell(row=2, column=5).data_type == "s"
    assert first[7] == datetime(YEAR, 3, 14, 15, 0) and first[8] == datetime(YEAR, 3, 14, 16, 30)
    assert first[9] == 1.5
    assert rows[2][5] == "含控制字符的内容"
    assert len(rows) == 3


def test_openapi_documents_the_files(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    csv_op = spec["paths"]["/api/v1/orgs/{org_id}/records.csv"]["get"]
    assert "text/csv" in csv_op["responses"]["200"]["content"]
    assert {p["name"] for p in csv_op["parameters"] if p["in"] == "query"} == {"from", "to"}
    xlsx_op = spec["paths"]["/api/v1/orgs/{org_id}/records.xlsx"]["get"]
    assert record_exports.XLSX_TYPE in xlsx_op["responses"]["200"]["content"]
    assert csv_op["responses"]["403"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert {"bearerAuth": []} in csv_op["security"]


def test_the_export_reads_no_record_twice_while_records_arrive(app, client, roles, monkeypatch):
    """Keyset batches: a record written while the file streams is either in it once or not at all."""
    monkeypatch.setattr(record_exports, "BATCH_SIZE", 2)
    org_id, v, c = roles["org_id"], roles["volunteer"].id, roles["coordinator"].id
    first = [add_record(app, org_id, v, c, sh(3, 1, 10 + i)) for i in range(4)]
    resp = client.get(url(org_id), headers=roles["admin"].headers, buffered=False)
    chunks = iter(resp.response)
    received = [next(chunks), next(chunks)]  # the header and the first batch
    late = add_record(app, org_id, v, c, sh(3, 2, 10))
    received += list(chunks)
    rows = list(csv.reader(io.StringIO(b"".join(received).decode("utf-8-sig"), newline="")))[1:]
    assert [r[0] for r in rows] == [str(i) for i in [*first, late]]
