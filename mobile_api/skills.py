"""The skills vocabulary (技能): what volunteers may say they can do."""

from __future__ import annotations

from flask_smorest import Blueprint

from app.skills import vocabulary
from mobile_api.fields import page_of
from mobile_api.schemas import SkillSchema

blp = Blueprint("skills", __name__, url_prefix="/api/v1/skills", description="The skills vocabulary")
SkillPageSchema = page_of(SkillSchema, "SkillPage")


@blp.route("", methods=["GET"])
@blp.response(200, SkillPageSchema)
@blp.doc(security=[])
def list_skills():
    """Every skill, in one page: the codes volunteers' skills hold, with their names (public).

    A posting's tag names a skill when it is the skill's code, `name_zh` or `name_en`."""
    return {"items": vocabulary().skills, "next_cursor": None}
