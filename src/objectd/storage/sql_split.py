"""Splitting the text of one ``sql.exec()`` call into statements, before any runs.

Python's sqlite3 prepares one statement per ``execute`` and does not report where
a statement ends, so objectd finds the boundaries itself, the way SQLite does:

* a lexer that knows SQLite's string literals (``'it''s'``), quoted identifiers
  (``"a"``, `` `a` ``, ``[a]``), ``--`` and ``/* */`` comments, parameters
  (``?``, ``?NNN``, ``:a``, ``@a``, ``$a``) and words;
* the state machine of ``sqlite3_complete()`` (SQLite's ``complete.c``), which
  decides whether a ``;`` ends a statement or is inside a ``CREATE TRIGGER ... BEGIN
  ...; ...; END`` body.

The result also records what objectd needs to know about each statement without
preparing it: its leading keyword, whether it has parameters, the PRAGMA name and
the target of ``ALTER TABLE ... RENAME TO``.  Linear in the length of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Statement", "split_statements", "unquote_identifier"]

_TOKEN = re.compile(
    r"""
      (?P<ws>[ \t\n\f\r\v]+)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<semi>;)
    | (?P<quoted>'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)
    | (?P<param>\?[0-9]*|[:@$][0-9A-Za-z_$\x80-\U0010ffff]+)
    | (?P<word>[A-Za-z_\x80-\U0010ffff][0-9A-Za-z_$\x80-\U0010ffff]*)
    | (?P<other>[0-9][0-9A-Za-z_.]*|.)
    """,
    re.VERBOSE | re.DOTALL,
)

# sqlite3_complete(): token classes and the transition table, copied from complete.c.
_SEMI, _WS, _OTHER, _EXPLAIN, _CREATE, _TEMP, _TRIGGER, _END = range(8)
_START = 1
_TRANSITIONS = (
    # SEMI WS OTHER EXPLAIN CREATE TEMP TRIGGER END
    (1, 0, 2, 3, 4, 2, 2, 2),  # 0 INVALID: nothing seen yet
    (1, 1, 2, 3, 4, 2, 2, 2),  # 1 START: a statement just ended
    (1, 2, 2, 2, 2, 2, 2, 2),  # 2 NORMAL
    (1, 3, 3, 2, 4, 2, 2, 2),  # 3 EXPLAIN [QUERY PLAN]
    (1, 4, 2, 2, 2, 4, 5, 2),  # 4 CREATE [TEMP]
    (6, 5, 5, 5, 5, 5, 5, 5),  # 5 TRIGGER body
    (6, 6, 5, 5, 5, 5, 5, 7),  # 6 ";" inside a trigger body
    (1, 7, 5, 5, 5, 5, 5, 5),  # 7 "; END" inside a trigger: the next ";" ends it
)
_KEYWORD_CLASSES = {
    "EXPLAIN": _EXPLAIN,
    "CREATE": _CREATE,
    "TEMP": _TEMP,
    "TEMPORARY": _TEMP,
    "TRIGGER": _TRIGGER,
    "END": _END,
}


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a ``sql.exec()`` text, as far as objectd needs to know it."""

    text: str  # from the end of the previous statement through this one's ";"
    keyword: str  # the first word, upper-cased; "" when it does not start with a word
    has_parameters: bool
    pragma: str | None  # lower-cased PRAGMA name (schema prefix dropped)
    rename_target: str | None  # the new name in ALTER TABLE ... RENAME TO <name>
    calls_rtreecheck: bool  # rtreecheck() opens its own transaction unless one is open
    # SELECT count(*) ... without WHERE: SQLite may count a table's rows from its b-tree
    # pages (OP_Count) without stepping through them, so rows_read adds the count.
    counts_rows: bool = False


def unquote_identifier(token: str) -> str:
    """``"a""b"`` -> ``a"b``; ``[a]`` and `` `a` `` and ``'a'`` likewise; words unchanged."""
    if len(token) >= 2:
        first, last = token[0], token[-1]
        if first == "[" and last == "]":
            return token[1:-1]
        if first in "\"'`" and last == first:
            return token[1:-1].replace(first * 2, first)
    return token


def _describe(text: str, tokens: list[tuple[str, str]]) -> Statement:
    upper = [value.upper() if kind == "word" else value for kind, value in tokens]
    keyword = upper[0] if tokens[0][0] == "word" else ""
    pragma = None
    if keyword == "PRAGMA" and len(tokens) > 1:
        name_index = 3 if len(tokens) > 3 and tokens[2][1] == "." else 1
        pragma = unquote_identifier(tokens[name_index][1]).lower()
    rename_target = None
    if keyword == "ALTER":
        for i in range(1, len(upper) - 2):
            if upper[i] == "RENAME" and upper[i + 1] == "TO":
                rename_target = unquote_identifier(tokens[i + 2][1])
                break
    return Statement(
        text=text,
        keyword=keyword,
        has_parameters=any(kind == "param" for kind, _ in tokens),
        pragma=pragma,
        rename_target=rename_target,
        calls_rtreecheck="RTREECHECK" in upper,
        counts_rows=upper[:5] == ["SELECT", "COUNT", "(", "*", ")"] and "WHERE" not in upper,
    )


def split_statements(sql: str) -> tuple[list[Statement], str]:
    """The non-empty statements of ``sql`` and the text after the last of them.

    Empty statements (a lone ``;``, or only comments before a ``;``) are skipped, as
    ``sqlite3_prepare`` skips them; the caller decides what a non-blank tail means.
    """
    statements: list[Statement] = []
    tokens: list[tuple[str, str]] = []
    state = 0
    start = 0  # where the current statement's text begins
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind == "ws" or kind == "comment":
            state = _TRANSITIONS[state][_WS]
            continue
        value = match.group()
        if kind == "semi":
            state = _TRANSITIONS[state][_SEMI]
            if state == _START and tokens:
                statements.append(_describe(sql[start : match.end()], tokens))
                tokens = []
                start = match.end()
            continue
        token_class = _KEYWORD_CLASSES.get(value.upper(), _OTHER) if kind == "word" else _OTHER
        state = _TRANSITIONS[state][token_class]
        assert kind is not None
        tokens.append((kind, value))
    if tokens:
        statements.append(_describe(sql[start:], tokens))
        start = len(sql)
    return statements, sql[start:]
