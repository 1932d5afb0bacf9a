"""Issue 17 in the terminal chat, as real processes on one database: the deadline reminder
and the escalation reach the official's and the coordinator's sessions once each (the daily
run made by separate processes, twice), the resident says "belum" and then "sudah" by
typing (the menu follows the notification, so its buttons are not the last ones shown)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from handlers.deadlines import WorkCalendar
from tests.test_cli import cli_environment, run_cli
from tests.test_terminal import script, submit_report

WIB = ZoneInfo("Asia/Jakarta")
STAFF = {"OFFICIALS": "terminal:petugas", "ESCALATION_CHATS": "terminal:koordinator"}


def run_reminders(tmp_path, at: datetime) -> str:
    code = (
        "import asyncio, datetime\n"
        "from bot.config import load_settings\n"
        "from bot.reminders import run_once\n"
        f"at = datetime.datetime.fromisoformat({at.isoformat()!r})\n"
        "r = asyncio.run(run_once(load_settings(_env_file=None), clock=lambda: at))\n"
        "print(len(r.reminded), len(r.escalated), r.messages)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_environment(tmp_path, **STAFF),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_reminder_escalation_reopen_and_confirmed_close_in_the_terminal(tmp_path):
    code = submit_report(tmp_path)
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        made = datetime.fromisoformat(conn.execute("SELECT created_at FROM submissions").fetchone()[0])
    cal = WorkCalendar()
    due = cal.add_working_days(made.astimezone(WIB).date(), 3)
    eve = due - timedelta(days=1)
    while not cal.is_working_day(eve):
        eve -= timedelta(days=1)
    at = lambda day: datetime(day.year, day.month, day.day, 8, 0, tzinfo=WIB)  # noqa: E731
    assert run_reminders(tmp_path, at(eve)) == "1 0 1"
    assert run_reminders(tmp_path, at(eve)) == "0 0 0"  # a restart: nothing twice
    late = cal.next_working_day(due)
    assert run_reminders(tmp_path, at(late)) == "0 1 1"
    assert run_reminders(tmp_path, at(late)) == "0 0 0"

    official = run_cli(
        ["chat", "--user", "petugas"],
        tmp_path,
        **STAFF,
        stdin=script("1", f"/status {code} selesai Lampu sudah diganti"),
    )
    assert official.returncode == 0, official.stderr
    assert official.stdout.count("🔔 Pengingat: kiriman ini jatuh tempo") == 1
    assert f"• {code} – tanggapan pertama – Laporan" in official.stdout
    coordinator = run_cli(["chat", "--user", "koordinator"], tmp_path, **STAFF, stdin="")
    assert coordinator.stdout.count("🔔 Lewat tenggat: 1 kiriman") == 1
    assert f"• {code} – tanggapan pertama – tenggat" in coordinator.stdout

    resident = run_cli(
        ["chat", "--user", "warga1"], tmp_path, **STAFF, stdin=script("belum", "Lampu di ujung gang masih mati")
    )
    out = resident.stdout
    assert (
        out.count(
            "Catatan: Lampu sudah diganti\n\nApakah masalahnya sudah beres?\nKalau ada, kirim juga foto hasilnya.\n  [1] Sudah\n  [2] Belum"
        )
        == 1
    )
    assert f"Maaf, masalahnya belum beres. {code} kami buka lagi dan petugas sudah dikabari." in out
    assert "Ceritakan apa yang belum beres, dalam satu pesan:" in out
    assert "Terima kasih, keterangan Anda sudah kami teruskan ke petugas." in out

    for user in ("petugas", "koordinator"):
        seen = run_cli(["chat", "--user", user], tmp_path, **STAFF, stdin="").stdout
        assert seen.count(f"🔔 {code} dibuka lagi: pelapor bilang masalahnya belum beres.") == 1, user
        assert seen.count(f"🔔 Keterangan pelapor untuk {code}:\nLampu di ujung gang masih mati") == 1, user
    again = run_cli(
        ["chat", "--user", "petugas"], tmp_path, **STAFF, stdin=script(f"/status {code} selesai Sudah diganti lagi")
    ).stdout
    assert "dibuka lagi" not in again

    resident = run_cli(["chat", "--user", "warga1"], tmp_path, **STAFF, stdin=script("sudah", "5"))
    assert f"Terima kasih sudah memastikan. {code} kami tutup." in resident.stdout
    assert "Terima kasih atas nilainya." in resident.stdout
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        assert conn.execute("SELECT outcome, rating FROM closures ORDER BY id").fetchall() == [
            ("disputed", None),
            ("confirmed", 5),
        ]
        assert conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0] == 0
    assert re.search(
        r"Status: selesai",
        run_cli(["chat", "--user", "warga1"], tmp_path, **STAFF, stdin=script(f"/status {code}")).stdout,
    )

    # Issue 17: the photo of the result, as a file path (the terminal keeps photos as paths).
    photo = str(tmp_path / "hasil-lampu.jpg")
    resident = run_cli(["chat", "--user", "warga1"], tmp_path, **STAFF, stdin=script(f"/foto {photo}"))
    assert f"Terima kasih, foto hasil untuk {code} sudah kami simpan dan teruskan ke petugas." in resident.stdout
    seen = run_cli(["chat", "--user", "petugas"], tmp_path, **STAFF, stdin=script(f"/lihat {code}")).stdout
    assert seen.count(f"🔔 Foto hasil dari pelapor untuk {code} (sudah beres).\n{photo}") == 1
    assert f"Foto hasil dari pelapor (sudah beres).\n{photo}" in seen
    coordinator = run_cli(["chat", "--user", "koordinator"], tmp_path, **STAFF, stdin="").stdout
    assert "Foto hasil" not in coordinator  # a confirmed fix: the coordinators are not bothered
