"""The masterplan outline and submissions traced to its sections (issue 18, phase 1).

The outline goes in through `suarawarga masterplan load` (click's CliRunner, the real
Settings), links are made by an official in chat (over Telegram with the fake Bot API and
the outbox worker, or through the core as the app wires it) or in bulk with
`suarawarga masterplan link`; residents and supporters hear about it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import Workbook

from bot.app import open_services
from bot.cli_masterplan import masterplan
from handlers.i18n import Catalog
from handlers.masterplan import (
    MasterplanCommand,
    OutlineError,
    outline_from_markdown,
    outline_from_rows,
    pillar_vocabulary,
)
from handlers.messages import Incoming, InputKind
from storage.database import location, utcnow
from tests import dbtools
from tests.test_officials import OFFICIAL, add_resident, add_submission, scalar, telegram_stack

OUTLINE_CSV = """section,title,pillar,programme,kecamatan
4,Kelayakan Hidup,living,,
4.1,Jalan dan Jembatan Desa,living,Program Jalan Mantap,
4.2,Transportasi Umum Terpadu,Kelayakan Hidup,,Maospati
5.1,Bank Sampah dan Daur Ulang,lingkungan,,
"""

MARKDOWN = """# Rancangan Masterplan Smart City Kabupaten Magetan

## Pendahuluan
Teks yang tidak dibaca.

## 4 Kelayakan Hidup
### 4.1 Jalan dan Jembatan Desa
### 4.2 Transportasi Umum Terpadu

# Lingkungan
## 5.1 Bank Sampah dan Daur Ulang
## 5.2 Ruang Terbuka Hijau [environment]
"""


def cli(settings, *args: str):
    return CliRunner().invoke(masterplan, list(args), obj=settings, catch_exceptions=False)


def rows(db_path: Path, sql: str, *params: object) -> list[tuple]:
    with contextlib.closing(dbtools.connect(db_path)) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def bot_settings(make_settings, migrated):
    """Settings over a database the bot has already created (a copy of the migrated one):
    the masterplan commands refuse a DATABASE_PATH with no database behind it."""

    def build(**overrides: object):
        settings = make_settings(**overrides)
        shutil.copy(migrated, settings.database_path)  # on PostgreSQL the bot migrates its schema itself
        return settings

    return build


@pytest.fixture
def pillars() -> dict[str, str]:
    return pillar_vocabulary(Catalog.load("id"))


# The outline ------------------------------------------------------------------------------------------
def test_an_outline_is_read_from_a_table_or_markdown_headings(pillars):
    """Rows by their headers (any language, pillar names or keys); Markdown headings with a
    number are sections, taking the pillar of their parent or of the heading above."""
    table = outline_from_rows(
        [line.split(",") for line in OUTLINE_CSV.splitlines()], pillars=pillars, areas=["Maospati", "Bendo"]
    )
    assert [(e.number, e.title, e.pillar, e.programme, e.area) for e in table] == [
        ("4", "Kelayakan Hidup", "living", None, None),
        ("4.1", "Jalan dan Jembatan Desa", "living", "Program Jalan Mantap", None),
        ("4.2", "Transportasi Umum Terpadu", "living", None, "Maospati"),
        ("5.1", "Bank Sampah dan Daur Ulang", "environment", None, None),
    ]
    headings = outline_from_markdown(MARKDOWN, pillars=pillars)
    assert [(e.number, e.title, e.pillar) for e in headings] == [
        ("4", "Kelayakan Hidup", "living"),
        ("4.1", "Jalan dan Jembatan Desa", "living"),
        ("4.2", "Transportasi Umum Terpadu", "living"),
        ("5.1", "Bank Sampah dan Daur Ulang", "environment"),
        ("5.2", "Ruang Terbuka Hijau", "environment"),
    ]
    indonesian = outline_from_rows(
        [
            ["No", "Bagian", "Nama program", "Judul", "Pilar"],
            ["1", "6.1", "Gerbang Desa Digital", "Pasar Desa Daring", "ekonomi"],
        ],
        pillars=pillars,
    )
    assert [(e.number, e.title, e.programme, e.pillar) for e in indonesian] == [
        ("6.1", "Pasar Desa Daring", "Gerbang Desa Digital", "economy")
    ]


def test_a_bad_outline_names_every_problem_with_its_line(pillars):
    with pytest.raises(OutlineError) as caught:
        outline_from_rows(
            [
                ["section", "title", "pillar", "kecamatan"],
                ["4.1", "Jalan", "living", ""],
                ["4.1", "Jalan lagi", "living", ""],
                ["empat", "Judul", "", ""],
                ["4.3", "", "", ""],
                ["4.4", "Taman", "olahraga", ""],
                ["4.5", "Pasar", "", "Atlantis"],
            ],
            pillars=pillars,
            areas=["Maospati"],
        )
    assert caught.value.problems == [
        "line 3: section 4.1 is already on line 2",
        "line 4: 'empat' is not a section number (like 4.2)",
        "line 5: section 4.3 has no title",
        "line 6: pillar 'olahraga' is not one of governance, branding, economy, living, society, environment",
        "line 7: kecamatan 'Atlantis' is not one of the configured AREAS",
    ]
    with pytest.raises(OutlineError, match="no section or bagian column"):
        outline_from_rows([["judul"], ["Jalan"]], pillars=pillars)


@pytest.mark.sqlite_only  # starts from a DATABASE_PATH that names no file yet
def test_loading_from_xlsx_reports_and_audits_and_a_dry_run_writes_nothing(make_settings, migrated, tmp_path):
    settings = make_settings(areas="Maospati,Bendo")
    book = Workbook()
    sheet = book.active
    for line in OUTLINE_CSV.splitlines():
        cells: list[object] = line.split(",")
        if cells[0] == "4":
            cells[0] = 4.0  # Excel's number for a typed 4
        sheet.append(cells)
    path = tmp_path / "kerangka.xlsx"
    book.save(path)
    nowhere = CliRunner().invoke(masterplan, ["load", str(path)], obj=settings)
    assert nowhere.exit_code == 1 and f"no database at {settings.database_path}" in nowhere.output
    assert not settings.database_path.exists()
    shutil.copy(migrated, location(settings))

    dry = cli(settings, "load", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "added     4.2 Transportasi Umum Terpadu" in dry.output
    assert dry.output.endswith(
        "Would load 4 sections from kerangka.xlsx: 4 changes, 0 unchanged. Nothing written (--dry-run).\n"
    )
    assert scalar(location(settings), "SELECT count(*) FROM masterplan_sections") == 0

    loaded = cli(settings, "load", str(path))
    assert loaded.output.endswith("Loaded 4 sections from kerangka.xlsx: 4 changes, 0 unchanged.\n")
    assert rows(
        location(settings),
        "SELECT number, title, pillar, programme, area FROM masterplan_sections ORDER BY position",
    ) == [
        ("4", "Kelayakan Hidup", "living", None, None),
        ("4.1", "Jalan dan Jembatan Desa", "living", "Program Jalan Mantap", None),
        ("4.2", "Transportasi Umum Terpadu", "living", None, "Maospati"),
        ("5.1", "Bank Sampah dan Daur Ulang", "environment", None, None),
    ]
    again = cli(settings, "load", str(path))
    assert again.output == "Loaded 4 sections from kerangka.xlsx: 0 changes, 4 unchanged.\n"
    [(actor, target, after)] = rows(
        location(settings),
        "SELECT actor, target, after FROM audit_log WHERE action = 'masterplan_load' ORDER BY id LIMIT 1",
    )
    assert actor.startswith("cli:") and target == "kerangka.xlsx"
    assert json.loads(after)["sections"] == 4
    assert scalar(location(settings), "SELECT count(*) FROM audit_log WHERE action = 'masterplan_load'") == 2

    bad = tmp_path / "rusak.csv"
    bad.write_text("section,title\n4.1,\n", encoding="utf-8")
    failed = CliRunner().invoke(masterplan, ["load", str(bad)], obj=settings)
    assert failed.exit_code == 1
    assert "cannot load the outline:\n  line 2: section 4.1 has no title" in failed.output


# Links in chat, over Telegram ---------------------------------------------------------------------------
async def test_an_official_links_in_chat_and_resident_and_supporter_are_told_once(make_settings, tmp_path):
    """/masterplan KODE 4.2: status in_masterplan, the English-speaking resident and the
    Indonesian supporter each told once, in their language, with the section and what next."""
    async with telegram_stack(make_settings) as tg:
        tg.services.core.desk.register("masterplan", MasterplanCommand(tg.services.catalog))
        assert (await tg.say(OFFICIAL, "/masterplan"))[0].plain.startswith("Kerangka masterplan belum dimuat.")
        outline = tmp_path / "kerangka.md"
        outline.write_text(MARKDOWN, encoding="utf-8")
        await asyncio.to_thread(cli, tg.services.settings, "load", str(outline))

        sari = await add_resident(tg.db, "1001", language="en")
        await add_resident(tg.db, "1002", name="Budi")
        code = await add_submission(tg.db, sari, "Perlu bus desa ke pasar Maospati setiap pagi", kind="idea")
        await tg.say(1002, f"/dukung {code}")

        listing = (await tg.say(OFFICIAL, "/masterplan"))[0].plain
        assert listing.splitlines()[:3] == [
            "Kerangka masterplan: 5 bagian",
            "• 4 Kelayakan Hidup (0 kiriman)",
            "• 4.1 Jalan dan Jembatan Desa (0 kiriman)",
        ]
        [done] = await tg.say(OFFICIAL, f"/masterplan {code} 4.2")
        assert done.plain == (
            f'{code} masuk masterplan, bagian 4.2 "Transportasi Umum Terpadu".\n'
            "Pelapor akan dikabari.\n1 pendukung juga akan dikabari."
        )
        [news] = await tg.notified(1001)
        assert news == (
            f"News about your idea {code}: it is now in the draft masterplan, section 4.2 "
            '"Transportasi Umum Terpadu".\n\nWhat happens next: the drafting team uses it when '
            "writing this section. We will tell you if anything changes."
        )
        [fan] = await tg.notified(1002)
        assert fan.startswith(
            f"Kabar untuk ide {code} yang Anda dukung: sudah masuk rancangan masterplan, "
            'bagian 4.2 "Transportasi Umum Terpadu".'
        )

        # The same link again, by the Indonesian status words or the English command: no news.
        assert (await tg.say(OFFICIAL, f"/status {code} masuk_masterplan 4.2"))[0].plain == (
            f"{code} sudah ada di bagian 4.2."
        )
        assert (await tg.say(OFFICIAL, f"/plan {code} 4.2"))[0].plain == f"{code} sudah ada di bagian 4.2."
        assert (await tg.say(OFFICIAL, f"/status {code} masuk masterplan"))[0].plain.startswith(
            f"Tulis nomor bagian masterplannya, misalnya: /masterplan {code} 4.2"
        )
        assert (await tg.say(OFFICIAL, "/masterplan 4.2")).pop().plain.startswith("Contoh: /masterplan K7Q-4MX 4.2")
        assert (await tg.say(OFFICIAL, f"/masterplan {code} 9.9"))[0].plain.startswith(
            "Bagian 9.9 tidak ada dalam kerangka masterplan."
        )
        await tg.worker.idle.wait()
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox") == 2
        assert scalar(tg.db_path, "SELECT status || ' ' || status_note FROM submissions") == (
            "in_masterplan 4.2 Transportasi Umum Terpadu"
        )
        [(before, after)] = rows(tg.db_path, "SELECT before, after FROM audit_log WHERE action = 'masterplan_link'")
        assert json.loads(before) == {"section": None, "status": "new"}
        assert json.loads(after)["section"] == "4.2"


# Reloading the outline keeps the links ---------------------------------------------------------------------
async def test_a_reload_keeps_links_through_renames_and_retires_what_was_dropped(bot_settings, tmp_path):
    """Renamed (same number) and renumbered (same title) sections keep their links; a dropped
    one is retired: its links stay, it is shown as retired, and new links to it are refused.
    Through the desk as bot/app.py wires it."""
    settings = bot_settings(officials=f"telegram:{OFFICIAL}")
    first = tmp_path / "v1.csv"
    first.write_text(OUTLINE_CSV, encoding="utf-8")
    await asyncio.to_thread(cli, settings, "load", str(first))
    async with open_services(settings) as services:
        count = 0

        async def official(text: str) -> str:
            nonlocal count
            count += 1
            command, _, args = text[1:].partition(" ")
            outcome = await services.core.handle(
                Incoming(
                    channel="telegram",
                    user_id=str(OFFICIAL),
                    chat_id=str(OFFICIAL),
                    kind=InputKind.COMMAND,
                    received_at=utcnow(),
                    message_id=f"m{count}",
                    text=text,
                    command=command,
                    args=args,
                    language_hint="id",
                )
            )
            return "\n".join(r.text for r in outcome.replies)

        sari = await add_resident(services.db, "1001")
        road, bus, bins = [
            await add_submission(services.db, sari, text)
            for text in ("Jalan desa berlubang di Bendo", "Bus desa ke pasar setiap pagi", "Bank sampah di tiap RW")
        ]
        assert (await official(f"/status {road} masuk_masterplan 4.1 Prioritas tahun pertama")).startswith(
            f'{road} masuk masterplan, bagian 4.1 "Jalan dan Jembatan Desa".'
        )
        assert (await official(f"/masterplan {bus} 4.2")).startswith(f"{bus} masuk masterplan")
        assert (await official(f"/masterplan {bins} 5.1")).startswith(f"{bins} masuk masterplan")

        second = tmp_path / "v2.csv"
        second.write_text(
            "section,title,pillar\n"
            "4,Kelayakan Hidup,living\n"
            "4.1,Jalan Desa yang Mantap,living\n"  # renamed
            "4.3,Transportasi Umum Terpadu,living\n",  # renumbered; 5.1 dropped
            encoding="utf-8",
        )
        dry = await asyncio.to_thread(cli, settings, "load", str(second), "--dry-run")
        assert dry.output.splitlines() == [
            "changed   4.1 Jalan Desa yang Mantap: title 'Jalan dan Jembatan Desa' -> 'Jalan Desa yang Mantap'; "
            "programme Program Jalan Mantap -> -",
            "changed   4.3 Transportasi Umum Terpadu: number 4.2 -> 4.3; kecamatan Maospati -> -",
            "retired   5.1 Bank Sampah dan Daur Ulang (1 linked submissions keep their link, shown as retired)",
            "Would load 3 sections from v2.csv: 3 changes, 1 unchanged. Nothing written (--dry-run).",
        ]
        assert scalar(location(settings), "SELECT title FROM masterplan_sections WHERE number = '4.1'") == (
            "Jalan dan Jembatan Desa"
        )
        await asyncio.to_thread(cli, settings, "load", str(second))

        assert rows(
            location(settings),
            "SELECT sub.code, s.number, s.title, s.retired_at IS NOT NULL FROM masterplan_links l "
            "JOIN submissions sub ON sub.id = l.submission_id JOIN masterplan_sections s "
            "ON s.id = l.section_id ORDER BY s.number",
        ) == [
            (road.value, "4.1", "Jalan Desa yang Mantap", 0),
            (bus.value, "4.3", "Transportasi Umum Terpadu", 0),
            (bins.value, "5.1", "Bank Sampah dan Daur Ulang", 1),
        ]
        listing = await official("/masterplan")
        assert "• 4.3 Transportasi Umum Terpadu (1 kiriman)" in listing and "5.1" not in listing
        assert (await official(f"/lihat {bins}")).splitlines()[0] == (
            f'Laporan {bins} – status: masuk masterplan – bagian 5.1 "Bank Sampah dan Daur Ulang" '
            "(tidak lagi dalam kerangka)"
        )
        assert (await official(f"/lihat {bus}")).splitlines()[0] == (
            f'Laporan {bus} – status: masuk masterplan – bagian 4.3 "Transportasi Umum Terpadu"'
        )
        assert await official(f"/masterplan {road} 5.1") == (
            'Bagian 5.1 "Bank Sampah dan Daur Ulang" sudah tidak ada dalam kerangka terbaru. '
            "Pilih bagian lain: /masterplan"
        )
        assert await official(f"/masterplan {road} 4.3") == (
            f'{road} dipindah dari bagian 4.1 ke bagian 4.3 "Transportasi Umum Terpadu".\nPelapor akan dikabari.'
        )
        # The first outline again: 5.1 is restored and 4.3 goes back to 4.2, the same rows.
        await asyncio.to_thread(cli, settings, "load", str(first))
        assert scalar(location(settings), "SELECT count(*) FROM masterplan_sections") == 4
        assert scalar(location(settings), "SELECT group_concat(number) FROM masterplan_sections") == ("4,4.1,4.2,5.1")
        assert scalar(location(settings), "SELECT count(*) FROM masterplan_sections WHERE retired_at IS NOT NULL") == 0
        # Each of the 4 links and 1 move told the resident once (one resident, three submissions).
        assert scalar(location(settings), "SELECT count(*) FROM outbox") == 4


# Links in bulk from a filled-in export -----------------------------------------------------------------------
async def test_bulk_link_from_a_filled_in_export_is_a_dry_run_until_applied(bot_settings, tmp_path):
    settings = bot_settings()
    outline = tmp_path / "kerangka.csv"
    outline.write_text(OUTLINE_CSV, encoding="utf-8")
    await asyncio.to_thread(cli, settings, "load", str(outline))
    async with open_services(settings) as services:
        sari = await add_resident(services.db, "1001", language="en")
        budi = await add_resident(services.db, "1002", name="Budi")
        road = await add_submission(services.db, sari, "Jalan desa berlubang di Bendo")
        bus = await add_submission(services.db, budi, "Bus desa ke pasar setiap pagi", kind="idea")
        await add_submission(services.db, budi, "Lampu jalan mati di Takeran")

    book = Workbook()
    sheet = book.active
    sheet.title = "Semua kiriman"
    sheet.append(["Kode", "Jenis", "Isi", "Bagian masterplan"])
    sheet.append([str(road), "Laporan", "Jalan desa berlubang", "4.1"])
    sheet.append([str(bus), "Ide", "Bus desa", "4.2. Transportasi Umum Terpadu"])
    sheet.append(["ZZZ-ZZZ", "Ide", "Tidak ada", "4.2"])
    sheet.append(["", "", "", ""])
    other = book.create_sheet("Kelayakan Hidup")
    other.append(["Kode", "Bagian masterplan"])
    other.append([str(road), "9.9"])  # disagrees with the first sheet
    path = tmp_path / "aspirasi.xlsx"
    book.save(path)

    dry = await asyncio.to_thread(cli, settings, "link", str(path))
    assert dry.output.splitlines() == [
        f"link      {road} -> 4.1 Jalan dan Jembatan Desa",
        f"link      {bus} -> 4.2 Transportasi Umum Terpadu",
        f"skipped   Kelayakan Hidup row 2: {road} is given section 9.9, but Semua kiriman row 2 says 4.1",
        "skipped   Semua kiriman row 4: no submission ZZZ-ZZZ",
        "Would link from aspirasi.xlsx: 2 new, 0 moved, 0 already linked, 2 skipped. "
        "Nothing written; add --apply to link.",
    ]
    assert scalar(location(settings), "SELECT count(*) FROM masterplan_links") == 0
    assert scalar(location(settings), "SELECT count(*) FROM outbox") == 0

    applied = await asyncio.to_thread(cli, settings, "link", str(path), "--apply")
    assert applied.output.splitlines()[-1] == (
        "Linked from aspirasi.xlsx: 2 new, 0 moved, 0 already linked, 2 skipped. "
        "Residents and supporters are told through the outbox."
    )
    notices = rows(location(settings), "SELECT chat_id, purpose, payload FROM outbox ORDER BY id")
    assert [(chat, purpose) for chat, purpose, _ in notices] == [("1001", "status_change"), ("1002", "status_change")]
    assert json.loads(notices[0][2])["text"].startswith(
        f'News about your report {road}: it is now in the draft masterplan, section 4.1 "Jalan dan Jembatan Desa".'
    )
    assert scalar(location(settings), "SELECT count(*) FROM submissions WHERE status = 'in_masterplan'") == 2

    again = await asyncio.to_thread(cli, settings, "link", str(path), "--apply")
    assert "0 new, 0 moved, 2 already linked" in again.output
    assert scalar(location(settings), "SELECT count(*) FROM outbox") == 2
    assert scalar(location(settings), "SELECT count(*) FROM audit_log WHERE action = 'masterplan_link'") == 2


# Exports: the section column and the view by section -------------------------------------------------------
async def test_exports_show_the_sections_and_a_filled_in_export_links_the_rest(bot_settings, tmp_path):
    """The XLSX gets a section column and a sheet by section (sections without input too);
    the Markdown annex a chapter by section with codes, kecamatan counts, supports and
    masked quotes. The exported file, its section column filled in, links in bulk."""
    from openpyxl import load_workbook

    from bot.cli_export import export

    settings = bot_settings()
    outline = tmp_path / "kerangka.csv"
    outline.write_text(OUTLINE_CSV, encoding="utf-8")
    await asyncio.to_thread(cli, settings, "load", str(outline))
    async with open_services(settings) as services:
        sari = await add_resident(services.db, "1001")
        budi = await add_resident(services.db, "1002", name="Budi")
        road = await add_submission(
            services.db, sari, "Jalan desa berlubang, hubungi Pak RT 081234567890", area="Bendo"
        )
        bus = await add_submission(services.db, budi, "Bus desa ke pasar setiap pagi", kind="idea")
        lamp = await add_submission(services.db, budi, "Lampu jalan mati di Takeran", area="Takeran")
        await services.core.handle(
            Incoming(
                channel="telegram",
                user_id="1001",
                chat_id="1001",
                kind=InputKind.COMMAND,
                received_at=utcnow(),
                message_id="s1",
                text=f"/dukung {bus}",
                command="dukung",
                args=str(bus),
                language_hint="id",
            )
        )
    links = tmp_path / "links.csv"
    links.write_text(f"kode,bagian masterplan\n{road},4.1\n{bus},4.2\n", encoding="utf-8")
    await asyncio.to_thread(cli, settings, "link", str(links), "--apply")

    xlsx = tmp_path / "aspirasi.xlsx"
    made = await asyncio.to_thread(CliRunner().invoke, export, ["--format", "xlsx", "--out", str(xlsx)], obj=settings)
    assert made.exit_code == 0, made.output
    book = load_workbook(xlsx)
    assert book.sheetnames[-1] == "Per bagian masterplan"
    everything = list(book["Semua kiriman"].iter_rows(values_only=True))
    assert everything[0][-1] == "Bagian masterplan"
    assert {row[0]: row[-1] for row in everything[1:]} == {str(road): "4.1", str(bus): "4.2", str(lamp): None}
    by_section = list(book["Per bagian masterplan"].iter_rows(values_only=True))
    assert by_section[0] == (
        "Bagian",
        "Judul",
        "Pilar",
        "Dalam kerangka",
        "Kiriman",
        "Laporan",
        "Ide",
        "Dukungan",
        "Per kecamatan",
        "Kode kiriman",
    )
    assert by_section[1:] == [
        ("4", "Kelayakan Hidup", "Kelayakan Hidup", "ya", 0, 0, 0, 0, "belum ada masukan warga", None),
        ("4.1", "Jalan dan Jembatan Desa", "Kelayakan Hidup", "ya", 1, 1, 0, 0, "Bendo 1", str(road)),
        ("4.2", "Transportasi Umum Terpadu", "Kelayakan Hidup", "ya", 1, 0, 1, 1, "Maospati 1", str(bus)),
        ("5.1", "Bank Sampah dan Daur Ulang", "Lingkungan", "ya", 0, 0, 0, 0, "belum ada masukan warga", None),
    ]

    csv_out = tmp_path / "aspirasi.csv"
    await asyncio.to_thread(CliRunner().invoke, export, ["--format", "csv", "--out", str(csv_out)], obj=settings)
    lines = csv_out.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].endswith(
        ",updated_at,due_stage,due_at,overdue,working_days_late,first_response_at,resolved_at,closure,rating,section"
    )
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["4.1", "4.2", ""]

    for fmt in ("jsonl", "geojson"):
        out = tmp_path / f"aspirasi.{fmt}"
        await asyncio.to_thread(CliRunner().invoke, export, ["--format", fmt, "--out", str(out)], obj=settings)
        text = out.read_text(encoding="utf-8")
        records = (
            [json.loads(line) for line in text.splitlines()]
            if fmt == "jsonl"
            else [f["properties"] for f in json.loads(text)["features"]]
        )
        assert {r["code"]: r["section"] for r in records} == {str(road): "4.1", str(bus): "4.2", str(lamp): None}

    md = tmp_path / "lampiran.md"
    await asyncio.to_thread(CliRunner().invoke, export, ["--format", "markdown", "--out", str(md)], obj=settings)
    annex = md.read_text(encoding="utf-8")
    chapter = annex[annex.index("## Menurut bagian masterplan") : annex.index("## Sebaran per kecamatan dan pilar")]
    assert "### 4.1 Jalan dan Jembatan Desa\n\n1 kiriman: 1 laporan dan 0 ide, dengan 0 dukungan warga." in chapter
    assert f"Kiriman: {road}" in chapter and "Per kecamatan: Bendo 1" in chapter
    assert "081234567890" not in chapter and "> “Jalan desa berlubang" in chapter
    assert "### 4.2 Transportasi Umum Terpadu\n\n1 kiriman: 0 laporan dan 1 ide, dengan 1 dukungan warga." in chapter
    assert "### 5.1 Bank Sampah dan Daur Ulang\n\n_Belum ada masukan warga untuk bagian ini._" in chapter

    # The drafters fill in the section of the third one in the exported file itself.
    sheet = book["Semua kiriman"]
    for row in sheet.iter_rows(min_row=2):
        if row[0].value == str(lamp):
            row[-1].value = "4.1"
    book.save(xlsx)
    dry = await asyncio.to_thread(cli, settings, "link", str(xlsx))
    assert dry.output.splitlines() == [
        f"link      {lamp} -> 4.1 Jalan dan Jembatan Desa",
        "Would link from aspirasi.xlsx: 1 new, 0 moved, 2 already linked, 0 skipped. "
        "Nothing written; add --apply to link.",
    ]


# The digest: the period's new links and the sections that drew the most residents -------------------------
async def test_the_digest_lists_new_links_and_the_sections_drawing_most_residents(bot_settings, tmp_path):
    from bot.cli_digest import digest

    settings = bot_settings()
    outline = tmp_path / "kerangka.csv"
    outline.write_text(OUTLINE_CSV, encoding="utf-8")
    await asyncio.to_thread(cli, settings, "load", str(outline))
    async with open_services(settings) as services:
        sari = await add_resident(services.db, "1001")
        budi = await add_resident(services.db, "1002", name="Budi")
        await add_resident(services.db, "1003", name="Wati")
        road = await add_submission(services.db, sari, "Jalan desa berlubang di Bendo", area="Bendo")
        bus = await add_submission(services.db, budi, "Bus desa ke pasar setiap pagi", kind="idea")
        for n, who in enumerate(("1001", "1003")):
            await services.core.handle(
                Incoming(
                    channel="telegram",
                    user_id=who,
                    chat_id=who,
                    kind=InputKind.COMMAND,
                    received_at=utcnow(),
                    message_id=f"s{n}",
                    text=f"/dukung {bus}",
                    command="dukung",
                    args=str(bus),
                    language_hint="id",
                )
            )
    links = tmp_path / "links.csv"
    links.write_text(f"code,section\n{road},4.1\n{bus},4.2\n", encoding="utf-8")
    await asyncio.to_thread(cli, settings, "link", str(links), "--apply")

    today = utcnow().astimezone(settings.zone).date().isoformat()
    shown = await asyncio.to_thread(CliRunner().invoke, digest, ["--since", today], obj=settings)
    assert shown.exit_code == 0, shown.output
    chapter = shown.output[shown.output.index("MASTERPLAN") :]
    assert chapter.splitlines()[:6] == [
        "MASTERPLAN",
        "Masuk bagian masterplan pada periode ini:",
        f"• {road} → 4.1 Jalan dan Jembatan Desa (Kelayakan Hidup, Bendo)",
        f"• {bus} → 4.2 Transportasi Umum Terpadu (Kelayakan Hidup, Maospati)",
        "Bagian yang paling banyak melibatkan warga pada periode ini (pengirim dan pendukung):",
        "• 4.2 Transportasi Umum Terpadu: 3 warga",
    ]
    assert chapter.splitlines()[6] == "• 4.1 Jalan dan Jembatan Desa: 1 warga"
    as_json = await asyncio.to_thread(CliRunner().invoke, digest, ["--since", today, "--format", "json"], obj=settings)
    assert json.loads(as_json.output)["masterplan"]["sections"][0] == {
        "number": "4.2",
        "title": "Transportasi Umum Terpadu",
        "residents": 3,
    }
