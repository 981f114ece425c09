"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from flask import current_app, jsonify
from flask_smorest import Blueprint

from app.doctor import readiness
from app.errors import error_response
from mobile_api.schemas import HealthSchema, ReadinessSchema

blp = Blueprint("health", __name__, url_prefix="/", description="Health probes")
log = logging.getLogger(__name__)


@blp.route("/healthz")
@blp.response(200, HealthSchema)
@blp.doc(security=[])
def healthz():
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, description="service_unavailable: the database (or Redis) does not answer; see checks")
@blp.doc(security=[])
def readyz():
    """The database answers (within 2 s), and Redis when the rate limits use it."""
    checks = readiness(current_app._get_current_object())
    if checks["database"] != "ok":
        log.warning("readiness check failed: %s", checks)
        body, code, headers = error_response(503, "service_unavailable", headers={"Retry-After": "5"})
        # A response, not a dict: the 200 schema would drop the envelope's fields.
        return jsonify({**body, "checks": checks}), code, headers
    return {"status": "ok", "checks": checks}
