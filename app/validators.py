"""Pure validators for Chinese mobile numbers and resident ID numbers."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import phonenumbers
from flask_babel import lazy_gettext as _l

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"  # ISO 7064 MOD 11-2, indexed by the weighted sum mod 11
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalize_cn_mobile(raw: str) -> str:
    """Return a mainland mobile number as E.164 (+8613812345678) or raise ValueError."""
    text = (raw or "").strip().replace(" ", "").replace("-", "")
    if not text or len(text) > 20:
        raise ValueError("not a mainland mobile number")
    try:
        number = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a mainland mobile number") from exc
    if (
        number.country_code != 86
        or not phonenumbers.is_valid_number(number)
        or phonenumbers.number_type(number) not in _MOBILE_TYPES
    ):
        raise ValueError("not a mainland mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(phone: str | None) -> str | None:
    """138****5678: a mainland number with its middle digits hidden (the national form)."""
    if phone is None:
        return None
    national = phone[3:] if phone.startswith("+86") else phone
    if len(national) < 7:
        return "*" * len(national)
    return national[:3] + "*" * (len(national) - 7) + national[-4:]


def id_check_char(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True))
    return ID_CHECK_CHARS[total % 11]


def validate_id_number(raw: str, today: date) -> tuple[str, date]:
    """Check an 18-character mainland resident ID number.

    Returns the normalised number (ASCII digits, upper-case X) and the birth
    date in it; raises ValueError naming what is wrong: length, birth date or
    check digit (its text in the language in force when shown).
    """
    # NFKC turns the full-width digits of Chinese input methods into ASCII, so
    # one person's number has one spelling (and one keyed hash).
    text = unicodedata.normalize("NFKC", raw or "").strip().upper()
    if len(text) != 18:
        raise ValueError(_l("The ID number must be 18 characters."))
    if not _ID_SHAPE.fullmatch(text):
        raise ValueError(_l("The ID number must be 17 digits followed by a digit or X."))
    if text[0] == "0":
        raise ValueError(_l("The ID number has an invalid region code."))
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError as exc:
        raise ValueError(_l("The ID number has an invalid birth date.")) from exc
    if born > today or born.year < 1900:
        raise ValueError(_l("The ID number has an invalid birth date."))
    if id_check_char(text[:17]) != text[17]:
        raise ValueError(_l("The ID number has a wrong check digit."))
    return text, born


def mask_id_number(number: str) -> str:
    """3302**********123X: the first and last four characters only."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_name(name: str | None) -> str | None:
    """张* / 欧阳** : the family name's first character, the rest masked."""
    if not name:
        return name
    name = name.strip()
    if len(name) == 1:
        return "*"
    return name[0] + "*" * (len(name) - 1)
