"""The districts (区县): the codes postings, orgs and volunteers hold, with their names."""

from __future__ import annotations

from flask_smorest import Blueprint

from app.districts import districts
from mobile_api.fields import page_of
from mobile_api.schemas import DistrictSchema

blp = Blueprint("districts", __name__, url_prefix="/api/v1/districts", description="The districts")
DistrictPageSchema = page_of(DistrictSchema, "DistrictPage")


@blp.route("", methods=["GET"])
@blp.response(200, DistrictPageSchema)
@blp.doc(security=[])
def list_districts():
    """Every district, in one page: the codes a posting, org or volunteer names, with the names people read (public)."""
    return {"items": districts().items, "next_cursor": None}
