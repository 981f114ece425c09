"""Liveness and readiness probes."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask_smorest import Blueprint
from werkzeug.exceptions import ServiceUnavailable

from app.extensions import db
from mobile_api.schemas import HealthSchema

blp = Blueprint("health", __name__, url_prefix="/", description="Health probes")
log = logging.getLogger(__name__)


@blp.route("/healthz")
@blp.response(200, HealthSchema)
def healthz():
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, HealthSchema)
@blp.alt_response(503, description="The database does not answer")
def readyz():
    """The database answers."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness check failed", exc_info=True)
        db.session.rollback()
        # Raised, not returned: a returned body would be dumped through HealthSchema.
        raise ServiceUnavailable() from None
    return {"status": "ok"}
