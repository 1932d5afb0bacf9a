"""Where SQLite's SQL and PostgreSQL's differ: every difference the storage modules meet, here.

The storage modules write one SQL text for both engines, in the portable form where one
exists (`INSERT ... ON CONFLICT DO NOTHING`, `INSERT ... RETURNING id` instead of
lastrowid, both SQLite >= 3.35), with `?` placeholders. SQLite runs that text as it is.
For PostgreSQL, `to_postgres` rewrites it once per distinct text (cached: the statements
are a few hundred constants) into what PostgreSQL accepts:

- `?` -> `$1, $2, ...` (asyncpg's and psycopg's raw placeholders), never inside a string
  literal; `:name` (the digest's named parameters, sqlite3 style) -> `$n` by
  `to_postgres_named`, which also says which name each `$n` binds;
- `a IS NOT b` / `a IS b` with a value on the right (SQLite's NULL-safe comparison) ->
  `IS DISTINCT FROM` / `IS NOT DISTINCT FROM`; `IS [NOT] NULL|TRUE|FALSE` stay;
- `INDEXED BY name`: a SQLite planner pin (digest queries, the triage list) -> dropped; the
  PostgreSQL planner chooses on statistics, and has the same indexes (storage/migrations/pg);
- `json_extract(column, '$.key')` -> `(column::json ->> 'key')`: JSON is stored as text on
  both engines, so PostgreSQL casts it where a query reads into it;
- `group_concat([DISTINCT] x[, sep])` -> `string_agg([DISTINCT] CAST(x AS TEXT), sep or ',')`
  (for a simple x: a column or an expression without parentheses or commas);
- `INSERT OR IGNORE INTO ...` -> `INSERT INTO ... ON CONFLICT DO NOTHING`, for modules not
  yet rewritten to the portable form;
- `/* FOR UPDATE OF o SKIP LOCKED */` -> the clause itself: a work queue's claim (the
  outbox) written once; SQLite reads a comment (its one writer needs no row locks),
  PostgreSQL locks the rows it returns and skips those another instance is claiming.

Differences no rewrite can hide, handled where they arise: NULLs sort first in SQLite and
last in PostgreSQL (a query whose order shows says `x IS NOT NULL, x`); text compares
byte-wise in SQLite and by the database's collation in PostgreSQL (create it with
`LC_COLLATE 'C'`, as the project's servers are, so codes and timestamps sort the same);
`sum()` of a BIGINT column (the ids) is numeric in PostgreSQL (Decimal in Python).

Anything else that differs is kept in the migrations (storage/migrations/pg: identity
columns, DOUBLE PRECISION, no WITHOUT ROWID), not in the modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)
_JSON_EXTRACT = re.compile(r"json_extract\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)", re.IGNORECASE)
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_RETURNING = re.compile(r"\sRETURNING\s", re.IGNORECASE)
_ROW_LOCK = re.compile(r"/\*\s*(FOR\s+UPDATE\b[^*]*?\bSKIP\s+LOCKED)\s*\*/", re.IGNORECASE)
_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES|SHOW|EXPLAIN)\b", re.IGNORECASE)
_IS_NOT_VALUE = re.compile(r"\bIS\s+NOT\s+(?!NULL\b|TRUE\b|FALSE\b|DISTINCT\b|UNKNOWN\b)", re.IGNORECASE)
_IS_VALUE = re.compile(r"\bIS\s+(?!NOT\b|NULL\b|TRUE\b|FALSE\b|DISTINCT\b|UNKNOWN\b)", re.IGNORECASE)
_GROUP_CONCAT = re.compile(
    r"\bgroup_concat\(\s*(DISTINCT\s+)?([^(),']+?)\s*(?:,\s*('(?:[^']|'')*'))?\s*\)", re.IGNORECASE
)
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class Statement:
    """One storage statement as PostgreSQL runs it."""

    sql: str
    params: int  # how many `$n` it binds
    returns_rows: bool  # SELECT or ... RETURNING: fetched; otherwise executed for its row count


@lru_cache(maxsize=4096)
def to_postgres(sql: str) -> Statement:
    text, count = _placeholders(_rewrite(sql))
    return Statement(text, count, _returns_rows(text))


@lru_cache(maxsize=1024)
def to_postgres_named(sql: str) -> tuple[Statement, tuple[str, ...]]:
    """A statement with sqlite3's `:name` parameters: PostgreSQL's text with `$n` in their
    place (a name used twice binds one `$n`), and the names in `$n` order, so the caller
    turns its dict into the positional list PostgreSQL takes."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _outside_quotes(_rewrite(sql), lambda part: _NAMED.sub(number, part))
    return Statement(text, len(names), _returns_rows(text)), tuple(names)


def _rewrite(sql: str) -> str:
    text = _INDEXED_BY.sub("", sql)
    text = _ROW_LOCK.sub(r"\1", text)
    text = _JSON_EXTRACT.sub(r"(\1::json ->> '\2')", text)
    text = _outside_quotes(text, _null_safe)
    text = _GROUP_CONCAT.sub(_string_agg, text)
    if _OR_IGNORE.match(text):
        text = _OR_IGNORE.sub("INSERT INTO", text, count=1)
        returning = _RETURNING.search(text)
        if returning:
            text = f"{text[: returning.start()]} ON CONFLICT DO NOTHING{text[returning.start() :]}"
        else:
            text = text.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return text


def _string_agg(match: re.Match[str]) -> str:
    distinct, value, separator = match.group(1) or "", match.group(2), match.group(3) or "','"
    return f"string_agg({distinct}CAST({value} AS TEXT), {separator})"


def _returns_rows(text: str) -> bool:
    return bool(_ROWS.match(text) or _RETURNING.search(text))


def _null_safe(part: str) -> str:
    part = _IS_NOT_VALUE.sub("IS DISTINCT FROM ", part)
    return _IS_VALUE.sub("IS NOT DISTINCT FROM ", part)


def _outside_quotes(sql: str, change: Callable[[str], str]) -> str:
    """`change` applied to the text outside quoted literals and identifiers ('...', "...")."""
    out: list[str] = []
    start, quote = 0, None
    for i, char in enumerate(sql):
        if quote is not None:
            if char == quote:
                out.append(sql[start : i + 1])  # a doubled quote ('') closes and reopens: same result
                start, quote = i + 1, None
        elif char in ("'", '"'):
            out.append(change(sql[start:i]))
            start, quote = i, char
    out.append(sql[start:] if quote is not None else change(sql[start:]))
    return "".join(out)


def _placeholders(sql: str) -> tuple[str, int]:
    """`?` -> `$n` outside quoted literals and identifiers ('...', "...")."""
    count = 0

    def number(part: str) -> str:
        nonlocal count
        pieces = part.split("?")
        out = [pieces[0]]
        for piece in pieces[1:]:
            count += 1
            out.append(f"${count}{piece}")
        return "".join(out)

    return _outside_quotes(sql, number), count
