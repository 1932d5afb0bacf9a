"""Both engines' migrations build the same schema: tables, columns, keys and indexes.

The SQLite schema comes from storage/migrations, PostgreSQL's from storage/migrations/pg;
each is read back from the engine itself (sqlite_master and pragmas; information_schema,
pg_constraint and pg_index), so a migration written for one engine only is caught here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg

from storage.database import migrations
from storage.pg import PgDatabase, pg_migrations

# table -> {"columns": [(name, not null)], "primary": (cols), "unique": {(cols)},
#           "indexes": {name: (cols, unique, partial)}}
Schema = dict[str, dict[str, Any]]


def sqlite_schema(path: Path) -> Schema:
    conn = sqlite3.connect(path)
    try:
        schema: Schema = {}
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for table in tables:
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            # A primary key column is NOT NULL in PostgreSQL; SQLite's INTEGER PRIMARY KEY
            # (the rowid) cannot be NULL either, whatever its notnull flag says.
            columns = [(r[1], bool(r[3]) or r[5] > 0) for r in info]
            primary = tuple(r[1] for r in sorted((r for r in info if r[5] > 0), key=lambda r: r[5]))
            unique: set[tuple[str, ...]] = set()
            indexes: dict[str, tuple[tuple[str, ...], bool, bool]] = {}
            for _, name, is_unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
                if origin == "u":
                    unique.add(cols)
                elif origin == "c":
                    indexes[name] = (cols, bool(is_unique), bool(partial))
            schema[table] = {"columns": columns, "primary": primary, "unique": unique, "indexes": indexes}
        return schema
    finally:
        conn.close()


async def pg_schema(url: str) -> Schema:
    conn = await asyncpg.connect(url)
    try:
        schema: Schema = {}
        tables = [
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        ]
        for table in tables:
            columns = [
                (r[0], r[1] == "NO")
                for r in await conn.fetch(
                    "SELECT column_name, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                    table,
                )
            ]
            constraints = await conn.fetch(
                "SELECT c.contype::text, ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i) "
                "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) "
                "FROM pg_constraint c WHERE c.conrelid = $1::regclass AND c.contype IN ('p', 'u')",
                table,
            )
            primary = next((tuple(r[1]) for r in constraints if r[0] == "p"), ())
            unique = {tuple(r[1]) for r in constraints if r[0] == "u"}
            indexes = {
                r[0]: (tuple(r[1]), r[2], r[3])
                for r in await conn.fetch(
                    "SELECT i.relname, ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) "
                    "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), "
                    "x.indisunique, x.indpred IS NOT NULL "
                    "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                    "WHERE x.indrelid = $1::regclass "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
                    table,
                )
            }
            schema[table] = {"columns": columns, "primary": primary, "unique": unique, "indexes": indexes}
        return schema
    finally:
        await conn.close()


def test_every_migration_has_a_postgresql_twin_of_the_same_number_and_name():
    """storage/migrations/pg holds one file per SQLite migration (PgDatabase refuses to start otherwise)."""
    assert [(n, name) for n, name, _ in pg_migrations()] == [(n, name) for n, name, _ in migrations()]


async def test_both_engines_build_the_same_tables_columns_keys_and_indexes(migrated, pg_url):
    """Same tables; per table the same columns in order with the same nullability, the same
    primary key and unique constraints, and the same indexes by name, columns, uniqueness
    and partiality."""
    async with PgDatabase(pg_url):
        pass
    lite, pg = sqlite_schema(migrated), await pg_schema(pg_url)

    assert sorted(pg) == sorted(lite)
    for table in lite:
        assert pg[table] == lite[table], table


async def test_postgresql_migrations_run_once(pg_url):
    """Opening the database again applies nothing twice and keeps the data."""
    async with PgDatabase(pg_url) as db, db.transaction() as conn:
        await conn.execute(
            "INSERT INTO audit_log (actor, action, created_at) VALUES (?, ?, ?)",
            ("system", "test", "2026-12-03T00:00:00.000000+00:00"),
        )
    async with PgDatabase(pg_url) as db:
        applied = await db.fetchall("SELECT count(*) FROM schema_migrations")
        kept = await db.fetchall("SELECT action FROM audit_log")
    assert applied[0][0] == len(migrations())
    assert [r[0] for r in kept] == ["test"]
