"""The reads that used to open the SQLite file, on PostgreSQL (issue 16): the weekly digest's
figures, the desk's overdue list, `rules suggest`, `suarawarga backup`, and exports that
stream. The same rows are seeded into a SQLite file and a PostgreSQL schema with plain SQL
(tests/dbtools.py), and each read must give the same answer on both."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from bot.cli_tagging import rules
from bot.config import Settings
from bot.exports import ExportFilter, export
from handlers.deadlines import DeadlinePolicy, stages_of
from handlers.digest import Period
from storage import export_queries as eq
from storage.database import Database, connect_read, stream, to_db
from storage.deadlines import submission_deadlines
from storage.digest_queries import read_digest_rows
from storage.pg import PgDatabase
from tests import dbtools
from tests.test_cli import run_cli

ZONE = ZoneInfo("Asia/Jakarta")
WEEK = Period.days(date(2026, 11, 23), date(2026, 11, 29), ZONE)
T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # Tuesday of WEEK, 10:00 in Magetan


async def _migrate(target: Path | str) -> None:
    async with PgDatabase(str(target)) if dbtools.is_postgres(target) else Database(target):
        pass


def seed(target: Path | str) -> None:
    """Two residents, a week of submissions (and older ones) with status moves, supports,
    hidden spam and pillar corrections: what the digest, the deadlines and `rules suggest` read."""
    asyncio.run(_migrate(target))
    stamp = to_db(T0 - timedelta(days=30))
    with dbtools.opened(target) as conn:
        conn.executemany(
            "INSERT INTO users (id, channel, platform_id, chat_id, display_name, language, consent_version, "
            "consent_at, created_at) VALUES (?, ?, ?, ?, ?, 'id', '2026-11', ?, ?)",
            [
                (1, "telegram", "501", "501", "Sari", stamp, stamp),
                (2, "whatsapp", "62811", "62811", "Budi", stamp, stamp),
            ],
        )
        plan = [
            # (kind, pillar, status, hidden, supports, days after T0, text)
            ("report", "living", "new", 0, 3, 0, "Jalan berlubang di depan pasar Maospati"),
            ("report", "living", "forwarded", 0, 1, 1, "Lampu jalan mati di desa Bendo sejak lama"),
            ("idea", "economy", "reviewed", 0, 7, 2, "Pasar tani setiap hari Minggu di alun-alun"),
            ("idea", "environment", "in_masterplan", 0, 4, -10, "Bank sampah di setiap RW"),
            ("report", None, "new", 0, 0, 3, "Tidak tahu masuk mana, pokoknya ramai"),
            ("report", "society", "new", 1, 9, 1, "Spam beli pulsa murah"),
            ("report", "governance", "resolved", 0, 2, -20, "Angkot tidak lewat lagi ke Plaosan"),
            # Re-tagged by officials (below): what `rules suggest` learns from.
            ("report", "society", "new", 0, 0, -40, "Anak main mercun di gang sampai malam"),
            ("report", "society", "new", 0, 0, -40, "Mercun meledak dekat rumah warga"),
            ("report", "society", "new", 0, 0, -40, "Jual mercun ke anak kecil di pasar"),
        ]
        for n, (kind, pillar, status, hidden, supports, days, text) in enumerate(plan, start=1):
            at = to_db(T0 + timedelta(days=days))
            conn.execute(
                "INSERT INTO submissions (id, code, user_id, kind, pillar, auto_pillar, subtopic, text, language, "
                "area, channel, status, hidden, supports, anonymous, created_at, updated_at, status_changed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'id', 'Maospati', 'telegram', ?, ?, ?, ?, ?, ?, ?)",
                (
                    n,
                    f"CODE{n:02d}",
                    1 + n % 2,
                    kind,
                    pillar,
                    pillar,
                    None,
                    text,
                    status,
                    hidden,
                    supports,
                    n % 2,
                    at,
                    at,
                    at,
                ),
            )
            conn.execute(
                "INSERT INTO status_history (submission_id, from_status, to_status, actor, created_at) "
                "VALUES (?, NULL, 'new', 'resident', ?)",
                (n, at),
            )
            if status != "new":
                moved = to_db(T0 + timedelta(days=days, hours=5))
                conn.execute(
                    "INSERT INTO status_history (submission_id, from_status, to_status, actor, note, created_at) "
                    "VALUES (?, 'new', ?, 'telegram:900', ?, ?)",
                    (n, status, "Dinas PU" if status == "forwarded" else None, moved),
                )
                conn.execute("UPDATE submissions SET status_changed_at = ? WHERE id = ?", (moved, n))
        for n, who in ((3, 1), (3, 2), (1, 2), (4, 1)):
            conn.execute(
                "INSERT INTO supports (submission_id, user_id, created_at) VALUES (?, ?, ?)",
                (n, who, to_db(T0 + timedelta(days=2))),
            )
        for n, to in ((8, "society"), (9, "society"), (10, "economy"), (10, "society")):
            conn.execute(
                "INSERT INTO pillar_corrections (submission_id, from_pillar, to_pillar, actor_role, created_at) "
                "VALUES (?, NULL, ?, 'official', ?)",
                (n, to, to_db(T0)),
            )


@pytest.fixture
def both(tmp_path: Path, pg_url: str) -> tuple[Path, str]:
    """The same rows in a SQLite file and in a fresh PostgreSQL schema."""
    lite = tmp_path / "suarawarga.db"
    seed(lite)
    seed(pg_url)
    return lite, pg_url


def test_the_digest_reads_the_same_figures_on_both_engines(both):
    """Every figure of the weekly digest (counts, quotes, moves, supports gained, backlog)
    comes out equal from the SQLite file and from PostgreSQL."""
    lite, pg = both
    on_sqlite, on_postgres = read_digest_rows(lite, WEEK), read_digest_rows(pg, WEEK)
    assert on_postgres.current and on_postgres.moves and on_postgres.gains and on_postgres.waiting
    # The group counts compared as sets (their order is the order rows came in); the rest as is.
    for groups in ("current", "previous"):
        assert sorted(getattr(on_postgres, groups), key=repr) == sorted(getattr(on_sqlite, groups), key=repr)
    rest = [f for f in on_sqlite.__dataclass_fields__ if f not in ("current", "previous")]
    assert {f: getattr(on_postgres, f) for f in rest} == {f: getattr(on_sqlite, f) for f in rest}


def test_the_desks_overdue_list_is_the_same_on_both_engines(both):
    """The deadlines the web desk's overdue filter reads (working days, as /status counts them)."""
    policy = DeadlinePolicy.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    results = []
    for target in both:
        conn = connect_read(target)
        try:
            owed = submission_deadlines(
                conn, stages_of(policy, ZONE), policy.calendar.working_days_between, today=date(2026, 12, 20)
            )
        finally:
            conn.close()
        results.append(owed)
    assert results[0] == results[1] and any(d.working_days_late > 0 for d in results[1].values())


def test_rules_suggest_reads_the_bots_postgresql_database(both):
    """Without --db, `rules suggest` reads DATABASE_URL's database, as it reads the file."""
    lite, pg = both
    on_sqlite = CliRunner().invoke(rules, ["suggest", "--db", str(lite)])
    on_postgres = CliRunner().invoke(
        rules, ["suggest"], obj=SimpleNamespace(rules_path=None, database_path=Path("nowhere.db"), database_url=pg)
    )
    assert on_postgres.exit_code == 0, on_postgres.output
    assert on_postgres.output == on_sqlite.output and "mercun" in on_postgres.output


def test_every_export_format_reads_the_same_on_both_engines(both):
    """CSV, JSON lines, GeoJSON and the Markdown annex are byte for byte the same."""
    lite, pg = both
    for fmt in ("csv", "jsonl", "geojson", "markdown"):
        outputs = []
        for target in (lite, pg):
            out = io.BytesIO()
            export(target, fmt, out, ExportFilter(), zone=ZONE)
            outputs.append(out.getvalue())
        assert outputs[0] == outputs[1], fmt
        assert b"CODE" in outputs[1] or b"COD-E" in outputs[1] or fmt == "markdown"


def test_a_long_export_streams_through_a_server_side_cursor(pg_url):
    """On PostgreSQL the row query is a cursor on the server, fetched a batch at a time: while
    the export reads, the server holds the rows, not the bot's memory."""
    seed(pg_url)
    conn = connect_read(pg_url)
    try:
        rows = stream(conn, eq.SELECT_ROW + " FROM submissions s ORDER BY s.id")
        first = next(rows)
        (open_cursors,) = conn.execute("SELECT count(*) FROM pg_cursors WHERE NOT is_holdable").fetchone()
        rest = list(rows)
    finally:
        conn.close()
    assert first[0] == "CODE01" and len(rest) == 9 and open_cursors == 1


def test_backup_on_postgresql_runs_pg_dump(tmp_path, pg_url):
    """`suarawarga backup` with DATABASE_URL: pg_dump's custom format, of the bot's schema."""
    seed(pg_url)
    result = run_cli(["backup", str(tmp_path / "copy.dump")], tmp_path, DATABASE_URL=pg_url)
    assert result.returncode == 0, result.stderr
    assert "pg_dump" in result.stdout and (tmp_path / "copy.dump").is_file()
    listing = subprocess.run(["pg_restore", "--list", str(tmp_path / "copy.dump")], capture_output=True, text=True)
    assert " TABLE DATA " in listing.stdout and " submissions " in listing.stdout


def test_backup_on_postgresql_without_pg_dump_says_what_to_run(tmp_path, pg_url):
    """No pg_dump on PATH: one line naming the command to run instead, never the password."""
    with_password = pg_url.replace("postgres@", "postgres:s3cret@", 1)
    bare = tmp_path / "bin"
    bare.mkdir()
    result = run_cli(
        ["backup", str(tmp_path / "copy.dump")],
        tmp_path,
        DATABASE_URL=with_password,
        PATH=str(bare),
    )
    assert result.returncode == 2
    assert "pg_dump --format=custom" in result.stderr and "s3cret" not in result.stderr + result.stdout
    assert not (tmp_path / "copy.dump").exists()
    assert os.environ.get("PATH")  # the test's own PATH untouched
