"""Certificates of volunteer service (志愿服务证明) and their public check."""

from __future__ import annotations

from marshmallow import fields, validate

from app.models.certificates import CERTIFICATE_STATUSES
from app.policy import ERASED_NAME, hours
from app.validators import mask_name
from mobile_api.fields import BaseSchema, Id, LocalDate, NestedFrom, UTCDateTime
from mobile_api.urls import public_url

VERIFY_PAGE = "certificate_pages.verify_certificate_page"


def verify_url_of(certificate) -> str:
    """The public page that checks ``certificate`` (printed as its QR code)."""
    return public_url(VERIFY_PAGE, code=certificate.code)


class CertificateVolunteerSchema(BaseSchema):
    volunteer_no = fields.String()
    real_name = fields.String()
    id_number_masked = fields.String()


class CertificateOrgSchema(BaseSchema):
    id = fields.Integer()
    name = fields.String()


class _CertificateFacts(BaseSchema):
    """What every view of a certificate states."""

    number = fields.String()
    org = NestedFrom(CertificateOrgSchema, source=lambda c: {"id": c.org_id, "name": c.org_name})
    period_from = fields.Date(data_key="from", metadata={"description": "First day covered (Asia/Shanghai)."})
    period_to = fields.Date(data_key="to", metadata={"description": "Last day covered (Asia/Shanghai)."})
    credit_hours = fields.Method("dump_credit_hours", metadata={"type": "number"})
    honor_hours = fields.Method("dump_honor_hours", metadata={"type": "number"})
    status = fields.String(metadata={"enum": list(CERTIFICATE_STATUSES)})
    issued_at = UTCDateTime()

    def dump_credit_hours(self, certificate):
        return hours(certificate.credit_minutes)

    def dump_honor_hours(self, certificate):
        return hours(certificate.honor_minutes)


class CertificateSchema(_CertificateFacts):
    """A certificate as its volunteer and the org's coordinators see it."""

    id = fields.Integer()
    code = fields.String(metadata={"description": "The public, signed code: /verify/{code}."})
    volunteer = NestedFrom(
        CertificateVolunteerSchema,
        source=lambda c: {"volunteer_no": c.volunteer_no, "real_name": c.real_name, "id_number_masked": c.id_masked},
    )
    records_count = fields.Integer()
    verify_url = fields.Function(verify_url_of, metadata={"type": "string", "format": "uri"})
    voided_at = UTCDateTime(allow_none=True)
    void_reason = fields.String(allow_none=True)


class CertificateCreateSchema(BaseSchema):
    org_id = Id(required=True)
    period_from = LocalDate(
        data_key="from", load_default=None, metadata={"description": "YYYY-MM-DD; absent: since the first record."}
    )
    period_to = LocalDate(data_key="to", load_default=None, metadata={"description": "YYYY-MM-DD; absent: today."})


class CertificateVoidSchema(BaseSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class VerifiedVolunteerSchema(BaseSchema):
    real_name_masked = fields.String()
    volunteer_no = fields.String()


class CertificateVerificationSchema(_CertificateFacts):
    """What the public check shows: the name masked, no ID number."""

    valid = fields.Method("dump_valid", metadata={"type": "boolean"})
    volunteer = NestedFrom(
        VerifiedVolunteerSchema,
        # An erased volunteer's certificate reads 已注销 (nothing to mask).
        source=lambda c: {
            "real_name_masked": c.real_name if c.real_name == ERASED_NAME else mask_name(c.real_name),
            "volunteer_no": c.volunteer_no,
        },
    )

    def dump_valid(self, certificate):
        return certificate.status == "valid"
