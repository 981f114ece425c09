"""The skills vocabulary (技能)."""

from __future__ import annotations

from marshmallow import fields

from mobile_api.fields import BaseSchema


class SkillSchema(BaseSchema):
    code = fields.String(metadata={"description": "What a volunteer's skills hold, e.g. elderly."})
    name_zh = fields.String(metadata={"example": "助老"})
    name_en = fields.String(metadata={"example": "Elderly care"})
