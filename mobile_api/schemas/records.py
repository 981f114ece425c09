"""Service records (志愿服务记录) and energy (微能量)."""

from __future__ import annotations

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from app.policy import MAX_BULK_APPROVAL, MAX_HONOR_MINUTES, RECORD_KINDS, RECORD_STATUSES, hours
from app.validators import check_period
from mobile_api.fields import BaseSchema, Id, LocalDate, PageQuery, UTCDateTime


class RecordSchema(BaseSchema):
    id = fields.Integer()
    volunteer_id = fields.Integer()
    posting_id = fields.Integer(allow_none=True)
    claim_id = fields.Integer(allow_none=True)
    org_id = fields.Integer(
        allow_none=True, metadata={"description": "The organisation that records and certifies it (谁组织谁记录)."}
    )
    kind = fields.String(metadata={"enum": list(RECORD_KINDS)})
    status = fields.String(
        metadata={
            "enum": list(RECORD_STATUSES),
            "description": "pending until a second person of the org approves; only recorded ones count.",
        }
    )
    posting_kind = fields.String(allow_none=True)
    activity = fields.String()
    minutes = fields.Integer()
    hours = fields.Method("dump_hours", metadata={"type": "number"})
    started_at = UTCDateTime()
    ended_at = UTCDateTime()
    place = fields.String(allow_none=True)
    content = fields.String(allow_none=True)
    evaluation = fields.String(allow_none=True)
    rating = fields.Integer(allow_none=True)
    recorded_by = fields.Integer(
        allow_none=True, metadata={"description": "Who made the record (null: the scheduler)."}
    )
    approved_by = fields.Integer(
        allow_none=True, metadata={"description": "Who approved or rejected it (or stood behind it when written)."}
    )
    decided_at = UTCDateTime(allow_none=True)
    reject_reason = fields.String(allow_none=True)
    created_at = UTCDateTime()

    def dump_hours(self, record):
        return hours(record.minutes)


class RecordQuerySchema(PageQuery):
    kind = fields.String(load_default=None, validate=validate.OneOf(RECORD_KINDS))
    status = fields.String(load_default=None, validate=validate.OneOf(RECORD_STATUSES))


class RecordBulkApproveSchema(BaseSchema):
    ids = fields.List(
        Id(),
        required=True,
        validate=validate.Length(
            min=1,
            max=MAX_BULK_APPROVAL,
            error=_l("From {min} to {max} ids."),
        ),
        metadata={"description": f"The records to approve, at most {MAX_BULK_APPROVAL}."},
    )


class RecordBulkResultSchema(BaseSchema):
    approved = fields.List(fields.Integer(), required=True, metadata={"description": "Now recorded."})
    skipped = fields.List(
        fields.Integer(),
        required=True,
        metadata={"description": "Not moved: no such record, another org's, not pending, or not yours to approve."},
    )


class RecordMonthSchema(BaseSchema):
    month = fields.String(metadata={"description": "YYYY-MM in the user's time zone"})
    credit_hours = fields.Float()
    honor_hours = fields.Float()
    credit_minutes = fields.Integer()
    honor_minutes = fields.Integer()
    records = fields.Integer()


class RecordSummarySchema(BaseSchema):
    """The recorded hours (what counts), and beside them the minutes still pending approval."""

    credit_hours = fields.Float()
    honor_hours = fields.Float()
    total_hours = fields.Float()
    credit_minutes = fields.Integer()
    honor_minutes = fields.Integer()
    pending_hours = fields.Float(metadata={"description": "Waiting for the org's approval; not counted yet."})
    pending_minutes = fields.Integer()
    records = fields.Integer(metadata={"description": "Recorded records."})
    star_level = fields.Integer()
    by_kind = fields.Dict(keys=fields.String(), values=fields.Float(), metadata={"description": "credit / honor"})
    by_posting_kind = fields.Dict(keys=fields.String(), values=fields.Float())
    by_month = fields.List(fields.Nested(RecordMonthSchema))


class HonorRecordCreateSchema(BaseSchema):
    """Honor hours (荣誉时长) for a volunteer of the org: ``volunteer_id`` (or
    ``user_id``), ``minutes`` (or ``hours``; at most 24 hours a record) and the reason."""

    volunteer_id = Id(metadata={"description": "The volunteer's user id."})
    user_id = Id(load_only=True, metadata={"description": "Same as volunteer_id."})
    minutes = fields.Integer(strict=True, validate=validate.Range(1, MAX_HONOR_MINUTES))
    hours = fields.Float(
        load_only=True, validate=validate.Range(min=0, max=MAX_HONOR_MINUTES / 60, min_inclusive=False), allow_nan=False
    )
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    activity = fields.String(validate=validate.Length(min=1, max=80))
    place = fields.String(validate=validate.Length(max=200))
    started_at = UTCDateTime(load_default=None)
    ended_at = UTCDateTime(load_default=None)

    @validates_schema
    def one_of_each(self, data, **_kwargs):
        if ("volunteer_id" in data) == ("user_id" in data):
            raise ValidationError(gettext("Give volunteer_id."), "volunteer_id")
        if ("minutes" in data) == ("hours" in data):
            raise ValidationError(gettext("Give minutes (or hours)."), "minutes")

    @post_load
    def normalise(self, data, **_kwargs):
        if "user_id" in data:
            data["volunteer_id"] = data.pop("user_id")
        if "hours" in data:
            data["minutes"] = max(1, round(data.pop("hours") * 60))
        return data


class EnergyEntrySchema(BaseSchema):
    id = fields.Integer()
    delta = fields.Integer()
    balance_after = fields.Integer()
    reason = fields.String(
        metadata={"description": "redeem, refund_withdrawn, refund_cancelled, service_hours, wish_confirmed"}
    )
    claim_id = fields.Integer(allow_none=True)
    posting_id = fields.Integer(allow_none=True)
    created_at = UTCDateTime()


class EnergySchema(BaseSchema):
    balance = fields.Integer(required=True)
    items = fields.List(fields.Nested(EnergyEntrySchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class PeriodQuerySchema(BaseSchema):
    """``from`` and ``to``: local days (Asia/Shanghai), both inclusive."""

    first = LocalDate(
        data_key="from", load_default=None, metadata={"description": "YYYY-MM-DD, inclusive; not after `to`."}
    )
    last = LocalDate(data_key="to", load_default=None, metadata={"description": "YYYY-MM-DD, inclusive."})

    @validates_schema
    def in_order(self, data, **_kwargs):
        try:
            check_period(data.get("first"), data.get("last"))
        except ValueError as exc:
            raise ValidationError(str(exc), "from") from exc
