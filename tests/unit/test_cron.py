"""objectd.cron: Cloudflare's cron dialect (issue 10 §3), matched by cronsim."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from objectd.cron import CronExpression

MONDAY_NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def next_of(text: str, after: datetime = MONDAY_NOON) -> datetime:
    return CronExpression(text).next_after(after)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Cloudflare's own examples (Cron Triggers, "Supported cron expressions").
        ("*/30 * * * *", datetime(2026, 12, 7, 12, 30, tzinfo=UTC)),
        ("0 17 * * sun", datetime(2026, 12, 13, 17, 0, tzinfo=UTC)),
        ("0 17 * * 1", datetime(2026, 12, 13, 17, 0, tzinfo=UTC)),  # 1 = Sunday
        ("10 7 * * mon-fri", datetime(2026, 12, 8, 7, 10, tzinfo=UTC)),
        ("10 7 * * 2-6", datetime(2026, 12, 8, 7, 10, tzinfo=UTC)),  # Monday-Friday
        ("0 15 1 * *", datetime(2027, 1, 1, 15, 0, tzinfo=UTC)),
        ("0 18 * * 6L", datetime(2026, 12, 25, 18, 0, tzinfo=UTC)),  # last Friday
        ("0 18 * * friL", datetime(2026, 12, 25, 18, 0, tzinfo=UTC)),
        ("59 23 LW * *", datetime(2026, 12, 31, 23, 59, tzinfo=UTC)),  # last weekday
        # The rest of the table: L, #, ?, names of months, Saturday as 7.
        ("0 0 L * *", datetime(2026, 12, 31, 0, 0, tzinfo=UTC)),
        ("0 10 * * MON#2", datetime(2026, 12, 14, 10, 0, tzinfo=UTC)),
        ("0 10 * * 2#2", datetime(2026, 12, 14, 10, 0, tzinfo=UTC)),
        ("0 12 ? * MON", datetime(2026, 12, 14, 12, 0, tzinfo=UTC)),
        ("0 12 * jan,AUG *", datetime(2027, 1, 1, 12, 0, tzinfo=UTC)),
        ("0 0 * * 7", datetime(2026, 12, 12, 0, 0, tzinfo=UTC)),
        ("0 0 * * 1/2", datetime(2026, 12, 8, 0, 0, tzinfo=UTC)),  # Sun, Tue, Thu, Sat
    ],
)
def test_cloudflare_expressions_match_as_documented(text: str, expected: datetime) -> None:
    assert next_of(text) == expected


def test_next_is_strictly_after_and_in_utc() -> None:
    every_five = CronExpression("*/5 * * * *")
    assert every_five.next_after(MONDAY_NOON) == datetime(2026, 12, 7, 12, 5, tzinfo=UTC)
    assert every_five.next_after(MONDAY_NOON.replace(second=59)) == datetime(
        2026, 12, 7, 12, 5, tzinfo=UTC
    )
    assert every_five.next_after(MONDAY_NOON).tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("* * * *", "expected 5 fields"),
        ("0 * * * * *", "expected 5 fields"),  # no seconds field on Cloudflare
        ("@daily", "expected 5 fields"),
        ("61 * * * *", "invalid minute"),
        ("0 24 * * *", "invalid hour"),
        ("0 0 32 * *", "invalid day-of-month"),
        ("0 0 * 13 *", "invalid month"),
        ("0 0 * * 0", "day of week '0': expected 1-7 (1 = Sunday)"),
        ("0 0 * * 8", "day of week '8'"),
        ("0 0 * * L", "day of week 'L'"),
        ("0 0 15W * *", "nearest weekday (nW) is not supported"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        CronExpression(text)
