"""storage.sql_split: statement boundaries agree with SQLite's own sqlite3_complete()."""

from __future__ import annotations

import random
import sqlite3

import pytest

from objectd.storage.sql_split import split_statements, unquote_identifier

_FRAGMENTS = [
    "SELECT 1",
    "SELECT 'a;b'",
    "SELECT 'it''s; ok'",
    'SELECT "col;umn" FROM "t;"',
    "SELECT `x;y`",
    "SELECT [a;b]",
    "SELECT 1 -- trailing; comment\n",
    "SELECT /* ; */ 2",
    "INSERT INTO t VALUES (?, :a, @b, $c, ?7)",
    "CREATE TABLE trigger_like (a)",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 'end;'; END",
    "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = CASE WHEN 1 THEN 2 END; END",
    "create trigger if not exists tr before delete on t begin delete from u; end",
    "EXPLAIN CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
    "EXPLAIN QUERY PLAN SELECT 1",
    "SELECT end FROM t",
    "SELECT x'00ff'",
    "SELECT 1.5e3, .5, 0x1F",
]
_SEPARATORS = [";", "; ", ";\n", "; -- c;\n", "; /* ; */ ", ";\t"]


def _reference_boundaries(text: str) -> list[int]:
    """End offsets of statements, found with sqlite3.complete_statement itself."""
    ends, start = [], 0
    for position, char in enumerate(text):
        if char == ";" and sqlite3.complete_statement(text[start : position + 1]):
            ends.append(position + 1)
            start = position + 1
    return ends


def test_boundaries_match_sqlite3_complete() -> None:
    rng = random.Random(20240601)
    for _ in range(300):
        parts = rng.choices(_FRAGMENTS, k=rng.randint(1, 5))
        text = "".join(part + rng.choice(_SEPARATORS) for part in parts)
        statements, tail = split_statements(text)
        ends, offset = [], 0
        for statement in statements:
            offset += len(statement.text)
            ends.append(offset)
        assert "".join(s.text for s in statements) + tail == text
        assert ends == _reference_boundaries(text), text
        assert len(statements) == len(parts)


def test_unterminated_final_statement_is_kept_whole() -> None:
    statements, tail = split_statements(
        "SELECT 1; CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 2;"
    )
    assert [s.keyword for s in statements] == ["SELECT", "CREATE"]
    assert tail == ""


def test_statement_facts() -> None:
    statements, _ = split_statements(
        '/* c */ select 1; PRAGMA main.Foreign_Keys = ON; pragma "table_info"(t);'
        "INSERT INTO t VALUES (:v); ALTER TABLE rename RENAME TO [new name];"
        "ALTER TABLE t RENAME COLUMN a TO b; SELECT RtreeCheck('r'); SELECT '?', \"?\" -- ?\n"
    )
    assert [s.keyword for s in statements] == [
        "SELECT", "PRAGMA", "PRAGMA", "INSERT", "ALTER", "ALTER", "SELECT", "SELECT",
    ]  # fmt: skip
    assert [s.pragma for s in statements[1:3]] == ["foreign_keys", "table_info"]
    assert [s.has_parameters for s in statements] == [
        False, False, False, True, False, False, False, False,
    ]  # fmt: skip
    assert [s.rename_target for s in statements[4:6]] == ["new name", None]
    assert [s.calls_rtreecheck for s in statements[5:7]] == [False, True]


@pytest.mark.parametrize(
    ("token", "name"),
    [('"a""b"', 'a"b'), ("[a b]", "a b"), ("`a``b`", "a`b"), ("'a''b'", "a'b"), ("ab", "ab")],
)
def test_unquote_identifier(token: str, name: str) -> None:
    assert unquote_identifier(token) == name
