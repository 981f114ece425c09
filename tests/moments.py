"""Moments the tests freeze the clock at, built from the clock: never a date that passes.

``YEAR`` is next year by the app's clock, and ``CLOCK_SHIFT_DAYS`` moves it as it
moves the app's clock (``CLOCK_SHIFT_DAYS=365 make test`` runs the suite a year
ahead). A moment named by its month and day in that year —
``datetime(YEAR, 3, 2, 2, 0, tzinfo=UTC)``, ``f"{YEAR}-03-02"`` — always lies
ahead of the real time, whenever the suite runs, and keeps what the test is about
(the end of a month, a night in Ningbo, a period of a few days). Weekdays move with
the year: a test that counts them asks :func:`monday_on_or_after`.
"""

from __future__ import annotations

from datetime import date, timedelta

from app import clock

YEAR = clock.utcnow().year + 1


def monday_on_or_after(day: date) -> date:
    """The first Monday on or after ``day``."""
    return day + timedelta(days=-day.weekday() % 7)
