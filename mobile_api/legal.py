"""The privacy policy and terms a user accepts (GET /api/v1/legal)."""

from __future__ import annotations

from flask_smorest import Blueprint

from app.services import accounts
from mobile_api.schemas import LegalSchema

blp = Blueprint("legal", __name__, url_prefix="/api/v1", description="Privacy policy and terms")


@blp.route("/legal", methods=["GET"])
@blp.response(200, LegalSchema)
@blp.doc(security=[])
def get_legal():
    """The current privacy policy and terms: versions and where to read them.

    Registration sends `privacy_version`; when it moves on, signed-in users see
    `consent_required: true` and accept it with `POST /api/v1/me/consents`."""
    return accounts.legal()
