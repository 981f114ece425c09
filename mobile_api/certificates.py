"""Certificates of volunteer service (志愿服务证明) and their public check.

Two blueprints: ``blp`` is the JSON API; ``pages`` serves ``/verify/{code}``,
the one server-rendered HTML page, where a school or an employer lands from the
QR code on a certificate.
"""

from __future__ import annotations

from flask import Blueprint as FlaskBlueprint
from flask import current_app, render_template
from flask_jwt_extended import get_jwt_identity, jwt_required
from flask_smorest import Blueprint

from app.clock import local_date
from app.errors import NotFound, retry_after
from app.extensions import limiter
from app.security import current_actor
from app.services import certificates
from mobile_api.fields import PageQuery, page_of
from mobile_api.schemas import (
    CertificateCreateSchema,
    CertificateSchema,
    CertificateVerificationSchema,
    CertificateVoidSchema,
    verify_url_of,
)

blp = Blueprint(
    "certificates", __name__, url_prefix="/api/v1", description="Certificates of volunteer service (志愿服务证明)"
)
pages = FlaskBlueprint("certificate_pages", __name__)
AUTH = {"security": [{"bearerAuth": []}]}
PUBLIC = {"security": []}
CertificatePage = page_of(CertificateSchema, "CertificatePage")
# The public check's answers may change (a certificate is voided): caches revalidate.
PUBLIC_HEADERS = {"Cache-Control": "no-cache", "X-Robots-Tag": "noindex"}
PAGE_HEADERS = {
    **PUBLIC_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _issue_limit() -> str:
    return current_app.config["RATELIMIT_CERTIFICATE_ISSUE"]


def _verify_limit() -> str:
    return current_app.config["RATELIMIT_VERIFY_IP"]


def _user_key() -> str:
    return f"user:{get_jwt_identity()}"


# Per client IP, one budget for the page and its JSON twin.
verify_rate_limited = limiter.shared_limit(_verify_limit, scope="certificate-verify-ip")


@blp.route("/me/certificates", methods=["POST"])
@jwt_required()
@limiter.limit(_issue_limit, key_func=_user_key)
@blp.arguments(CertificateCreateSchema)
@blp.response(201, CertificateSchema)
@blp.alt_response(403, description="volunteer_required")
@blp.alt_response(409, description="org_not_approved")
@blp.alt_response(422, description="no_records")
@blp.alt_response(429, description="rate_limited")
@blp.doc(**AUTH)
def issue_certificate(body):
    """Issue a certificate over my records with one org in a period (dates in Asia/Shanghai, inclusive)."""
    return certificates.issue_certificate(current_actor(), body["org_id"], body["period_from"], body["period_to"])


@blp.route("/me/certificates", methods=["GET"])
@jwt_required()
@blp.arguments(PageQuery, location="query")
@blp.response(200, CertificatePage)
@blp.doc(**AUTH)
def my_certificates(query):
    """My certificates, newest first."""
    items, next_cursor = certificates.list_my_certificates(
        current_actor(), cursor=query["cursor"], limit=query["limit"]
    )
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/certificates/<int:certificate_id>", methods=["GET"])
@jwt_required()
@blp.response(200, CertificateSchema)
@blp.doc(**AUTH)
def get_certificate(certificate_id):
    """One certificate (its volunteer, the org's coordinators, admins)."""
    return certificates.get_certificate(current_actor(), certificate_id)


@blp.route("/certificates/<int:certificate_id>/pdf", methods=["GET"])
@jwt_required()
@blp.response(
    200,
    {"type": "string", "format": "binary"},
    content_type="application/pdf",
    description="The certificate, A4, in Chinese, with a QR code of its verify URL.",
)
@blp.doc(**AUTH)
def certificate_pdf(certificate_id):
    """The certificate as a PDF (its volunteer, the org's coordinators, admins)."""
    certificate, pdf = certificates.certificate_pdf(current_actor(), certificate_id, verify_url_of)
    return current_app.response_class(
        pdf,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="{certificate.number}.pdf"',
            "Cache-Control": "no-store",
        },
    )


@blp.route("/certificates/<int:certificate_id>/void", methods=["POST"])
@jwt_required()
@blp.arguments(CertificateVoidSchema)
@blp.response(200, CertificateSchema)
@blp.alt_response(403, description="coordinator_required, own_certificate")
@blp.alt_response(409, description="certificate_void")
@blp.doc(**AUTH)
def void_certificate(body, certificate_id):
    """Void a certificate, with a reason (the org's coordinators, admins)."""
    return certificates.void_certificate(current_actor(), certificate_id, body["reason"])


@blp.route("/certificates/verify/<code>", methods=["GET"])
@verify_rate_limited
@blp.response(200, CertificateVerificationSchema)
@blp.alt_response(404, description="not_found: an unknown, altered or forged code")
@blp.alt_response(429, description="rate_limited")
@blp.doc(**PUBLIC)
def verify_certificate(code):
    """Check a certificate by its public code (no token; rate-limited per IP)."""
    return certificates.verify_code(code), 200, PUBLIC_HEADERS


@pages.route("/verify/<code>", methods=["GET"])
@verify_rate_limited
def verify_certificate_page(code):
    """The public check as a small HTML page (the QR code's target)."""
    try:
        certificate = certificates.verify_code(code)
    except NotFound:
        return render_template("certificate_verify.html", certificate=None), 404, PAGE_HEADERS
    facts = CertificateVerificationSchema().dump(certificate)
    page = render_template(
        "certificate_verify.html",
        certificate=facts,
        issued_on=local_date(certificate.issued_at),
        period_from=certificate.period_from,
        period_to=certificate.period_to,
    )
    return page, 200, PAGE_HEADERS


@pages.errorhandler(429)
def verify_page_rate_limited(exc):
    """Too many checks from one address: the page says so, in HTML like the rest."""
    headers = {**PAGE_HEADERS, "Retry-After": retry_after(exc)}
    return render_template("certificate_verify.html", rate_limited=True), 429, headers
