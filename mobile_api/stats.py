"""Public figures (数据看板)."""

from __future__ import annotations

from flask_smorest import Blueprint

from app.services import stats
from mobile_api.schemas import StatsQuerySchema, StatsSchema

blp = Blueprint("stats", __name__, url_prefix="/api/v1/stats", description="Public figures")


@blp.route("", methods=["GET"])
@blp.arguments(StatsQuerySchema, location="query")
@blp.response(200, StatsSchema, headers={"Cache-Control": {"schema": {"type": "string"}}})
@blp.doc(security=[])
def city_stats(query):
    """Volunteers, wishes and credit hours, for the city or one district (public)."""
    return stats.city_stats(query["district"]), 200, {"Cache-Control": f"public, max-age={stats.CACHE_SECONDS}"}
