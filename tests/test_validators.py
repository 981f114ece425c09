"""Pure validators: mainland mobile numbers, resident ID numbers, masks."""

from __future__ import annotations

from datetime import date

import pytest

from app.validators import id_check_char, mask_id_number, mask_name, normalize_cn_mobile, validate_id_number
from tests.moments import YEAR

TODAY = date(YEAR, 11, 26)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13812345678", "+8613812345678"),
        ("+8613812345678", "+8613812345678"),
        ("8613812345678", "+8613812345678"),
        ("008613812345678", "+8613812345678"),
        ("+86 138 1234 5678", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        ("  15912345678  ", "+8615912345678"),
        ("17012345678", "+8617012345678"),  # virtual operators are mobile too
        ("19912345678", "+8619912345678"),
    ],
)
def test_mainland_mobiles_become_e164(raw, e164):
    assert normalize_cn_mobile(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "",
        None,
        "   ",
        "12345678901",
        "1381234567",
        "138123456789",
        "+12025550123",
        "+85291234567",
        "+886912345678",
        "02787654321",
        "057487654321",  # a Ningbo landline
        "abcdefghijk",
        "138 1234 567x",
        "1" * 21,
    ],
)
def test_other_numbers_are_refused(raw):
    with pytest.raises(ValueError, match="not a mainland mobile number"):
        normalize_cn_mobile(raw)


def test_check_char_of_the_standard_example():
    # GB 11643-1999's own example.
    assert id_check_char("11010519491231002") == "X"
    assert id_check_char("33020319900101123") == "6"


def test_check_char_covers_every_remainder():
    seen = {id_check_char(f"{n:017d}") for n in range(11000)}
    assert seen == set("10X98765432")


@pytest.mark.parametrize(
    ("raw", "number", "born"),
    [
        ("330203199001011236", "330203199001011236", date(1990, 1, 1)),
        ("11010519491231002X", "11010519491231002X", date(1949, 12, 31)),
        ("11010519491231002x", "11010519491231002X", date(1949, 12, 31)),
        (" 11010519491231002X ", "11010519491231002X", date(1949, 12, 31)),
        ("330203202402290015", "330203202402290015", date(2024, 2, 29)),
        # Full-width input (a Chinese input method) is the same number.
        ("３３０２０３１９９００１０１１２３６", "330203199001011236", date(1990, 1, 1)),
        ("１１０１０５１９４９１２３１００２ｘ", "11010519491231002X", date(1949, 12, 31)),
    ],
)
def test_valid_id_numbers(raw, number, born):
    assert validate_id_number(raw, TODAY) == (number, born)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "must be 18 characters"),
        (None, "must be 18 characters"),
        ("33020319900101123", "must be 18 characters"),
        ("3302031990010112361", "must be 18 characters"),
        ("33020319900101123A", "must be 17 digits followed by a digit or X"),
        ("X30203199001011236", "must be 17 digits followed by a digit or X"),
        ("٣٣0203199001011236", "must be 17 digits followed by a digit or X"),  # Arabic-Indic digits
        ("330203199001011२३६", "must be 17 digits followed by a digit or X"),  # Devanagari digits
        ("030203199001011236", "has an invalid region code"),
        ("330203199002291234", "has an invalid birth date"),  # 1990 is no leap year
        ("330203199000011234", "has an invalid birth date"),
        ("330203199001321234", "has an invalid birth date"),
        ("330203189912311234", "has an invalid birth date"),
        (f"330203{YEAR}11271234", "has an invalid birth date"),  # tomorrow
        ("330203199001011237", "has a wrong check digit"),
        ("110105194912310021", "has a wrong check digit"),
    ],
)
def test_invalid_id_numbers(raw, reason):
    with pytest.raises(ValueError, match=reason):
        validate_id_number(raw, TODAY)


def test_born_today_is_valid():
    first17 = f"330203{YEAR}1126123"
    number = first17 + id_check_char(first17)
    assert validate_id_number(number, TODAY) == (number, TODAY)


def test_mask_id_number():
    assert mask_id_number("330203199001011236") == "3302**********1236"
    assert mask_id_number("11010519491231002X") == "1101**********002X"


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三", "张*"), ("欧阳娜娜", "欧***"), ("李", "*"), (" 王小明 ", "王**"), ("", ""), (None, None)],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked
