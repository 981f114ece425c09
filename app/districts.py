"""The districts (区县) postings, orgs and volunteers name: codes, and the names people read.

A posting, an org or a volunteer holds a district *code* (``haishu``); every
text a person reads — the certificate PDF, the records' CSV and XLSX, push
texts — shows its *name* (海曙区, Haishu District), never the code.
``GET /api/v1/districts`` is the one list.

``DISTRICTS`` configures them: unset, Ningbo's ten districts and counties;
else comma-separated codes, each one this module names
(``haishu,yinzhou``); or, for another city, a JSON array of ``{"code",
"name_zh", "name_en"}`` objects, inline or the path of a file holding one
(the same form as ``SKILLS``). Codes are lower-case ASCII (``[a-z][a-z0-9_]*``,
at most 32 characters). A code without a name stops the app at start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from flask import current_app

from app.i18n import DEFAULT_LOCALE

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_NAME = 40


@dataclass(frozen=True)
class District:
    code: str
    name_zh: str
    name_en: str

    def name(self, locale: str | None) -> str:
        return self.name_en if (locale or DEFAULT_LOCALE).startswith("en") else self.name_zh


# Ningbo's ten districts and counties (宁波市), the default list, in this order.
NINGBO = (
    District("haishu", "海曙区", "Haishu District"),
    District("jiangbei", "江北区", "Jiangbei District"),
    District("beilun", "北仑区", "Beilun District"),
    District("zhenhai", "镇海区", "Zhenhai District"),
    District("yinzhou", "鄞州区", "Yinzhou District"),
    District("fenghua", "奉化区", "Fenghua District"),
    District("yuyao", "余姚市", "Yuyao"),
    District("cixi", "慈溪市", "Cixi"),
    District("ninghai", "宁海县", "Ninghai County"),
    District("xiangshan", "象山县", "Xiangshan County"),
)
NAMED = {district.code: district for district in NINGBO}


class Districts:
    """The districts of this deployment, in their configured order."""

    def __init__(self, districts: Iterable[District]) -> None:
        self.items = tuple(districts)
        self.codes = tuple(d.code for d in self.items)
        self._by_code = {d.code: d for d in self.items}

    def get(self, code: str | None) -> District | None:
        return self._by_code.get(code) if code else None


def load_districts(value: str | Iterable[str] | Districts | None) -> Districts:
    """The districts from ``DISTRICTS`` (see the module's docstring): unset → Ningbo's;
    codes (a comma-separated string or a sequence); or a JSON array of objects
    (inline or a file's path). Raises ValueError naming what is wrong."""
    from app.skills import read_json_array

    if isinstance(value, Districts):
        return value
    if value is None or value == "" or value == ():
        return Districts(NINGBO)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") or "/" in text or text.endswith(".json"):
            items = read_json_array(text, "DISTRICTS", ("code", "name_zh", "name_en"))
            return Districts(_checked([District(i["code"], i["name_zh"], i["name_en"]) for i in items]))
        value = [part.strip() for part in text.split(",") if part.strip()]
    districts = []
    for code in value:
        if code not in NAMED:
            raise ValueError(
                f"DISTRICTS: {code!r} has no name here; give the list as a JSON array of "
                '{"code", "name_zh", "name_en"} objects'
            )
        districts.append(NAMED[code])
    return Districts(_checked(districts))


def _checked(districts: list[District]) -> list[District]:
    if not districts:
        raise ValueError("DISTRICTS: the list is empty")
    seen: set[str] = set()
    for district in districts:
        if not isinstance(district.code, str) or not _CODE.match(district.code):
            raise ValueError(f"DISTRICTS: {district.code!r} is not a code (lower-case a-z, 0-9, _; at most 32)")
        if district.code in seen:
            raise ValueError(f"DISTRICTS: {district.code!r} is listed twice")
        seen.add(district.code)
        for name in (district.name_zh, district.name_en):
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
                raise ValueError(f"DISTRICTS: {district.code}: each name is 1-{MAX_NAME} characters")
    return districts


def districts() -> Districts:
    """The running app's districts (parsed once, in ``create_app``)."""
    return current_app.extensions["districts"]


def district_name(code: str | None, locale: str | None = None) -> str | None:
    """The name people read for a district ``code`` (in ``locale``: zh-CN unless
    ``en``); any other text (an address) comes back as it is."""
    if code is None:
        return None
    district = districts().get(code) or NAMED.get(code)
    return district.name(locale) if district is not None else code
