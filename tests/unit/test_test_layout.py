"""The test tree collects as one suite (the README's test command runs it all at once)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test modules by basename (no packages here): two ``test_x.py`` in
    different folders pass when run folder by folder and break collection of the whole."""
    names = Counter(
        path.name for root in ("tests", "examples") for path in (REPO / root).rglob("test_*.py")
    )
    assert [name for name, count in names.items() if count > 1] == []
