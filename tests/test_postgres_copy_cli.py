"""`suarawarga db copy` over the real command line, against the machine's PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from bot.app import open_services
from tests.harness import Resident
from tests.scenarios import ROAD


def _cli(*args: str, database: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_PATH": database}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=120)


async def test_db_copy_moves_the_sqlite_database_and_back(make_settings, pg_url, tmp_path):
    """A regency's database goes to PostgreSQL and comes back with the same rows; a target
    that already holds data is refused with one line."""
    settings = make_settings()
    async with open_services(settings) as services:
        sari = Resident(services.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)

    there = _cli("db", "copy", "--to", pg_url, database=str(settings.database_path))
    assert there.returncode == 0, there.stderr
    assert "counts and checksums match" in there.stdout

    back = tmp_path / "back.db"
    again = _cli("db", "copy", "--from", pg_url, database=str(back))
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(back) as conn:
        assert conn.execute("SELECT code FROM submissions").fetchall() == [(code.replace("-", ""),)]

    refused = _cli("db", "copy", "--to", pg_url, database=str(settings.database_path))
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
