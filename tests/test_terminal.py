"""The terminal chat as a regency first tries it: a resident and an official in two
`suarawarga chat` sessions on one database, fed by pipes, as real processes."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.test_cli import cli_environment, run_cli

REPORT = [
    "1",  # Setuju
    "/lapor",
    "Lampu PJU di jalan desa kami mati sudah dua minggu, gelap sekali kalau malam",
    "1",  # Ya, benar
    "Sukomoro",
    "1",  # Lewati (photo)
    "2",  # Anonim
    "1",  # Ya, kirim
]
OFFICIAL = {"OFFICIALS": "terminal:petugas"}


def script(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def submit_report(tmp_path: Path, user: str = "warga1") -> str:
    result = run_cli(["chat", "--user", user], tmp_path, stdin=script(*REPORT))
    assert result.returncode == 0, result.stderr
    return re.search(r"Kode pelacakan: (\w{3}-\w{3})", result.stdout).group(1)


def test_a_residents_notifications_arrive_when_they_next_open_the_chat_exactly_once(tmp_path):
    """The official's status change and reply wait for the resident, are shown when the
    resident opens `chat --user`, and are not shown again the time after."""
    code = submit_report(tmp_path)
    official = run_cli(
        ["chat", "--user", "petugas"],
        tmp_path,
        **OFFICIAL,
        stdin=script(
            "1",
            f"/status {code} ditinjau",
            f"/balas {code} Terima kasih, petugas kami cek minggu ini.",
        ),
    )
    assert official.returncode == 0, official.stderr
    assert "Pelapor akan dikabari" in official.stdout
    assert f"Kabar untuk laporan Anda {code}" not in official.stdout  # not the official's news

    first = run_cli(["chat", "--user", "warga1"], tmp_path, stdin="")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(f'Kabar untuk laporan Anda {code}: status sekarang "ditinjau"') == 1
    assert first.stdout.count("Terima kasih, petugas kami cek minggu ini.") == 1
    # In the order they were caused, before the menu the resident answers.
    assert (
        first.stdout.index("ditinjau")
        < first.stdout.index("petugas kami cek")
        < first.stdout.index("Apa yang ingin Anda sampaikan")
    )

    again = run_cli(["chat", "--user", "warga1"], tmp_path, stdin="")
    assert "Kabar untuk" not in again.stdout and "petugas kami cek" not in again.stdout
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        assert conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall() == [("sent", 2)]


def test_a_running_residents_session_shows_the_news_after_their_next_message(tmp_path):
    """The resident's chat stays open while the official acts in another terminal: the
    notification appears in the open session, once, with the answer to what they type next."""
    code = submit_report(tmp_path)
    resident = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat", "--user", "warga1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=cli_environment(tmp_path),
    )
    try:
        _read_until(resident, "Hapus data saya")  # the session is open, at its menu
        official = run_cli(
            ["chat", "--user", "petugas"],
            tmp_path,
            **OFFICIAL,
            stdin=script("1", f"/status {code} selesai Lampu sudah diganti"),
        )
        assert "Pelapor akan dikabari" in official.stdout, official.stdout
        resident.stdin.write(f"/status {code}\n")
        resident.stdin.flush()
        seen = _read_until(resident, f'Kabar untuk laporan Anda {code}: status sekarang "selesai"')
        assert "Status: selesai" in seen  # after the answer to what the resident typed
        resident.stdin.write("/bantuan\n")
        resident.stdin.close()
        rest = resident.stdout.read()
        assert resident.wait(timeout=60) == 0
        assert "Kabar untuk" not in rest
    finally:
        if resident.poll() is None:
            resident.kill()
            resident.wait()


def _read_until(process: subprocess.Popen, marker: str) -> str:
    seen = []
    for line in process.stdout:  # each line as the chat prints it; ends if the process does
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never printed; got:\n{''.join(seen)}")


def test_files_the_official_is_sent_are_written_and_their_paths_printed(tmp_path):
    """/ringkasan's chart and spreadsheet and /ekspor's file land in data's exports/ folder,
    and the export made after its answer is still written when the scripted input ends."""
    submit_report(tmp_path)
    result = run_cli(["chat", "--user", "petugas"], tmp_path, **OFFICIAL, stdin=script("1", "/ringkasan", "/ekspor"))
    assert result.returncode == 0, result.stderr
    printed = [Path(p) for p in re.findall(r"^  [📎🖼] (\S+)$", result.stdout, re.M)]
    suffixes = sorted(p.suffix for p in printed)
    assert suffixes == [".png", ".xlsx", ".xlsx"], result.stdout
    for path in printed:
        assert path.parent == tmp_path / "exports"
        assert path.stat().st_size > 1000
    assert printed[-1].read_bytes()[:2] == b"PK"  # the export: a real workbook
    assert "bytes)" not in result.stdout  # no more files that do not exist


def test_log_lines_go_to_a_file_the_first_line_names(tmp_path):
    """Migrations and other log lines stay out of the conversation."""
    result = run_cli(["chat", "--user", "warga1"], tmp_path, stdin=script("1"))
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    log_file = tmp_path / "suarawarga.log"
    assert str(log_file) in first
    assert "migration" not in result.stdout and "migration" not in result.stderr
    assert "applying migration 0001" in log_file.read_text(encoding="utf-8")


def test_the_terminal_asks_for_the_number_not_a_button(tmp_path):
    """A terminal has numbered options and typed commands, no buttons or paper clips."""
    result = run_cli(
        ["chat", "--user", "warga1"],
        tmp_path,
        stdin=script(
            "/lapor",  # before consent: the reminder
            "1",
            "/lapor",
            REPORT[2],
            "ya betul",  # typed words where a choice is expected
            "1",
            "Sukomoro",
        ),
    )
    assert 'mohon ketik nomor pilihan "Setuju"' in result.stdout
    assert "Silakan ketik nomor salah satu pilihan" in result.stdout
    assert "/lokasi LINTANG BUJUR" in result.stdout and "📎" not in result.stdout
    assert "Kirim foto (opsional) dengan /foto" in result.stdout
    assert "tombol" not in result.stdout and "tekan" not in result.stdout.replace('Tekan "Setuju"', "")


def test_a_resident_typing_at_a_terminal_sees_the_news_without_typing_anything(tmp_path):
    """At a real terminal (a pty here) the open session shows a notification within seconds
    of the official's action, while the resident is still looking at the prompt."""
    import os
    import pty

    code = submit_report(tmp_path)
    controller, terminal = pty.openpty()
    resident = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat", "--user", "warga1"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=cli_environment(tmp_path),
    )
    os.close(terminal)
    try:
        _read_until(resident, "Hapus data saya")
        run_cli(["chat", "--user", "petugas"], tmp_path, **OFFICIAL, stdin=script(f"/status {code} ditinjau"))
        seen = _read_until(resident, f"Kabar untuk laporan Anda {code}")
        assert "Hapus data saya" not in seen  # nothing typed, nothing answered: only the news
    finally:
        os.write(controller, b"\x04")  # Ctrl-D
        try:
            assert resident.wait(timeout=30) == 0
        finally:
            if resident.poll() is None:
                resident.kill()
            os.close(controller)
