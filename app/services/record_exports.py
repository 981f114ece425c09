"""An org's service records out, for the district office (志愿服务记录导出): CSV and XLSX.

One row per ``recorded`` record (pending and rejected ones are not the org's
record yet, or never) with the fields China's volunteer-service record rules ask
for: the volunteer's number, real name and masked ID number, the activity,
content, place, start, end, hours, credit or honor, evaluation, who recorded
it and when. Times are local (``DEFAULT_TIMEZONE``, Asia/Shanghai) as
``YYYY-MM-DD HH:MM``; a period ``first``–``last`` is local days, inclusive, by
when the service took place (``records.served_at``).

Nothing holds the whole result: records are read in keyset batches of
``BATCH_SIZE`` and each batch is written out before the next is read. The CSV
streams as it is read; the XLSX is written row by row (openpyxl's write-only
mode) to a temporary file, which then streams.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_babel import gettext, lazy_pgettext
from flask_babel import lazy_gettext as _l
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font

from app.clock import local_days, zone
from app.districts import district_name
from app.errors import Forbidden
from app.extensions import db
from app.i18n import current_locale
from app.models import ServiceRecord, User, Volunteer
from app.policy import hours
from app.services.orgs import get_org
from app.services.permissions import Actor
from app.services.records import counted, served_at

BATCH_SIZE = 1000
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TIME_FORMAT = "%Y-%m-%d %H:%M"
_XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm"
_CHUNK = 64 * 1024

# The columns' headers, in order, in the request's language.
COLUMNS = (
    _l("Record no."),
    _l("Volunteer no."),
    _l("Real name"),
    _l("ID number (masked)"),
    _l("Activity"),
    _l("Content"),
    _l("Place"),
    _l("Start"),
    _l("End"),
    _l("Hours"),
    _l("Credit or honor"),
    _l("Evaluation"),
    _l("Recorded by"),
    _l("Recorded at"),
)
KIND_LABELS = {"credit": lazy_pgettext("record kind", "credit"), "honor": lazy_pgettext("record kind", "honor")}
# A spreadsheet reads a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def records_csv(actor: Actor, org_id: int, first: date | None, last: date | None):
    """The CSV (UTF-8 with a BOM, so Excel reads it as UTF-8) as a generator of
    byte chunks, one per batch. Permission is checked now, before the first chunk."""
    batches = _record_batches(actor, org_id, first, last)

    def generate() -> Iterator[bytes]:
        yield "\ufeff".encode() + csv_lines([_headers()])
        for batch in batches:
            yield csv_lines([[csv_cell(value) for value in row] for row in batch])

    return generate()


def records_xlsx(actor: Actor, org_id: int, first: date | None, last: date | None):
    """The XLSX as a generator of byte chunks. Permission is checked now; the
    workbook is written when the first chunk is asked for."""
    batches = _record_batches(actor, org_id, first, last)

    def generate() -> Iterator[bytes]:
        with tempfile.TemporaryFile() as out:
            _write_workbook(out, batches)
            out.seek(0)
            while chunk := out.read(_CHUNK):
                yield chunk

    return generate()


def export_filename(org_id: int, first: date | None, last: date | None, extension: str) -> str:
    period = "-".join(day.isoformat() for day in (first, last) if day is not None)
    return f"records-{org_id}{'-' + period if period else ''}.{extension}"


def _record_batches(actor: Actor, org_id: int, first: date | None, last: date | None):
    """Check that ``actor`` may export the org's records (its coordinators,
    admins), then return a generator of row batches (lists of typed values)."""
    org = get_org(org_id)
    if not actor.manages_org(org.id):
        raise Forbidden("coordinator_required")
    start, end = local_days(first, last)
    where = [ServiceRecord.org_id == org.id, counted()]
    if start is not None:
        where.append(served_at() >= start)
    if end is not None:
        where.append(served_at() < end)
    recorder = so.aliased(User)
    stmt = (
        sa.select(
            ServiceRecord.id,
            Volunteer.volunteer_no,
            sa.func.coalesce(Volunteer.real_name, User.display_name).label("real_name"),
            Volunteer.id_masked,
            ServiceRecord.activity,
            ServiceRecord.content,
            ServiceRecord.place,
            ServiceRecord.started_at,
            ServiceRecord.ended_at,
            ServiceRecord.minutes,
            ServiceRecord.kind,
            ServiceRecord.evaluation,
            recorder.display_name.label("recorded_by"),
            ServiceRecord.created_at,
        )
        .join(User, User.id == ServiceRecord.volunteer_id)
        .outerjoin(Volunteer, Volunteer.user_id == ServiceRecord.volunteer_id)
        .outerjoin(recorder, recorder.id == ServiceRecord.recorded_by)
        .where(*where)
        .order_by(ServiceRecord.id)
        .limit(BATCH_SIZE)
    )
    local_zone = zone()
    locale = current_locale()

    def local(value: datetime | None) -> datetime | None:
        return value.astimezone(local_zone).replace(tzinfo=None) if value is not None else None

    def row(r) -> list:
        return [
            r.id,
            r.volunteer_no,
            r.real_name,
            r.id_masked,
            r.activity,
            r.content,
            district_name(r.place, locale),
            local(r.started_at),
            local(r.ended_at),
            hours(r.minutes),
            str(KIND_LABELS[r.kind]),
            r.evaluation,
            r.recorded_by,
            local(r.created_at),
        ]

    def generate() -> Iterator[list[list]]:
        last_id = 0
        while True:
            rows = db.session.execute(stmt.where(ServiceRecord.id > last_id)).all()
            if rows:
                last_id = rows[-1].id
                yield [row(r) for r in rows]
            if len(rows) < BATCH_SIZE:
                return

    return generate()


def _headers() -> list[str]:
    return [str(column) for column in COLUMNS]


def csv_lines(rows: list[list]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def csv_cell(value) -> str:
    """A value as CSV text: times local ``YYYY-MM-DD HH:MM``; a text a spreadsheet
    would run as a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime(TIME_FORMAT)
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    return str(value)


def _write_workbook(out, batches: Iterator[list[list]]) -> None:
    """Write the sheet row by row (write-only mode keeps no rows in memory).
    Texts are always text cells, so ``=…`` is never a formula; times are
    spreadsheet dates shown as ``YYYY-MM-DD HH:MM``."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(gettext("Service records"))
    bold = Font(bold=True)
    header = []
    for text in _headers():
        cell = WriteOnlyCell(sheet, value=text)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for batch in batches:
        for row in batch:
            sheet.append([_xlsx_cell(sheet, value) for value in row])
    workbook.save(out)


def _xlsx_cell(sheet, value):
    if isinstance(value, datetime):
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = _XLSX_TIME_FORMAT
        return cell
    if isinstance(value, str):
        cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))
        cell.data_type = "s"
        return cell
    return value
