"""Where SQLite's SQL and PostgreSQL's differ: every difference the storage modules meet, here.

The storage modules write one SQL text for both engines, in the portable form where one
exists (`INSERT ... ON CONFLICT DO NOTHING`, `INSERT ... RETURNING id` instead of
lastrowid, both SQLite >= 3.35), with `?` placeholders. SQLite runs that text as it is.
For PostgreSQL, `to_postgres` rewrites it once per distinct text (cached: the statements
are a few hundred constants) into what PostgreSQL accepts:

- `?` -> `$1, $2, ...` (asyncpg's placeholders), never inside a string literal;
- `INDEXED BY name`: a SQLite planner pin (digest queries, the triage list) -> dropped; the
  PostgreSQL planner chooses on statistics, and has the same indexes (storage/migrations/pg);
- `json_extract(column, '$.key')` -> `(column::json ->> 'key')`: JSON is stored as text on
  both engines, so PostgreSQL casts it where a query reads into it;
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
from dataclasses import dataclass
from functools import lru_cache

_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)
_JSON_EXTRACT = re.compile(r"json_extract\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)", re.IGNORECASE)
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_RETURNING = re.compile(r"\sRETURNING\s", re.IGNORECASE)
_ROW_LOCK = re.compile(r"/\*\s*(FOR\s+UPDATE\b[^*]*?\bSKIP\s+LOCKED)\s*\*/", re.IGNORECASE)
_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES|SHOW|EXPLAIN)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Statement:
    """One storage statement as PostgreSQL runs it."""

    sql: str
    params: int  # how many `$n` it binds
    returns_rows: bool  # SELECT or ... RETURNING: fetched; otherwise executed for its row count


@lru_cache(maxsize=4096)
def to_postgres(sql: str) -> Statement:
    text = _INDEXED_BY.sub("", sql)
    text = _ROW_LOCK.sub(r"\1", text)
    text = _JSON_EXTRACT.sub(r"(\1::json ->> '\2')", text)
    if _OR_IGNORE.match(text):
        text = _OR_IGNORE.sub("INSERT INTO", text, count=1)
        returning = _RETURNING.search(text)
        if returning:
            text = f"{text[: returning.start()]} ON CONFLICT DO NOTHING{text[returning.start() :]}"
        else:
            text = text.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    text, count = _placeholders(text)
    returns_rows = bool(_ROWS.match(text) or _RETURNING.search(text))
    return Statement(text, count, returns_rows)


def _placeholders(sql: str) -> tuple[str, int]:
    """`?` -> `$n` outside quoted literals and identifiers ('...', "...")."""
    out: list[str] = []
    count = 0
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None  # a doubled quote ('') closes and reopens: same result
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            count += 1
            out.append(f"${count}")
            continue
        out.append(char)
    return "".join(out), count
