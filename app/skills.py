"""The one vocabulary of skills (技能): what volunteers say they can do.

A volunteer's ``skills`` are codes from it (``PUT /me/volunteer`` refuses any
other); a posting's ``tags`` stay free text and *name* a skill when a tag is the
skill's code or one of its names (``elderly``, ``助老``, ``Elderly care``):
residents tag in Chinese, coordinators' tools may send codes, and both match.

The default list is below. An operator replaces it with ``SKILLS``: a JSON
array of ``{"code", "name_zh", "name_en"}`` objects, given inline or as the
path of a file holding it. Codes are lower-case ASCII (``[a-z][a-z0-9_]*``, at
most 20 characters); names are at most 20 characters, so each can be a tag.
Remove a code only once no volunteer holds it: their next profile update
would be refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from flask import current_app

MAX_LENGTH = 20  # of a code and of a name: the length of a posting tag
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,19}$")


@dataclass(frozen=True)
class Skill:
    code: str
    name_zh: str
    name_en: str


DEFAULT_SKILLS = (
    Skill("elderly", "助老", "Elderly care"),
    Skill("children", "关爱儿童", "Caring for children"),
    Skill("disability", "助残", "Disability support"),
    Skill("medical", "医疗健康", "Medical and health"),
    Skill("repair", "维修", "Repairs"),
    Skill("tutoring", "学业辅导", "Tutoring"),
    Skill("legal", "法律咨询", "Legal advice"),
    Skill("psychology", "心理疏导", "Counselling"),
    Skill("cleaning", "环境清洁", "Clean-ups"),
    Skill("digital", "手机电脑", "Phones and computers"),
    Skill("haircut", "理发", "Haircuts"),
    Skill("driving", "驾驶", "Driving"),
    Skill("first_aid", "急救", "First aid"),
    Skill("translation", "翻译", "Translation"),
    Skill("events", "活动组织", "Organising events"),
)


class Vocabulary:
    """The skills of this deployment, in their configured order."""

    def __init__(self, skills: Iterable[Skill]) -> None:
        self.skills = tuple(skills)

    @cached_property
    def codes(self) -> tuple[str, ...]:
        return tuple(skill.code for skill in self.skills)

    @cached_property
    def _code_of_tag(self) -> dict[str, str]:
        """Every tag that names a skill (its code, its zh-CN and en names) -> the code."""
        named: dict[str, str] = {}
        for skill in self.skills:
            for tag in (skill.code, skill.name_zh, skill.name_en):
                named.setdefault(tag, skill.code)
        return named

    def unknown(self, codes: Iterable[str]) -> list[str]:
        """The values of ``codes`` that are not skill codes, in the order given."""
        known = set(self.codes)
        return [code for code in codes if code not in known]

    def codes_named_by(self, tags: Iterable[str]) -> list[str]:
        """The skills a posting's tags name, each once, in the order of the tags."""
        found = (self._code_of_tag.get(tag) for tag in tags)
        return list(dict.fromkeys(code for code in found if code is not None))

    def tags_naming(self, codes: Iterable[str]) -> dict[str, str]:
        """The tags that name any of ``codes``: tag -> code (for SQL ``tag IN (...)``)."""
        wanted = set(codes)
        return {tag: code for tag, code in self._code_of_tag.items() if code in wanted}


def read_json_array(text: str, setting: str, keys: tuple[str, ...]) -> list[dict]:
    """The JSON array of objects a setting holds inline, or in the file it names;
    each object must have ``keys``. Raises ValueError naming the setting."""
    text = text.strip()
    if not text.startswith("["):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{setting}: neither a JSON array nor a readable file ({exc})") from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{setting}: not valid JSON ({exc})") from None
    shape = "{" + ", ".join(f'"{key}"' for key in keys) + "}"
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{setting}: a JSON array of {shape} objects")
    for item in items:
        missing = [key for key in keys if key not in item]
        if missing:
            raise ValueError(f"{setting}: every item needs {', '.join(keys)} (missing {', '.join(missing)})")
    return items


def load_skills(value: str | Iterable[Skill] | None) -> Vocabulary:
    """The vocabulary from ``SKILLS``: unset -> the default list; else a JSON array
    (or the path of a file holding one). Raises ValueError naming what is wrong."""
    if value is None or value == "":
        return Vocabulary(DEFAULT_SKILLS)
    if isinstance(value, Vocabulary):
        return value
    if not isinstance(value, str):
        return Vocabulary(_checked(list(value)))
    items = read_json_array(value, "SKILLS", ("code", "name_zh", "name_en"))
    return Vocabulary(_checked([Skill(item["code"], item["name_zh"], item["name_en"]) for item in items]))


def _checked(skills: list[Skill]) -> list[Skill]:
    if not skills:
        raise ValueError("SKILLS: the list is empty")
    tags: set[str] = set()
    for skill in skills:
        if not isinstance(skill.code, str) or not _CODE.match(skill.code):
            raise ValueError(f"SKILLS: {skill.code!r} is not a code (lower-case a-z, 0-9, _; at most 20)")
        for name in (skill.name_zh, skill.name_en):
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_LENGTH:
                raise ValueError(f"SKILLS: {skill.code}: each name is 1-{MAX_LENGTH} characters")
        for tag in {skill.code, skill.name_zh, skill.name_en}:
            if tag in tags:
                raise ValueError(f"SKILLS: {tag!r} names two skills")
            tags.add(tag)
    return skills


def vocabulary() -> Vocabulary:
    """The running app's vocabulary (parsed once, in ``create_app``)."""
    return current_app.extensions["skills"]
