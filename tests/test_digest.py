"""The weekly digest's figures, words and forms: computed on a real SQLite file, rendered
in both languages, asked for by an official in chat and printed by the CLI."""

from __future__ import annotations

import json
import sqlite3
import struct
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from bot.cli_digest import digest as digest_cli
from bot.digest_chart import render_chart
from bot.digest_service import make_digest_command
from handlers.digest import (
    Change,
    DigestRows,
    GroupCount,
    Period,
    PeriodError,
    Sample,
    compute_digest,
    parse_period,
    render_html,
    render_markdown,
    render_text,
    to_json,
)
from handlers.i18n import Catalog
from storage.database import Database, location, to_db
from storage.database import connect as connect_db
from storage.digest_queries import connect_readonly, query_plans, read_digest_rows
from tests import dbtools

JAKARTA = ZoneInfo("Asia/Jakarta")
W48 = Period.iso_week(2026, 48, JAKARTA)  # Mon 23 - Sun 29 November 2026
PERSONAL = (
    "Jalan di depan rumah saya rusak parah dan berlubang besar, nama saya Sari Wulandari, "
    "hubungi 0812-3456-7890 atau sari.w@contoh.id, NIK 3520 1234 5678 9012."
)


def local(day: int, hour: int = 10, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=JAKARTA)


async def seed_weeks(db_path: Path | str) -> None:
    """Two weeks of submissions with figures small enough to count by hand.

    Week 47 (16-22 Nov): 3 living reports (Maospati 1, Plaosan 2), 1 environment (Plaosan).
    Week 48 (23-29 Nov): living 4 reports (jalan 3, pju 1) + 2 ideas (7 and 2 supports),
    environment 1, economy idea 1 (Poncol), 2 untagged; plus one hidden living report and
    one report 10 minutes into 30 Nov local time (= 29 Nov UTC), which belong to neither."""
    rows: list[tuple] = []

    def add(
        code: str,
        when: datetime,
        kind: str,
        pillar: str | None,
        subtopic: str | None,
        area: str | None,
        text: str,
        supports: int = 0,
        hidden: int = 0,
        status: str = "new",
    ) -> None:
        rows.append(
            (
                code,
                kind,
                pillar,
                subtopic,
                text,
                "id",
                area,
                "telegram",
                status,
                hidden,
                supports,
                to_db(when),
                to_db(when),
                to_db(when),
            )
        )

    filler = "Mohon segera ditindaklanjuti karena sangat mengganggu warga sekitar."
    add("W47AA1", local(16), "report", "living", "jalan", "Maospati", f"Jalan rusak. {filler}")
    add("W47AA2", local(18), "report", "living", "jalan", "Plaosan", f"Jalan licin. {filler}")
    add("W47AA3", local(20), "report", "living", "pju", "Plaosan", f"Lampu mati. {filler}")
    add("W47AA4", local(21), "report", "environment", "sampah", "Plaosan", f"Sampah menumpuk. {filler}")
    add("W48AA2", local(23, 8), "report", "living", "jalan", "Maospati", PERSONAL, supports=5)
    add("W48AA3", local(24), "report", "living", "jalan", "Maospati", f"Jalan ke pasar retak. {filler}", supports=1)
    add("W48AA4", local(25), "report", "living", "jalan", "Maospati", f"Aspal mengelupas. {filler}")
    add("W48AA5", local(26), "report", "living", "pju", "Plaosan", f"PJU di desa padam. {filler}", supports=3)
    add(
        "W48AA6",
        local(26),
        "idea",
        "living",
        "transportasi",
        "Maospati",
        "Bangun halte bus yang teduh di depan pasar Maospati untuk lansia.",
        supports=7,
    )
    add(
        "W48AA7",
        local(27),
        "idea",
        "living",
        "transportasi",
        "Maospati",
        "Tambah trayek angkot ke terminal setiap pagi untuk anak sekolah.",
        supports=1,
    )
    # Submitted two weeks earlier, supported this week: the week's most-supported idea.
    add(
        "W46AA1",
        local(10),
        "idea",
        "society",
        "sekolah",
        "Plaosan",
        "Taman baca anak di balai desa Plaosan, buka sore hari.",
        supports=4,
        status="in_masterplan",
    )
    add("W48AA8", local(27), "report", "environment", "sampah", "Plaosan", f"Sungai penuh sampah. {filler}")
    add("W48AA9", local(28), "idea", "economy", "umkm", "Poncol", "Pelatihan pemasaran daring untuk UMKM keripik.")
    add("W48AB2", local(28), "report", None, None, None, f"Ada masalah di desa kami. {filler}")
    add("W48AB3", local(29, 23, 30), "report", None, None, None, f"Tolong dibantu segera. {filler}")
    add("W48AB4", local(25), "report", "living", "jalan", "Maospati", "Tersembunyi: kata kasar", hidden=1)
    add("W49AA2", local(30, 0, 10), "report", "living", "jalan", "Maospati", f"Minggu depan. {filler}")
    async with connect_db(db_path) as db, db.transaction() as conn:  # the file, or a PostgreSQL URL
        await conn.executemany(
            "INSERT INTO submissions (code, kind, pillar, subtopic, text, language, area, channel, "
            "status, hidden, supports, created_at, updated_at, status_changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        ids = {code: i for code, i in await conn.execute_fetchall("SELECT code, id FROM submissions")}

        async def move(code: str, to_status: str, when: datetime, note: str | None = None) -> None:
            await conn.execute(
                "INSERT INTO status_history (submission_id, from_status, to_status, note, actor, created_at) "
                "VALUES (?, 'new', ?, ?, 'telegram:1', ?)",
                (ids[code], to_status, note, to_db(when)),
            )
            await conn.execute(
                "UPDATE submissions SET status = ?, status_changed_at = ?, status_note = ?, "
                "forwarded_to = CASE WHEN ? = 'forwarded' THEN ? ELSE forwarded_to END "
                "WHERE id = ?",
                (to_status, to_db(when), note, to_status, note, ids[code]),
            )

        for user in range(1, 5):
            await conn.execute(
                "INSERT INTO users (id, channel, platform_id, chat_id, language, consent_version, consent_at, "
                "created_at) VALUES (?, 'telegram', ?, ?, 'id', '2026-11', ?, ?)",
                (user, f"9{user}", f"9{user}", to_db(local(1)), to_db(local(1))),
            )
        for code, user, when in (
            ("W46AA1", 1, local(12)),
            ("W46AA1", 2, local(24)),
            ("W46AA1", 3, local(25)),
            ("W46AA1", 4, local(28)),
            ("W48AA6", 1, local(27)),
        ):
            await conn.execute(
                "INSERT INTO supports (submission_id, user_id, created_at) VALUES (?, ?, ?)",
                (ids[code], user, to_db(when)),
            )

        await move("W47AA1", "reviewed", local(20))  # last week: not this week's movement
        await move("W48AA3", "reviewed", local(25))
        await move("W48AA4", "reviewed", local(26))
        await move("W48AA4", "forwarded", local(27), "Dinas PUPR, hubungi Pak Joko 081234567890")
        await move("W47AA4", "in_masterplan", local(28), "Program Kali Bersih 2027")
        await move("W48AA5", "rejected", local(28))
        await move("W48AB4", "reviewed", local(27))  # hidden: left out


@pytest.fixture
async def seeded(settings) -> Path | str:
    """The two weeks in the test's database (the engine's: the SQLite file or the schema's URL)."""
    path = location(settings)
    await seed_weeks(path)
    return path


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load("id")


# Periods ------------------------------------------------------------------------------------
def test_last_week_is_monday_to_sunday_in_jakarta_time():
    """A Monday-morning digest covers the week before, cut at local midnight."""
    period = Period.week_before(local(30, 7), JAKARTA)
    assert period == W48
    assert to_db(period.start) == "2026-11-22T17:00:00.000000+00:00"
    assert to_db(period.end) == "2026-11-29T17:00:00.000000+00:00"
    assert period.label == "2026-W48"
    assert period.previous == Period.iso_week(2026, 47, JAKARTA)


@pytest.mark.parametrize(
    "typed, label",
    [
        ("", "2026-W48"),
        ("minggu lalu", "2026-W48"),
        ("Last Week", "2026-W48"),
        ("2026-W45", "2026-W45"),
        ("w45", "2026-W45"),
        ("2026-11-01..2026-11-15", "2026-11-01..2026-11-15"),
    ],
)
def test_periods_are_read_the_way_officials_type_them(typed, label):
    assert parse_period(typed, now=local(30, 9), zone=JAKARTA).label == label


def test_this_week_runs_from_monday_until_now():
    period = parse_period("minggu ini", now=local(2, 15, month=12), zone=JAKARTA)
    assert period.start == local(30, 0) and period.end == local(2, 15, month=12)


@pytest.mark.parametrize("typed", ["kemarin dulu", "2026-W60", "2026-11-15..2026-11-01", "2026-02-30..2026-03-02"])
def test_unreadable_periods_are_refused(typed):
    with pytest.raises(PeriodError):
        parse_period(typed, now=local(30, 9), zone=JAKARTA)


# Figures ---------------------------------------------------------------------------------------
async def test_totals_by_pillar_and_kind_with_change_against_last_week(seeded):
    d = compute_digest(W48, read_digest_rows(seeded, W48), regency="Kabupaten Magetan")
    assert d.total == Change(10, 4)  # hidden and next week's report are not counted
    assert d.by_kind == {"report": Change(7, 4), "idea": Change(3, 0)}
    assert d.by_pillar["living"] == Change(6, 3)
    assert d.by_pillar["environment"] == Change(1, 1)
    assert d.by_pillar["economy"] == Change(1, 0)
    assert d.by_pillar["untagged"] == Change(2, 0)
    assert d.by_pillar_kind["living"] == {"report": Change(4, 3), "idea": Change(2, 0)}
    assert d.by_pillar["living"].percent == 100.0


async def test_pillar_detail_has_leading_subtopics_top_ideas_and_redacted_quotes(seeded):
    d = compute_digest(W48, read_digest_rows(seeded, W48))
    living = next(s for s in d.sections if s.pillar == "living")
    assert [(t.subtopic, t.count) for t in living.subtopics] == [
        ("jalan", Change(3, 2)),
        ("transportasi", Change(2, 0)),
        ("pju", Change(1, 1)),
    ]
    assert [(i.code, i.supports) for i in living.ideas] == [("W48-AA6", 7), ("W48-AA7", 1)]
    assert 2 <= len(living.quotes) <= 3
    quote = living.quotes[0]
    assert quote.code == "W48-AA2"  # the most-supported report speaks first
    for leaked in ("Sari", "Wulandari", "0812", "3456", "sari.w@", "3520"):
        assert leaked not in quote.text
    for mask in ("[nama]", "[telepon]", "[email]", "[NIK]"):
        assert mask in quote.text


def test_a_name_introduced_at_the_start_of_a_sentence_is_masked_in_quotes():
    d = compute_digest(
        W48,
        DigestRows(
            current=[GroupCount("living", "report", "Barat", "jalan", "new", 1)],
            previous=[],
            quotes=[
                Sample(
                    code="W48AC2",
                    pillar="living",
                    kind="report",
                    subtopic="jalan",
                    area="Barat",
                    text="Nama saya Sari Wulandari. Jalan di depan rumah rusak parah sejak bulan lalu.",
                    supports=1,
                    status="new",
                    created_at=local(24),
                    status_changed_at=local(24),
                )
            ],
        ),
    )
    assert d.sections[0].quotes[0].text.endswith("rusak parah sejak bulan lalu.")
    assert "Sari" not in d.sections[0].quotes[0].text


async def test_areas_needs_of_the_team_and_status_movement(seeded):
    d = compute_digest(W48, read_digest_rows(seeded, W48))
    areas = {a.area: a.count for a in d.areas}
    assert areas == {"Maospati": Change(5, 1), "Plaosan": Change(2, 3), None: Change(2, 0), "Poncol": Change(1, 0)}
    assert [a.area for a in d.rising] == ["Maospati", "Poncol"]
    assert d.untagged == Change(2, 0) and d.untagged_open == 2
    assert [b.code for b in d.untagged_oldest] == ["W48-AB2", "W48-AB3"]
    # Longest without a status change: W47-AA2 has waited since 18 Nov, 11 days by the end.
    assert d.waiting[0].code == "W47-AA2" and d.waiting[0].days == 11
    assert "W48-AB2" not in [b.code for b in d.waiting]  # already listed as untagged
    assert d.movement == {"reviewed": 2, "forwarded": 1, "in_masterplan": 1, "resolved": 0, "rejected": 1}


async def test_outcomes_supports_and_the_backlog_as_the_team_reads_them(seeded, catalog):
    """Forwarded and masterplan items by code with their agency or programme (masked);
    supports gained this week, the week's most-supported idea even when it is older; the
    backlog aged to the day the digest is made, with its kecamatan; areas as a table."""
    d = compute_digest(W48, read_digest_rows(seeded, W48), regency="Kabupaten Magetan", as_of=local(2, 9, month=12))
    text = render_text(d, catalog, "id")
    assert (
        "Diteruskan ke instansi:\n• W48-AA4 → Dinas PUPR, hubungi Pak [nama] [telepon] (Kelayakan Hidup, Maospati)"
        in text
    )
    assert "Masuk masterplan:\n• W47-AA4: Program Kali Bersih 2027 (Lingkungan, Plaosan)" in text
    assert "Dukungan baru: 4 untuk 2 kiriman." in text
    gains = text.split("Ide yang paling banyak mendapat dukungan", 1)[1]
    assert gains.index("W46-AA1: Taman baca anak") < gains.index("W48-AA6")
    assert "(+3 pada periode ini; total 4 dukungan)" in gains
    assert "Paling lama belum berpilar (per 2 Desember 2026):\n• W48-AB2 (baru, Tidak disebutkan, 3 hari)" in text
    assert "• W47-AA3 (baru, Plaosan, 11 hari)" in text  # 20 Nov -> 2 Dec, not -> 29 Nov
    table = text.split("PER KECAMATAN\n", 1)[1].splitlines()
    assert table[0].split() == ["Kecamatan", "Periode", "ini", "Sebelumnya", "Perubahan"]
    assert table[2].split() == ["Maospati", "5", "1", "+4"]
    assert any(line.split() == ["Poncol", "1", "0", "+1"] for line in table)
    data = to_json(d)
    assert data["supports"]["gained"] == 4 and data["supports"]["top_ideas"][0]["gained"] == 3
    assert {m["code"]: m["status"] for m in data["moves"]} == {"W48-AA4": "forwarded", "W47-AA4": "in_masterplan"}
    assert "081234567890" not in json.dumps(data)
    html = render_html(d, catalog, "id")
    assert "<th" in html and ">Maospati</td>" in html


async def test_an_empty_week_says_so(tmp_path):
    path = tmp_path / "empty.db"
    async with Database(path):
        pass
    d = compute_digest(W48, read_digest_rows(path, W48), regency="Kabupaten Magetan")
    assert d.empty
    assert "Tidak ada aspirasi yang masuk" in render_text(d, Catalog.load(), "id")


@pytest.mark.sqlite_only  # SQLite's query plans (PostgreSQL's planner picks by statistics)
async def test_digest_queries_read_their_indexes_not_the_table(seeded):
    """At 1M rows a full scan is the difference between 20 ms and a second (bench_digest)."""
    conn = connect_readonly(seeded)
    try:
        plans = query_plans(conn, W48)
    finally:
        conn.close()
    assert any("COVERING INDEX submissions_week" in step for step in plans["groups"])
    assert any("supports_created" in step for step in plans["supports"] + plans["gains"])
    for name, steps in plans.items():
        assert not any(step.startswith("SCAN submissions") or step.startswith("SCAN s ") for step in steps), (
            name,
            steps,
        )


@pytest.mark.sqlite_only  # the file opened mode=ro (PostgreSQL's: tests/test_postgres_reads.py)
async def test_the_read_connection_cannot_write(seeded):
    conn = connect_readonly(seeded)
    try:
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM submissions")
    finally:
        conn.close()


# Words ------------------------------------------------------------------------------------------
async def test_text_digest_in_indonesian_reads_like_a_report(seeded, catalog):
    d = compute_digest(W48, read_digest_rows(seeded, W48), regency="Kabupaten Magetan")
    text = render_text(d, catalog, "id")
    assert text.startswith("Ringkasan Mingguan SuaraWarga – Kabupaten Magetan\nPeriode: 23–29 November 2026 (2026-W48)")
    assert "Total masuk: 10; periode sebelumnya 4 (+6)." in text  # small numbers: counts, no %
    assert "• Kelayakan Hidup: 6 (+3) – 4 laporan, 2 ide" in text
    assert "• Belum ditentukan: 2 (sebelumnya 0)" in text
    assert "• W48-AA6: Bangun halte bus" in text and "(7 dukungan)" in text
    assert "Kenaikan tertajam: Maospati (+4), Poncol (sebelumnya 0)" in text
    assert "%" not in text
    assert "• ditinjau: 2" in text and "• diteruskan: 1" in text and "• ditolak: 1" in text
    assert "0812" not in text and "sari.w@" not in text


async def test_english_markdown_html_and_json_forms(seeded):
    catalog = Catalog.load("id")
    d = compute_digest(W48, read_digest_rows(seeded, W48), regency="Kabupaten Magetan")
    text = render_text(d, catalog, "en", subtopic_label=lambda p, s, lang: s.title())
    assert "Received: 10; previous period 4 (+6)." in text
    assert "Leading topics: Jalan 3 (+1)" in text
    assert "(1 supporter)" in text and "(7 supporters)" in text
    md = render_markdown(d, catalog, "en")
    assert "| Smart Living | 4 | 2 | 6 | +3 |" in md
    assert "| District | This period | Before | Change |" in md and "| Maospati | 5 | 1 | +4 |" in md
    assert "\\[nama\\]" in md  # residents' words never become markup
    html = render_html(d, catalog, "id", chart_cid="<chart@x>")
    assert '<img src="cid:chart@x"' in html and "<li>" in html and "&lt;" not in d.regency
    data = json.loads(json.dumps(to_json(d)))
    assert data["period"]["label"] == "2026-W48"
    assert data["period"]["start"] == "2026-11-23T00:00:00+07:00"
    assert data["totals"]["by_pillar"]["living"] == {"current": 6, "previous": 3, "change": 3, "change_percent": 100.0}
    assert data["totals"]["by_area"]["Maospati"]["current"] == 5
    assert data["totals"]["by_status"]["reviewed"] == 1  # W48-AA3; W48-AA4 moved on to forwarded
    assert data["status_movement"]["forwarded"] == 1


async def test_chart_is_a_portrait_png_for_phones(seeded, catalog):
    d = compute_digest(W48, read_digest_rows(seeded, W48))
    png = render_chart(d, catalog, "id")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1080, 1350)


# The official's /ringkasan -------------------------------------------------------------------
async def test_official_asks_for_a_week_in_chat_and_gets_text_chart_and_spreadsheet(make_settings, seeded):
    settings = make_settings()
    catalog = Catalog.load()
    command = make_digest_command(settings, catalog)
    async with connect_db(seeded) as db, db.transaction() as conn:  # the desk calls inside the core's transaction
        replies = await command(
            conn,
            actor="telegram:1",
            language="id",
            command="digest",
            args="2026-W48",
            msg=None,
            now=local(2, 9, month=12),
        )
        refused = await command(
            conn,
            actor="telegram:1",
            language="en",
            command="digest",
            args="yesterday-ish",
            msg=None,
            now=local(2, 9, month=12),
        )
    text, chart, sheet = replies
    assert "Periode: 23–29 November 2026 (2026-W48)" in text.text
    assert chart.image is not None and chart.image.data[:4] == b"\x89PNG"
    assert "Minggu ke-48" in chart.text and "Minggu ke-47" in chart.text
    assert sheet.document is not None and sheet.document.filename == "suarawarga-2026-W48.xlsx"
    assert sheet.document.data[:2] == b"PK"  # an XLSX is a zip
    assert len(refused) == 1 and "2026-W48" in refused[0].text and "/digest" in refused[0].text


# CLI --------------------------------------------------------------------------------------------
def test_cli_html_carries_its_chart_and_the_chart_can_be_written_to_a_file(make_settings, seeded, tmp_path):
    settings = make_settings()
    chart = tmp_path / "grafik.png"
    result = CliRunner().invoke(
        digest_cli, ["--week", "2026-W48", "--format", "html", "--chart", str(chart)], obj=settings
    )
    assert result.exit_code == 0, result.output
    assert '<img src="data:image/png;base64,iVBORw0KGgo' in result.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_help_and_an_empty_week_say_what_they_mean(make_settings, tmp_path):
    help_text = CliRunner().invoke(digest_cli, ["--help"]).output
    assert "--since YYYY-MM-DD" in help_text and "%Y" not in help_text
    path = tmp_path / "fresh.db"
    import asyncio

    async def fresh() -> None:
        async with Database(path):
            pass

    asyncio.run(fresh())
    result = CliRunner().invoke(digest_cli, [], obj=make_settings(database_path=path, database_url=None))
    assert result.exit_code == 0
    assert "Periode yang dilihat:" in result.stderr and "--week" in result.stderr
    assert "Tidak ada aspirasi" in result.stdout


def test_cli_dry_run_prints_the_digest_and_sends_nothing(make_settings, seeded):
    settings = make_settings(digest_emails="tim@magetan.go.id", smtp_host="127.0.0.1", smtp_port=9)
    result = CliRunner().invoke(digest_cli, ["--week", "2026-W48"], obj=settings)
    assert result.exit_code == 0, result.output
    assert "Total masuk: 10" in result.output
    assert dbtools.scalar(seeded, "SELECT count(*) FROM digest_deliveries") == 0


def test_cli_json_carries_period_and_totals_for_machines(make_settings, seeded):
    """Monday to Thursday, against the four days before it (19-22 November)."""
    settings = make_settings()
    result = CliRunner().invoke(
        digest_cli, ["--since", "2026-11-23", "--until", "2026-11-26", "--format", "json"], obj=settings
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["period"]["label"] == "2026-11-23..2026-11-26"
    assert data["period"]["previous_start"] == "2026-11-19T00:00:00+07:00"
    assert data["totals"]["all"]["current"] == 5 and data["totals"]["all"]["previous"] == 2
    assert data["totals"]["by_kind"]["idea"]["current"] == 1
    assert set(data["totals"]) == {"all", "by_pillar", "by_kind", "by_pillar_kind", "by_area", "by_status"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--week", "2026-W60"], "no ISO week 60"),
        (["--week", "2026-W48", "--since", "2026-11-01"], "either --week or --since"),
        (["--until", "2026-11-01"], "--until needs --since"),
        (["--lang", "fr"], "no catalogue for 'fr'"),
    ],
)
def test_cli_bad_arguments_exit_2_with_a_clear_message(make_settings, seeded, args, message):
    result = CliRunner().invoke(digest_cli, args, obj=make_settings())
    assert result.exit_code == 2
    assert message in result.output
