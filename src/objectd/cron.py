"""Cron expressions as Cloudflare's Cron Triggers write them (``[triggers] crons``).

Cloudflare takes five fields (minute, hour, day of month, month, day of week) with
the Quartz-like extensions ``L`` (last day of the month; ``5L`` the last Thursday),
``LW`` (last weekday of the month), ``#`` (``MON#2``: the second Monday), ``?`` (no
specific value) and case-insensitive names (``JAN``, ``fri``), always in UTC.  Its day
of week counts as Quartz does: 1-7 with **1 = Sunday** (``0 17 * * 1`` is 5 PM on
Sunday), where Unix cron counts 0-6 from Sunday.

Matching is cronsim's (a small, dependency-free library that Healthchecks.io runs
for every check): :class:`CronExpression` rewrites the day-of-week field into Unix
numbering (and ``?`` into ``*``, names followed by ``L`` into numbers) and hands the
expression to it.  When both day fields are restricted a day matches either of them,
as in Unix cron.  What cronsim does not offer is refused with a message that says so:
``15W`` (the weekday nearest the 15th), and ``L`` alone as a day of week.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

__all__ = ["CronExpression"]

_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# One day-of-week term: a day or a range of days, then ``L`` or ``#n``, then a step.
_DAY = r"[0-9]+|[A-Z]{3}"
_DOW_TERM = re.compile(rf"(?P<a>{_DAY})(?:-(?P<b>{_DAY}))?(?P<tail>L|#[0-9]+)?(?P<step>/[0-9]+)?")
_NEAREST_WEEKDAY = re.compile(r"[0-9]+W")
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # any time: only the parse is wanted


class CronExpression:
    """One cron trigger: its text as written and the times it matches (UTC minutes)."""

    __slots__ = ("_unix", "text")

    def __init__(self, text: str) -> None:
        """Parse ``text``; a :class:`ValueError` says what is wrong with it."""
        self.text = text
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(
                f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
            )
        fields = [field.upper() for field in fields]
        if _NEAREST_WEEKDAY.search(fields[2]):
            raise ValueError(
                f"day of month {fields[2]!r}: the nearest weekday (nW) is not supported; "
                "L (the last day) and LW (the last weekday) are"
            )
        if fields[2] == "?":
            fields[2] = "*"
        fields[4] = _unix_days(fields[4])
        self._unix = " ".join(fields)
        try:
            CronSim(self._unix, _EPOCH)
        except CronSimError as exc:  # "Bad minute", "Bad day-of-week", ...
            raise ValueError(str(exc).lower().replace("bad ", "invalid ", 1)) from None

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (an aware datetime)."""
        return next(CronSim(self._unix, moment.astimezone(UTC)))

    def __repr__(self) -> str:
        return f"CronExpression({self.text!r})"


def _unix_days(field: str) -> str:
    """The day-of-week field in Unix numbering (0 = Sunday), from Cloudflare's (1 = Sunday)."""
    if field in ("*", "?"):
        return "*"
    terms = []
    for term in field.split(","):
        if term.startswith("*/") or term.startswith("?/"):
            terms.append("*" + term[1:])  # every k-th day from Sunday, in either numbering
            continue
        match = _DOW_TERM.fullmatch(term)
        if match is None:
            raise ValueError(
                f"day of week {term!r}: expected 1-7 (1 = Sunday) or SUN-SAT, with "
                "optional -range, L (last of the month), #n (n-th of the month) or /step"
            )
        days = "-".join(_unix_day(day) for day in (match["a"], match["b"]) if day is not None)
        terms.append(days + (match["tail"] or "") + (match["step"] or ""))
    return ",".join(terms)


def _unix_day(day: str) -> str:
    if day in _DAYS:
        return str(_DAYS.index(day))
    if not day.isdigit() or not 1 <= int(day) <= 7:
        raise ValueError(f"day of week {day!r}: expected 1-7 (1 = Sunday) or SUN-SAT")
    return str(int(day) - 1)
