"""The skills vocabulary (技能) and the districts (区县): codes with the names people read."""

from __future__ import annotations

from marshmallow import fields

from mobile_api.fields import BaseSchema


class SkillSchema(BaseSchema):
    code = fields.String(metadata={"description": "What a volunteer's skills hold, e.g. elderly."})
    name_zh = fields.String(metadata={"example": "助老"})
    name_en = fields.String(metadata={"example": "Elderly care"})


class DistrictSchema(BaseSchema):
    code = fields.String(metadata={"description": "What postings, orgs and volunteers hold, e.g. haishu."})
    name_zh = fields.String(metadata={"example": "海曙区"})
    name_en = fields.String(metadata={"example": "Haishu District"})
