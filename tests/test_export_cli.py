"""`suarawarga export` (issue 6): files, standard output, filters and refusals.

The command runs through click's CliRunner with the same Settings object the real
`suarawarga` group puts in ctx.obj; one test runs it on a pseudo-terminal for the
progress bar.
"""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from bot.cli_export import export
from bot.exports import COLUMNS, CONTACT_COLUMNS
from storage.database import connect as connect_db
from storage.database import location, to_db
from tests import dbtools

ROOT = Path(__file__).resolve().parent.parent


async def _migrate(settings) -> None:
    async with connect_db(settings):
        pass


@pytest.fixture
def seeded(settings, migrated: Path) -> object:
    """Three submissions around the end of November, Magetan time (UTC+7)."""
    if dbtools.is_postgres(location(settings)):
        asyncio.run(_migrate(settings))
    else:
        shutil.copyfile(migrated, location(settings))
    conn = dbtools.connect(location(settings))
    stamp = to_db(datetime(2026, 11, 1, tzinfo=UTC))
    conn.execute(
        "INSERT INTO users (id, channel, platform_id, chat_id, display_name, language, consent_version, "
        "consent_at, created_at) VALUES (1, 'whatsapp', '6281299990000', '6281299990000', 'Rina', 'id', "
        "'2026-11', ?, ?)",
        (stamp, stamp),
    )
    rows = [
        # 23:59 on 30 November in Magetan: inside "--until 2026-11-30".
        ("AAAAAA", "report", "living", "Plaosan", 0, datetime(2026, 11, 30, 16, 59, tzinfo=UTC)),
        # 00:00 on 1 December in Magetan: outside it.
        ("BBBBBB", "idea", "environment", "Magetan", 1, datetime(2026, 11, 30, 17, 0, tzinfo=UTC)),
        ("CCCCCC", "report", "economy", "Plaosan", 0, datetime(2026, 11, 10, tzinfo=UTC)),
    ]
    for code, kind, pillar, area, anonymous, created in rows:
        conn.execute(
            "INSERT INTO submissions (code, user_id, kind, pillar, text, language, area, anonymous, "
            "submitter_name, channel, created_at, updated_at, status_changed_at) "
            "VALUES (?, 1, ?, ?, ?, 'id', ?, ?, ?, 'whatsapp', ?, ?, ?)",
            (
                code,
                kind,
                pillar,
                f"Aspirasi {code} dari warga, telepon 0812-1111-2222",
                area,
                anonymous,
                None if anonymous else "Rina",
                to_db(created),
                to_db(created),
                to_db(created),
            ),
        )
    conn.commit()
    conn.close()
    return settings


def invoke(settings, *args: str):
    return CliRunner().invoke(export, list(args), obj=settings)


def codes_in_csv(data: bytes) -> list[str]:
    assert data.startswith(b"\xef\xbb\xbf")
    return [r["code"] for r in csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))]


# Output -----------------------------------------------------------------------------------
def test_csv_goes_to_standard_output_with_a_summary_on_stderr(seeded) -> None:
    result = invoke(seeded)
    assert result.exit_code == 0, result.stderr
    assert codes_in_csv(result.stdout_bytes) == ["AAA-AAA", "BBB-BBB", "CCC-CCC"]
    assert "0812" not in result.stdout
    # Quiet when not on a terminal: no progress bar, just one line at the end.
    assert result.stderr.strip() == "Exported 3 submissions as csv to standard output."


def test_xlsx_is_written_to_the_named_file(seeded, tmp_path: Path) -> None:
    out = tmp_path / "aspirasi.xlsx"
    result = invoke(seeded, "--format", "xlsx", "--out", str(out), "--lang", "en")
    assert result.exit_code == 0, result.stderr
    book = openpyxl.load_workbook(out)
    assert book.sheetnames[:3] == ["Summary", "All submissions", "Smart Governance"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_csv_for_indonesian_excel_uses_semicolons_decimal_commas_and_plain_times(seeded) -> None:
    """--csv-dialect excel-id: what Excel with Indonesian regional settings splits into
    columns on opening: ';' between fields, ',' in decimals, local "YYYY-MM-DD HH:MM:SS"."""
    conn = dbtools.connect(location(seeded))
    conn.execute(
        "UPDATE submissions SET latitude = -7.6543219, longitude = 111.3312345, "
        "text = 'Jalan rusak; tolong, segera' WHERE code = 'AAAAAA'"
    )
    conn.commit()
    conn.close()
    result = invoke(seeded, "--csv-dialect", "excel-id")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(result.stdout_bytes.decode("utf-8-sig"), newline=""), delimiter=";"))
    first = rows[0]
    assert first["code"] == "AAA-AAA" and first["text"] == "Jalan rusak; tolong, segera"
    assert (first["latitude"], first["longitude"]) == ("-7,654", "111,331")
    assert first["created_at"] == "2026-11-30 23:59:00"
    assert invoke(seeded, "--format", "jsonl", "--csv-dialect", "excel-id").exit_code == 2


@pytest.mark.parametrize("fmt", ["jsonl", "geojson", "markdown"])
def test_text_formats_go_to_standard_output(seeded, fmt: str) -> None:
    result = invoke(seeded, "--format", fmt)
    assert result.exit_code == 0, result.stderr
    if fmt == "jsonl":
        assert [json.loads(line)["code"] for line in result.stdout.splitlines()] == ["AAA-AAA", "BBB-BBB", "CCC-CCC"]
    elif fmt == "geojson":
        assert [f["properties"]["code"] for f in json.loads(result.stdout)["features"]] == [
            "AAA-AAA",
            "BBB-BBB",
            "CCC-CCC",
        ]
    else:
        assert result.stdout.startswith("# Aspirasi Masyarakat")


# Filters ----------------------------------------------------------------------------------
def test_until_includes_the_whole_local_day(seeded) -> None:
    result = invoke(seeded, "--since", "2026-11-30", "--until", "2026-11-30")
    assert codes_in_csv(result.stdout_bytes) == ["AAA-AAA"]
    result = invoke(seeded, "--since", "2026-12-01")
    assert codes_in_csv(result.stdout_bytes) == ["BBB-BBB"]


def test_pillar_kind_and_area_filters(seeded) -> None:
    assert codes_in_csv(invoke(seeded, "--pillar", "economy").stdout_bytes) == ["CCC-CCC"]
    assert codes_in_csv(invoke(seeded, "--kind", "idea").stdout_bytes) == ["BBB-BBB"]
    # Areas are matched whatever the case, and exported with the configured spelling.
    assert codes_in_csv(invoke(seeded, "--area", "plaosan", "--kind", "report").stdout_bytes) == ["AAA-AAA", "CCC-CCC"]
    assert codes_in_csv(invoke(seeded, "--status", "resolved").stdout_bytes) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pillar", "transport"], "'transport' is not one of"),
        (["--kind", "complaint"], "'complaint' is not one of"),
        (["--status", "done"], "'done' is not one of"),
        (["--area", "Atlantis"], "'Atlantis' is not one of the configured areas: Barat, Bendo"),
        (["--since", "30-11-2026"], "'30-11-2026' is not a date; write it as YYYY-MM-DD"),
        (["--since", "2026-12-01", "--until", "2026-11-01"], "--since 2026-12-01 is after --until 2026-11-01"),
        (["--format", "pdf"], "'pdf' is not one of"),
        (["--format", "xlsx"], "xlsx is a binary format; write it to a file with --out"),
        (["--lang", "jv"], "'jv' is not one of"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(seeded, args: list[str], message: str) -> None:
    result = invoke(seeded, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert result.stdout == ""


# Refused targets ------------------------------------------------------------------------------
def test_existing_file_is_kept_unless_forced(seeded, tmp_path: Path) -> None:
    out = tmp_path / "aspirasi.csv"
    out.write_text("laporan penting sebelumnya")
    result = invoke(seeded, "--out", str(out))
    assert result.exit_code == 2 and "already exists; choose a new name or add --force" in result.stderr
    assert out.read_text() == "laporan penting sebelumnya"
    result = invoke(seeded, "--out", str(out), "--force")
    assert result.exit_code == 0
    assert codes_in_csv(out.read_bytes()) == ["AAA-AAA", "BBB-BBB", "CCC-CCC"]


def test_directory_is_refused(seeded, tmp_path: Path) -> None:
    result = invoke(seeded, "--out", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_symlink_is_never_written_through(seeded, tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("do not touch")
    link = tmp_path / "export.csv"
    link.symlink_to(target)
    for extra in ([], ["--force"]):
        result = invoke(seeded, "--out", str(link), *extra)
        assert result.exit_code == 2 and "is a symbolic link" in result.stderr
    assert target.read_text() == "do not touch" and link.is_symlink()


def test_missing_folder_is_refused(seeded, tmp_path: Path) -> None:
    result = invoke(seeded, "--out", str(tmp_path / "no" / "such" / "x.csv"))
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_missing_database_is_a_clear_error(make_settings, tmp_path: Path) -> None:
    result = invoke(make_settings(database_path=tmp_path / "absent.db", database_url=None))
    assert result.exit_code == 1 and "not found" in result.stderr


# Contact identity ------------------------------------------------------------------------------
def test_include_contact_names_what_it_left_out_and_is_audited(seeded, tmp_path: Path) -> None:
    out = tmp_path / "callback.csv"
    result = invoke(seeded, "--include-contact", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8-sig"), newline="")))
    assert list(rows[0]) == [*COLUMNS, *CONTACT_COLUMNS]
    contacts = {r["code"]: r["contact_id"] for r in rows}
    assert contacts == {"AAA-AAA": "6281299990000", "BBB-BBB": "", "CCC-CCC": "6281299990000"}
    assert "1 anonymous submissions stay without contact" in " ".join(result.stderr.split())
    assert (out.stat().st_mode & 0o777) == 0o600  # personal data: owner only
    ((actor, after),) = dbtools.rows(location(seeded), "SELECT actor, after FROM audit_log")
    assert actor.startswith("cli:") and json.loads(after)["with_contact"] == 2


# Progress -------------------------------------------------------------------------------------
def test_progress_bar_shows_on_a_terminal(seeded, tmp_path: Path) -> None:
    """stderr on a terminal gets tqdm's bar; the export itself is unchanged."""
    master, slave = os.openpty()
    # A fresh pseudo-terminal is 0 columns wide; give it a real size, as a terminal has.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    out = tmp_path / "bar.csv"
    # The last argument is the database for Settings; click gets the ones before it.
    script = (
        "import sys; from pathlib import Path; from bot.config import Settings; "
        "from bot.cli_export import export; "
        "db = sys.argv[-1]; where = {'database_url': db} if db.startswith('postgresql') else {'database_path': Path(db)}; "
        "export.main(sys.argv[1:-1], obj=Settings(_env_file=None, **where), "
        "standalone_mode=True)"
    )
    cmd = [sys.executable, "-c", script, "--out", str(out), str(location(seeded))]
    proc = subprocess.run(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, timeout=60)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.returncode == 0, shown
    assert b"export csv" in shown and b"3/3" in shown
    assert codes_in_csv(out.read_bytes()) == ["AAA-AAA", "BBB-BBB", "CCC-CCC"]
