"""Pure validators for Chinese mobile numbers and resident ID numbers."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import phonenumbers
from flask_babel import lazy_gettext as _l


def as_json_schema_reads(pattern: str) -> re.Pattern:
    """``pattern`` compiled to match as a JSON Schema ``pattern`` does (searched, with a
    closing ``$`` the end of the text: Python's ``$`` also matches before a final newline)."""
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern)


def _class_of(chars: list[str]) -> str:
    """A regex character class body naming ``chars``, in runs, each as a ``\\u`` escape of
    four hex digits such as ``\\u3000`` (read alike by Python's re and by ECMAScript,
    which JSON Schema patterns are)."""
    codes = sorted(ord(char) for char in chars)
    runs: list[list[int]] = []
    for code in codes:
        if runs and code == runs[-1][1] + 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in runs)


# White space as str.strip() and str.isspace() read it, spelled out: a pattern's \s is
# not the same set in Python and in ECMAScript (U+001C-U+001F, U+FEFF), so a pattern
# that relies on it says one thing to a client and another to the server.
WHITESPACE = _class_of([chr(code) for code in range(0x3001) if chr(code).isspace()])
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"  # ISO 7064 MOD 11-2, indexed by the weighted sum mod 11
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
# What a client may send for an ID number, as the OpenAPI document states it: 18 characters,
# the first a digit 1-9, then 16 digits, then a digit or X; digits ASCII or full width, x in
# either case, spaces around. (The birth date in it and the check digit are relations the
# pattern cannot state: validate_id_number checks them.)
ID_NUMBER_PATTERN = f"^[{WHITESPACE}]*[1-9１-９][0-9０-９]{{16}}[0-9０-９XxＸｘ][{WHITESPACE}]*$"
# The characters allowed, checked before the region code (which says why a leading 0 is wrong).
_ID_INPUT = as_json_schema_reads(f"^[{WHITESPACE}]*[0-9０-９]{{17}}[0-9０-９XxＸｘ][{WHITESPACE}]*$")


def _digits_spelled(pattern: str) -> str:
    """``pattern`` (of digits: literals, ``\\d``, classes, groups, alternation and counts) with
    each digit in ASCII or full width (a Chinese input method's ０-９) and any spaces or
    hyphens after it."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("\\d", i):
            body, i = "0-9", i + 2
        elif char == "[":
            end = pattern.index("]", i)
            body, i = pattern[i + 1 : end], end + 1
        elif char == "{":  # a count: copied as it is
            end = pattern.index("}", i) + 1
            out.append(pattern[i:end])
            i = end
            continue
        elif char.isdigit():
            body, i = char, i + 1
        else:
            out.append(char)
            i += 1
            continue
        if not re.fullmatch(r"[0-9-]+", body):
            raise ValueError(f"not a pattern of digits: {pattern}")
        out.append(f"(?:[{body}{body.translate(_FULL_WIDTH)}][ -]*)")
    return "".join(out)


_FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
# The mainland's mobile numbers as libphonenumber knows them (its metadata for CN: the
# prefixes the operators use, 11 digits), so the rule is the library's, not a copy.
_CN_MOBILE = phonenumbers.PhoneMetadata.metadata_for_region("CN").mobile.national_number_pattern
# What a client may send for a mainland mobile number, as the OpenAPI document states it:
# the 11 digits, optionally after +86, 0086 or 86; ASCII or full-width digits (and ＋);
# spaces or hyphens between them (as a phone shows and a user pastes a number), and
# spaces before. Nothing else: no brackets, letters or other countries.
MOBILE_INPUT_PATTERN = "^ *(?:(?:[+＋]|[0０]{2})?[8８][6６][ -]*)?(?:" + _digits_spelled(_CN_MOBILE) + ")$"
_MOBILE_INPUT = as_json_schema_reads(MOBILE_INPUT_PATTERN)
_NOT_DIGITS = re.compile(r"[^0-9]")


def normalize_cn_mobile(raw: str) -> str:
    """Return a mainland mobile number as E.164 (+8613812345678) or raise ValueError.

    Accepts exactly :data:`MOBILE_INPUT_PATTERN` (searched as a JSON Schema ``pattern`` is)."""
    if not isinstance(raw, str) or not _MOBILE_INPUT.search(raw):
        raise ValueError("not a mainland mobile number")
    digits = _NOT_DIGITS.sub("", unicodedata.normalize("NFKC", raw))
    return "+86" + digits[-11:]


def check_period(first: date | None, last: date | None) -> None:
    """A period a client names, ``from`` to ``to`` (local days, both inclusive): ``from``
    may not be after ``to``. The one statement of the rule, for the query periods and the
    certificate's (where ``to`` is today when left out). Raises ValueError."""
    if first is not None and last is not None and first > last:
        raise ValueError(_l("from must not be after to."))


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
    if not _ID_SHAPE.fullmatch(text) or not _ID_INPUT.search(raw or ""):
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
