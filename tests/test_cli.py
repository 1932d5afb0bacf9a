"""The command line as a newcomer and an operator meet it: real processes, real files."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli_environment(tmp_path: Path, **env: str) -> dict[str, str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WHATSAPP_", "DIGEST_", "SMTP_"))
    }
    environment.update({"DATABASE_PATH": str(tmp_path / "cli.db"), **env})
    return environment


def run_cli(args: list[str], tmp_path: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_environment(tmp_path, **env),
        timeout=60,
    )


def test_run_without_credentials_starts_the_terminal_chat(tmp_path):
    """`suarawarga run` on a fresh machine: one line about it, then the bot talks."""
    result = run_cli(["run"], tmp_path, stdin="1\n/lapor\n")
    assert result.returncode == 0, result.stderr
    notice = [line for line in result.stderr.splitlines() if "terminal chat" in line]
    assert len(notice) == 1
    assert "pemberitahuan privasi" in result.stdout
    assert "Ceritakan masalahnya" in result.stdout


def test_scripted_terminal_chat_saves_a_report_and_exits_at_end_of_input(tmp_path):
    script = (
        "\n".join(
            [
                "1",  # Setuju
                "/lapor",
                "Lampu PJU di jalan desa Sukomoro mati sudah dua minggu, gelap sekali kalau malam",
                "1",  # Ya, benar
                "Sukomoro",  # typed area name
                "1",  # Lewati (photo)
                "2",  # Anonim
                "1",  # Ya, kirim
            ]
        )
        + "\n"
    )
    result = run_cli(["chat", "--user", "tester"], tmp_path, stdin=script)
    assert result.returncode == 0, result.stderr
    assert "laporan Anda sudah kami terima" in result.stdout
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        rows = conn.execute("SELECT pillar, area, anonymous, channel FROM submissions").fetchall()
    assert rows == [("living", "Sukomoro", 1, "terminal")]


def test_invalid_configuration_exits_2_naming_each_bad_key(tmp_path):
    result = run_cli(
        ["run"],
        tmp_path,
        TIMEZONE="Asia/Atlantis",
        TELEGRAM_BOT_TOKEN="not-a-token",
        OFFICIALS="bob",
        DIGEST_EMAILS="nobody",
    )
    assert result.returncode == 2
    for key in ("TIMEZONE", "TELEGRAM_BOT_TOKEN", "OFFICIALS", "DIGEST_EMAILS"):
        assert key in result.stderr
    assert "Traceback" not in result.stderr
    assert "not-a-token" not in result.stderr  # a mistyped secret is not echoed


def test_backup_of_a_live_database_while_writing(tmp_path):
    """`suarawarga backup` copies a consistent snapshot while another process writes."""
    db = tmp_path / "cli.db"
    run_cli(["chat"], tmp_path, stdin="1\n")  # creates and migrates the database
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sqlite3,sys\n"
                f"c=sqlite3.connect({str(db)!r}, timeout=30)\n"
                "c.execute('CREATE TABLE IF NOT EXISTS t(x)')\n"
                "for i in range(3000):\n"
                "    c.execute('INSERT INTO t VALUES (?)', (i,)); c.commit()\n"
            ),
        ]
    )
    try:
        result = run_cli(["backup", str(tmp_path / "copy.db")], tmp_path)
    finally:
        writer.wait(timeout=60)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
    again = run_cli(["backup", str(tmp_path / "copy.db")], tmp_path)
    assert again.returncode != 0 and "exists" in again.stderr


def test_a_broken_rules_file_stops_start_up_with_its_line(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("[governance.x]\nkeywords = 5\n", encoding="utf-8")
    result = run_cli(["chat"], tmp_path, RULES_PATH=str(rules))
    assert result.returncode == 1
    assert "RULES_PATH" in result.stderr and "line 2" in result.stderr
    assert "Traceback" not in result.stderr


def _one_line_exit_2(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    # Log lines (timestamped) are the log's business; what the operator is told is one line.
    lines = [line for line in result.stderr.strip().splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_default_language_without_a_catalogue_is_one_line(tmp_path):
    _one_line_exit_2(run_cli(["chat"], tmp_path, DEFAULT_LANGUAGE="fr"), "DEFAULT_LANGUAGE", "fr", "id")


def test_a_database_path_that_cannot_be_written_is_one_line(tmp_path):
    """A folder that is a file, a read-only file system: as root too (chmod does not stop root)."""
    (tmp_path / "notes.txt").write_text("x")
    for where in (
        tmp_path / "notes.txt" / "suarawarga.db",
        Path("/proc/suarawarga-test/x.db"),
        Path("/proc/self/x.db"),
        tmp_path,
    ):
        result = run_cli(["chat"], tmp_path, stdin="1\n", DATABASE_PATH=str(where))
        _one_line_exit_2(result, "DATABASE_PATH", str(where))


def test_backup_refuses_when_there_is_no_database(tmp_path):
    """A mistyped DATABASE_PATH is not 'backed up' as a new, empty database."""
    result = run_cli(["backup", str(tmp_path / "copy.db")], tmp_path, DATABASE_PATH=str(tmp_path / "typo.db"))
    _one_line_exit_2(result, "no database", "typo.db")
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "copy.db").exists()
    (tmp_path / "notes.txt").write_text("not a database")
    result = run_cli(["backup", str(tmp_path / "copy.db")], tmp_path, DATABASE_PATH=str(tmp_path / "notes.txt"))
    _one_line_exit_2(result, "notes.txt")
    assert not (tmp_path / "copy.db").exists()


def test_backup_into_a_missing_folder_is_one_line(tmp_path):
    run_cli(["chat"], tmp_path, stdin="1\n")
    _one_line_exit_2(run_cli(["backup", "/nonexistent/dir/x.db"], tmp_path), "/nonexistent/dir")


def test_export_into_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    run_cli(["chat"], tmp_path, stdin="1\n")
    result = run_cli(["export", "--format", "csv", "--out", "/proc/aspirasi.csv"], tmp_path)
    _one_line_exit_2(result, "/proc")
