"""The repository is complete on its own: what the README and the tests point to is in it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def listed_behaviours() -> dict[int, str]:
    text = (REPO / "docs" / "behaviour.md").read_text(encoding="utf-8")
    listing = text.split("\n## 16. The numbered behaviours\n", 1)[1]
    return {int(n): line for n, line in re.findall(r"^(\d+)\. (.+)$", listing, re.MULTILINE)}


def test_behaviour_list_is_numbered_without_gaps() -> None:
    assert list(listed_behaviours()) == list(range(1, 168))


def test_every_number_a_test_cites_is_in_docs_behaviour() -> None:
    cited: dict[int, str] = {}
    for path in (REPO / "tests").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for number in re.findall(r"\bdef test_(\d{1,3})_", text):
            cited.setdefault(int(number), str(path))
        for group in re.findall(r"checklist ((?:\d+)(?:\s*(?:/|,|and|-)\s*\d+)*)", text):
            for number in re.findall(r"\d+", group):
                cited.setdefault(int(number), str(path))
    assert cited, "no test cites a behaviour number"
    missing = {n: where for n, where in cited.items() if n not in listed_behaviours()}
    assert missing == {}


def test_the_readme_links_only_files_of_the_repository() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "spec/do-api.md" not in readme
    for target in re.findall(r"\]\(([^)#:]+)\)", readme):  # relative links only
        assert (REPO / target).exists(), target
