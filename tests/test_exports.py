"""Exports (issue 6): every format read back and compared with the database.

On each engine (tests/conftest.py): a real SQLite file in tmp_path or a fresh PostgreSQL
schema, migrated by the storage layer like production; rows are seeded with plain SQL
(tests/dbtools.py) so each test states exactly what is in the database.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from openpyxl.utils import get_column_letter

import bot.exports as exports_module
from bot.exports import (
    COLUMNS,
    CONTACT_COLUMNS,
    FORMATS,
    ContactNotAllowed,
    ExportError,
    ExportFilter,
    LocalTime,
    export,
    export_document,
    make_export_command,
    redact_text,
)
from handlers.domain import PILLARS, TrackingCode
from handlers.i18n import Catalog
from handlers.messages import Incoming, InputKind
from handlers.privacy import redact
from storage.database import Database, location, to_db
from storage.database import connect as connect_db
from tests import dbtools
from tests.dbtools import is_postgres

JAKARTA = ZoneInfo("Asia/Jakarta")
T0 = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # 10:00 in Magetan


# Seeding ---------------------------------------------------------------------------------
@pytest.fixture
def db_path(settings, migrated: Path) -> Path | str:
    """The test's database (the SQLite file, or the PostgreSQL schema's URL), migrated."""
    path = location(settings)
    if is_postgres(path):
        asyncio.run(_migrate(settings))
    else:
        shutil.copyfile(migrated, path)
    conn = dbtools.connect(path)
    conn.executemany(
        "INSERT INTO users (id, channel, platform_id, chat_id, display_name, language, consent_version, "
        "consent_at, created_at) VALUES (?, ?, ?, ?, ?, 'id', '2026-11', ?, ?)",
        [
            (1, "whatsapp", "6281234500001", "6281234500001", "Sari Wulandari", to_db(T0), to_db(T0)),
            (2, "telegram", "555000111", "555000111", "Budi Santoso", to_db(T0), to_db(T0)),
        ],
    )
    conn.commit()
    conn.close()
    return path


async def _migrate(settings) -> None:
    async with connect_db(settings):
        pass


_serial = iter(range(10**6))


def add(db: Path, **fields: object) -> str:
    """Insert one submission; returns its code. Unnamed fields get plain defaults."""
    n = next(_serial)
    code = "".join("23456789ABCDEFGHJKLMNPQRSTUVWXYZ"[(n // 32**i) % 32] for i in range(6))
    created = fields.pop("created", T0 + timedelta(hours=n))
    row = {
        "code": code,
        "user_id": 1,
        "kind": "report",
        "pillar": "living",
        "subtopic": "transport",
        "text": f"Jalan berlubang nomor {n} di dekat pasar",
        "language": "id",
        "area": "Plaosan",
        "latitude": None,
        "longitude": None,
        "anonymous": 0,
        "submitter_name": "Sari Wulandari",
        "channel": "whatsapp",
        "status": "new",
        "hidden": 0,
        "supports": 0,
        "created_at": to_db(created),
        "updated_at": to_db(created),
        "status_changed_at": to_db(created),
    }
    row.update(fields)
    if row["anonymous"]:
        row["submitter_name"] = None
    conn = dbtools.connect(db)
    conn.execute(f"INSERT INTO submissions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    conn.commit()
    conn.close()
    return code


def db_rows(db: Path | str, where: str = "hidden = 0") -> dict[str, Any]:
    conn = dbtools.connect(db)
    rows = {
        str(TrackingCode(r["code"])): r for r in conn.execute(f"SELECT * FROM submissions WHERE {where} ORDER BY id")
    }
    conn.close()
    return rows


def run(db: Path, fmt: str, filters: ExportFilter = ExportFilter(), **kw: object) -> bytes:
    out = io.BytesIO()
    export(db, fmt, out, filters, zone=JAKARTA, **kw)
    return out.getvalue()


def read_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "Excel needs the UTF-8 byte-order mark"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def read_xlsx(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def sheet_records(ws) -> list[dict[str, object]]:
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=False)) for r in rows[1:]]


@pytest.fixture
def varied(db_path: Path) -> Path:
    """A small but awkward database: every kind of value the formats must carry."""
    add(
        db_path,
        text='Lampu PJU mati, “gelap” sekali 🙏; warga bilang "bahaya"\nbaris kedua, café',
        latitude=-7.6543219876543,
        longitude=111.3312345678901,
        supports=4,
    )
    add(
        db_path,
        kind="idea",
        pillar="environment",
        subtopic="waste",
        text="Usul bank sampah, 50% hasilnya untuk RT",
        area="Magetan",
        anonymous=1,
        user_id=2,
        channel="telegram",
        supports=9,
        status="in_masterplan",
        status_note="Program Magetan Bersih 2027",
        auto_pillar="environment",
        photo_ref="AgACAgUAAx0",
        status_changed_at=to_db(T0 + timedelta(days=2)),
    )
    add(
        db_path,
        pillar=None,
        subtopic=None,
        area=None,
        text="Tidak tahu masuk mana, pokoknya ramai",
        updated_at=to_db(T0 + timedelta(days=3)),
    )
    add(
        db_path,
        pillar="governance",
        subtopic="civil-registration",
        text="KTP belum jadi 3 bulan",
        latitude=-7.7,
        longitude=111.4,
        hidden=1,
    )  # hidden: spam or abuse, never exported
    add(
        db_path,
        kind="idea",
        pillar="economy",
        subtopic="agriculture",
        text="Pasar tani tiap Minggu",
        latitude=-7.61,
        longitude=111.29,
        area="Sukomoro",
        status="forwarded",
        forwarded_to="Dinas Pertanian",
        status_note="Dinas Pertanian",
        auto_pillar="living",
    )  # re-tagged by an official
    add(
        db_path,
        text="Saluran mampet, hubungi saya 081234567890",
        status="rejected",
        status_note="Ditolak: sudah ditangani, Pak Budi 081234567890",
        area=None,
        latitude=-7.6012,
        longitude=111.4433,
    )  # GPS only: Maospati's seat is nearest
    return db_path


def expect_local(stamp: str, exported: str) -> None:
    value = datetime.fromisoformat(exported)
    assert value.utcoffset() == timedelta(hours=7)
    assert value == datetime.fromisoformat(stamp).replace(microsecond=0)


def public(value: float | None) -> float | None:
    """A coordinate as exports publish it: 3 decimals (about 100 m)."""
    return None if value is None else round(value, 3)


def check_record(record: dict[str, object], row: Any) -> None:
    """One exported submission against its database row (JSON types)."""
    assert record["code"] == str(TrackingCode(row["code"]))
    for key in ("kind", "pillar", "subtopic", "language", "status", "supports", "channel"):
        assert record[key] == row[key], key
    assert record["tagger_pillar"] == row["auto_pillar"]
    assert record["pillar_corrected"] is (row["pillar"] != row["auto_pillar"])
    assert record["latitude"] == public(row["latitude"]) and record["longitude"] == public(row["longitude"])
    if row["area"]:
        assert (record["area"], record["area_source"]) == (row["area"], "resident")
    assert record["text"] == redact(row["text"])
    assert record["anonymous"] is bool(row["anonymous"])
    assert record["has_photo"] is (row["photo_ref"] is not None)
    assert record["status_note"] == (redact(row["status_note"]) if row["status_note"] else None)
    assert record["forwarded_to"] == row["forwarded_to"]
    expect_local(row["created_at"], str(record["created_at"]))
    expect_local(row["updated_at"], str(record["updated_at"]))
    expect_local(row["status_changed_at"], str(record["status_changed_at"]))


# Round trips ---------------------------------------------------------------------------------
def test_csv_round_trip_matches_database(varied: Path) -> None:
    """CSV read with the csv module gives back every visible submission, value for value."""
    data = run(varied, "csv")
    records = read_csv(data)
    rows = db_rows(varied)
    assert list(records[0]) == list(COLUMNS)
    assert [r["code"] for r in records] == list(rows)  # oldest first, hidden left out
    for record in records:
        row = rows[record["code"]]
        assert record["text"] == redact(row["text"])
        assert record["anonymous"] == ("true" if row["anonymous"] else "false")
        assert int(record["supports"]) == row["supports"]
        for key in ("latitude", "longitude"):
            assert (float(record[key]) if record[key] else None) == public(row[key])
        for key in ("kind", "pillar", "subtopic", "status", "channel", "language", "forwarded_to"):
            assert (record[key] or None) == row[key]
        assert (record["tagger_pillar"] or None) == row["auto_pillar"]
        assert record["status_note"] == (redact(row["status_note"]) if row["status_note"] else "")
        assert record["has_photo"] == ("true" if row["photo_ref"] else "false")
        if row["area"]:
            assert (record["area"], record["area_source"]) == (row["area"], "resident")
        expect_local(row["created_at"], record["created_at"])
        expect_local(row["updated_at"], record["updated_at"])
        expect_local(row["status_changed_at"], record["status_changed_at"])


def test_jsonl_round_trip_matches_database(varied: Path) -> None:
    """Each JSON line is one submission with the documented fields and types."""
    lines = run(varied, "jsonl").decode("utf-8").splitlines()
    rows = db_rows(varied)
    records = [json.loads(line) for line in lines]
    assert [r["code"] for r in records] == list(rows)
    for record in records:
        assert list(record) == list(COLUMNS)
        check_record(record, rows[record["code"]])


@pytest.mark.parametrize("contact", [False, True])
def test_hand_built_json_lines_equal_the_records_json_dumps_would_write(varied: Path, contact: bool) -> None:
    """The fast JSON lines writer gives the same objects, keys in the same order."""
    conn = exports_module.connect_readonly(varied)
    try:
        slow = list(
            exports_module._records(
                exports_module._rows(conn, ExportFilter(), contact=contact),
                LocalTime(JAKARTA),
                contact,
                None,
                exact=contact,
            )
        )
    finally:
        conn.close()
    fast = [json.loads(line) for line in run(varied, "jsonl", include_contact=contact).splitlines()]
    assert fast == slow and [list(r) for r in fast] == [list(r) for r in slow]


def test_geojson_places_every_submission_gps_first_then_kecamatan(varied: Path) -> None:
    """GPS points (rounded, longitude first); the others at their kecamatan's seat, flagged
    approximate; one with neither keeps a null geometry, so no submission goes missing."""
    from bot.geo import Centroids

    collection = json.loads(run(varied, "geojson"))
    rows = db_rows(varied)
    assert collection["type"] == "FeatureCollection"
    assert [f["properties"]["code"] for f in collection["features"]] == list(rows)
    seats = Centroids.packaged()
    for feature in collection["features"]:
        row, props = rows[feature["properties"]["code"]], feature["properties"]
        assert feature["type"] == "Feature"
        check_record(props, row)
        if row["latitude"] is not None:
            assert feature["geometry"] == {
                "type": "Point",
                "coordinates": [public(row["longitude"]), public(row["latitude"])],
            }
            assert (props["location_source"], props["location_approximate"]) == ("gps", False)
        elif row["area"]:
            lat, lon = seats.centroid(row["area"])
            assert feature["geometry"] == {"type": "Point", "coordinates": [lon, lat]}
            assert (props["location_source"], props["location_approximate"]) == ("kecamatan", True)
        else:
            assert feature["geometry"] is None and props["location_source"] is None
    gps_only = next(f["properties"] for f in collection["features"] if f["properties"]["status"] == "rejected")
    assert (gps_only["area"], gps_only["area_source"]) == ("Maospati", "gps")


def test_exact_coordinates_never_leave_unless_internal(varied: Path) -> None:
    """Every format rounds GPS to 3 decimals; only the audited internal export keeps them."""
    for fmt in ("csv", "jsonl", "geojson", "xlsx"):
        data = run(varied, fmt)
        if fmt == "xlsx":
            data = b"".join(
                zipfile.ZipFile(io.BytesIO(data)).read(n) for n in zipfile.ZipFile(io.BytesIO(data)).namelist()
            )
        assert b"7.6543" not in data and b"111.3312" not in data, fmt
        assert b"7.654" in data, fmt
    (internal,) = [json.loads(line) for line in run(varied, "jsonl", include_contact=True).splitlines()][:1]
    assert internal["latitude"] == -7.6543219876543


def test_xlsx_has_summary_all_then_one_sheet_per_pillar(varied: Path) -> None:
    """Summary, all submissions, the six pillars in order, untagged last; frozen, filtered
    Indonesian headers; dates are dates; values in Indonesian; outcomes and map links."""
    book = read_xlsx(run(varied, "xlsx"))
    catalog = Catalog.load("id")
    assert book.sheetnames == [
        "Ringkasan",
        "Semua kiriman",
        *(catalog.text("id", f"pillars.{p}") for p in PILLARS),
        "Tanpa pilar",
    ]
    rows = db_rows(varied)
    seen = []
    for pillar, name in zip((*PILLARS, None), book.sheetnames[2:], strict=False):
        ws = book[name]
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith(
            f"A1:{get_column_letter(len(exports_module.XLSX_COLUMNS))}"
        )
        assert ws.column_dimensions["G"].width >= 60  # the text column is wide
        assert ws.page_setup.orientation == "landscape" and ws.page_setup.fitToWidth == 1
        assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.print_title_rows in ("1:1", "$1:$1")
        records = sheet_records(ws)
        for record in records:
            row = rows[record["Kode"]]
            assert row["pillar"] == pillar
            assert record["Isi"] == redact(row["text"])
            assert record["Anonim"] == ("ya" if row["anonymous"] else "tidak")
            assert record["Lintang"] == public(row["latitude"]) and record["Dukungan"] == row["supports"]
            created = datetime.fromisoformat(row["created_at"]).astimezone(JAKARTA).replace(tzinfo=None)
            assert isinstance(record["Masuk"], datetime)
            assert abs(record["Masuk"] - created) < timedelta(seconds=1)
            seen.append(record["Kode"])
    assert sorted(seen) == sorted(rows)
    everything = {r["Kode"]: r for r in sheet_records(book["Semua kiriman"])}
    assert list(everything) == list(rows)
    idea = everything[next(c for c, r in rows.items() if r["status"] == "in_masterplan")]
    assert (idea["Jenis"], idea["Pilar"], idea["Status"]) == ("Ide", "Lingkungan", "masuk masterplan")
    assert (idea["Catatan status"], idea["Ada foto"], idea["Pilar dikoreksi"]) == (
        "Program Magetan Bersih 2027",
        "ya",
        "tidak",
    )
    forwarded = next(r for r in everything.values() if r["Status"] == "diteruskan")
    assert (
        forwarded["Diteruskan ke"],
        forwarded["Pilar usulan sistem"],
        forwarded["Pilar"],
        forwarded["Pilar dikoreksi"],
    ) == ("Dinas Pertanian", "Kelayakan Hidup", "Ekonomi", "ya")
    assert forwarded["Peta"].startswith('=HYPERLINK("https://www.openstreetmap.org/?mlat=-7.610&')
    rejected = next(r for r in everything.values() if r["Status"] == "ditolak")
    assert "081234567890" not in rejected["Catatan status"]
    assert (rejected["Kecamatan"], rejected["Sumber kecamatan"]) == ("Maospati", "dari GPS")
    # Wrapped text gets a row tall enough for it (LibreOffice does not grow rows itself).
    two_lines = next(i for i, r in enumerate(everything.values(), start=2) if "\n" in r["Isi"])
    assert book["Semua kiriman"].row_dimensions[two_lines].height >= 30

    summary = [r for r in book["Ringkasan"].iter_rows(values_only=True)]
    by_label = {r[0]: r[1:4] for r in summary if r[0]}
    assert by_label["Kelayakan Hidup"] == (2, 0, 2)
    assert by_label["Ekonomi"] == (0, 1, 1)
    assert by_label["Tanpa pilar"] == (1, 0, 1)
    assert by_label["Sukomoro"] == (0, 1, 1)
    assert by_label["Tanpa kecamatan"] == (2, 0, 2)
    assert by_label["Plaosan"] == (1, 0, 1)  # the hidden one is not counted
    assert by_label["diteruskan"] == (0, 1, 1) and by_label["ditolak"] == (1, 0, 1)
    assert by_label["baru"] == (2, 0, 2)


def test_xlsx_speaks_english_when_asked(varied: Path) -> None:
    book = read_xlsx(run(varied, "xlsx", lang="en"))
    assert book.sheetnames[:4] == ["Summary", "All submissions", "Smart Governance", "Smart Branding"]
    assert book.sheetnames[-1] == "No pillar"
    record = sheet_records(book["All submissions"])[1]
    assert (record["Kind"], record["Pillar"], record["Status"]) == ("Idea", "Smart Environment", "in the masterplan")


def test_markdown_annex_reads_as_a_masterplan_chapter(db_path: Path) -> None:
    """Per pillar: counts, leading sub-topics, most-supported ideas first, quotes, areas."""
    add(db_path, kind="idea", text="Bus sekolah gratis untuk desa terpencil", supports=2)
    top = add(db_path, kind="idea", text="Jalur sepeda dari alun-alun ke terminal", supports=12, area="Magetan")
    add(db_path, text="Jembatan retak, hubungi Pak Joko 0812-3456-7890", supports=30)
    add(db_path, subtopic="utilities", text="PDAM mati tiga hari")
    text = run(db_path, "markdown").decode("utf-8")

    assert text.startswith("# Aspirasi Masyarakat\n")
    living = text.split("## Kelayakan Hidup\n", 1)[1].split("\n## ", 1)[0]
    assert "4 kiriman: 2 laporan dan 2 ide, dengan 44 dukungan warga." in living
    assert "- Jalan dan transportasi: 3 (75%)" in living
    ideas = living.split("### Ide dengan dukungan terbanyak", 1)[1]
    assert ideas.index(str(TrackingCode(top))) < ideas.index("Bus sekolah")
    assert "> “Jembatan retak, hubungi Pak \\[nama\\] \\[telepon\\]”" in living
    assert "0812" not in text and "Joko" not in text
    assert "| Plaosan | 2 | 1 | 32 |" in living
    assert "## Lingkungan\n\nBelum ada laporan atau ide untuk pilar ini." in text

    english = run(db_path, "markdown", lang="en").decode("utf-8")
    assert english.startswith("# Residents' Voices (Aspirasi Masyarakat)\n")
    assert "## Smart Living" in english and "- Roads and transport: 3 (75%)" in english


def test_annex_leaves_rejected_and_hidden_out_and_says_so(db_path: Path) -> None:
    """Rejected and hidden submissions are neither quoted nor counted in the public annex;
    the introduction gives both numbers. The kecamatan-by-pillar table is split in two
    tables of at most six columns, so it fits a portrait page."""
    add(db_path, text="Jalan desa rusak parah dekat balai desa", supports=3)
    add(
        db_path,
        text="Iklan judi online di tiang listrik harus dicopot",
        status="rejected",
        supports=50,
        status_note="Ditolak: bukan wewenang kabupaten",
    )
    add(db_path, text="Spam spam spam beli pulsa murah", hidden=1, supports=40)
    add(
        db_path,
        pillar="economy",
        subtopic=None,
        text="Harga pupuk di kios naik terus",
        area="Magetan",
        status="forwarded",
        forwarded_to="Dinas Pertanian",
        status_note="Dinas Pertanian",
    )
    text = run(db_path, "markdown").decode("utf-8")
    assert "merangkum 2 laporan dan ide" in text
    outcomes = text.split("## Tindak lanjut\n", 1)[1].split("\n## ", 1)[0]
    assert "- baru: 1" in outcomes and "- diteruskan: 1" in outcomes and "ditolak" not in outcomes
    assert "Diteruskan ke: Dinas Pertanian (1)." in outcomes
    assert "Tidak termasuk: 1 kiriman yang ditolak dan 1 yang disembunyikan" in text
    assert "judi" not in text and "Spam" not in text and "dicopot" not in text
    grid = text.split("## Sebaran per kecamatan dan pilar\n", 1)[1]
    tables = [block.strip() for block in grid.split("\n\n") if block.strip().startswith("|")]
    assert len(tables) == 2
    assert all(block.splitlines()[0].count("|") - 1 <= 6 for block in tables)
    assert tables[0].splitlines()[0] == "| Kecamatan | Tata Kelola Pemerintahan | Citra Daerah & Wisata | Ekonomi |"
    assert "| Magetan | 0 | 0 | 1 |" in tables[0]
    assert "| Plaosan | 1 | 0 | 0 | 1 |" in tables[1]
    add(db_path, kind="idea", text="Taman baca di balai desa untuk anak-anak", supports=1)
    english = run(db_path, "markdown", lang="en").decode("utf-8")
    assert "(1 supporter, Plaosan)" in english and "1 supports" not in english


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_database_gives_a_valid_file_in_every_format(db_path: Path, fmt: str) -> None:
    data = run(db_path, fmt)
    if fmt == "csv":
        assert data.decode("utf-8-sig").splitlines() == [",".join(COLUMNS)]
    elif fmt == "jsonl":
        assert data == b""
    elif fmt == "geojson":
        assert json.loads(data) == {"type": "FeatureCollection", "features": []}
    elif fmt == "xlsx":
        book = read_xlsx(data)
        assert book.sheetnames[:2] == ["Ringkasan", "Semua kiriman"] and len(book.sheetnames) == 8
        assert all(sheet_records(book[name]) == [] for name in book.sheetnames[1:])
    else:
        assert data.decode().startswith("# Aspirasi Masyarakat")
        assert "Belum ada laporan atau ide warga untuk cakupan ini." in data.decode()


# Safety of the content -------------------------------------------------------------------------
ATTACK = "=cmd|' /C calc'!A0 jalan rusak"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_cannot_become_formulas(db_path: Path, start: str) -> None:
    """A text starting like a formula comes out with a leading apostrophe in CSV."""
    add(db_path, text=start + "1+1 lubang di jalan desa")
    (record,) = read_csv(run(db_path, "csv"))
    assert record["text"] == "'" + start + "1+1 lubang di jalan desa"


def test_formula_injection_neutralised_in_csv_and_xlsx(db_path: Path) -> None:
    add(db_path, text=ATTACK)
    (record,) = read_csv(run(db_path, "csv"))
    assert record["text"] == "'" + ATTACK
    cell = read_xlsx(run(db_path, "xlsx"))["Kelayakan Hidup"]["G2"]
    # XLSX: stored as text (never a formula) and quote-prefixed, so editing keeps it text.
    assert cell.value == ATTACK and cell.data_type == "s" and cell.quotePrefix
    assert read_xlsx(run(db_path, "xlsx"))["Kelayakan Hidup"]["A2"].quotePrefix is False


def test_negative_coordinates_stay_numbers(db_path: Path) -> None:
    add(db_path, latitude=-7.65, longitude=111.3)
    (record,) = read_csv(run(db_path, "csv"))
    assert record["latitude"] == "-7.65"


PERSONAL = "Hubungi Bu Sari di 0812-3456-7890 atau sari.w@example.com, NIK 3520 1234 5678 9012"


@pytest.mark.parametrize("fmt", FORMATS)
def test_personal_data_in_text_is_masked_in_every_format(db_path: Path, fmt: str) -> None:
    add(db_path, text=PERSONAL, latitude=-7.6, longitude=111.3)
    data = run(db_path, fmt)
    content = (
        json.dumps(
            [str(c) for ws in read_xlsx(data) for r in ws.iter_rows(values_only=True) for c in r], ensure_ascii=False
        )
        if fmt == "xlsx"
        else data.decode("utf-8-sig")
    )
    content = content.replace("\\[", "[").replace("\\]", "]")  # Markdown escapes brackets
    for secret in ("0812", "sari.w@", "3520 1234", "Sari", "6281234500001", "Wulandari"):
        assert secret not in content, secret
    assert "[telepon]" in content and "[email]" in content and "[NIK]" in content
    assert "[nama]" in content


def test_exports_mask_exactly_what_privacy_redact_masks() -> None:
    """One definition of personal data: exports call handlers.privacy.redact as is."""
    for text in (
        PERSONAL,
        "Saya Pak Budi dari Plaosan",
        "tidak ada data pribadi",
        "",
        "08123456789Pak Budi",
        "nama saya Joko",
        "NAMA SAYA Joko",
        "I AM Sari",
    ):
        assert redact_text(text) == redact(text)


def test_local_time_cache_matches_exact_conversion_across_offset_changes() -> None:
    """Per-hour caching gives the exact answer, also where DST or :30 offsets change things."""
    for zone in ("Asia/Jakarta", "Europe/Berlin", "Australia/Adelaide", "Asia/Kathmandu"):
        local = LocalTime(ZoneInfo(zone))
        start = datetime(2026, 3, 28, tzinfo=UTC)  # spans Berlin's and Adelaide's changes
        for minutes in range(0, 60 * 24 * 9, 7):
            stamp = to_db(start + timedelta(minutes=minutes, seconds=minutes % 60))
            assert local(stamp) == local.exact(stamp), (zone, stamp)


# Filters ---------------------------------------------------------------------------------------
@pytest.fixture
def filtered(db_path: Path) -> dict[str, str]:
    return {
        "early": add(db_path, created=datetime(2026, 10, 31, 16, 59, tzinfo=UTC)),  # 23:59 local, 31 Oct
        "first": add(db_path, created=datetime(2026, 10, 31, 17, 0, tzinfo=UTC)),  # 00:00 local, 1 Nov
        "idea": add(db_path, kind="idea", pillar="economy", created=datetime(2026, 11, 10, tzinfo=UTC)),
        "untagged": add(
            db_path, pillar=None, subtopic=None, area="Magetan", created=datetime(2026, 11, 12, tzinfo=UTC)
        ),
        "done": add(db_path, status="resolved", created=datetime(2026, 11, 20, tzinfo=UTC)),
        "late": add(db_path, created=datetime(2026, 12, 1, tzinfo=UTC)),
    }


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (ExportFilter(since=datetime(2026, 11, 1, tzinfo=JAKARTA)), {"first", "idea", "untagged", "done", "late"}),
        (ExportFilter(until=datetime(2026, 11, 1, tzinfo=JAKARTA)), {"early"}),
        (
            ExportFilter(since=datetime(2026, 11, 1, tzinfo=JAKARTA), until=datetime(2026, 12, 1, tzinfo=JAKARTA)),
            {"first", "idea", "untagged", "done"},
        ),
        (ExportFilter(pillar="economy"), {"idea"}),
        (ExportFilter(pillar="none"), {"untagged"}),
        (ExportFilter(kind="idea"), {"idea"}),
        (ExportFilter(status="resolved"), {"done"}),
        (ExportFilter(area="Magetan"), {"untagged"}),
        (ExportFilter(kind="report", area="Plaosan", status="new"), {"early", "first", "late"}),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_filters_select_exactly_the_matching_submissions(
    db_path: Path, filtered: dict[str, str], filters: ExportFilter, expected: set[str], fmt: str
) -> None:
    data = run(db_path, fmt, filters)
    codes = (
        {r["code"] for r in read_csv(data)}
        if fmt == "csv"
        else {json.loads(line)["code"] for line in data.decode().splitlines()}
    )
    assert codes == {str(TrackingCode(filtered[name])) for name in expected}


def test_filters_apply_to_xlsx_summary_and_markdown_counts(db_path: Path, filtered: dict[str, str]) -> None:
    filters = ExportFilter(kind="report", since=datetime(2026, 11, 1, tzinfo=JAKARTA))
    book = read_xlsx(run(db_path, "xlsx", filters))
    assert sum(len(sheet_records(book[n])) for n in book.sheetnames[2:]) == 4
    assert len(sheet_records(book["Semua kiriman"])) == 4
    text = run(db_path, "markdown", filters).decode()
    assert "merangkum 4 laporan dan ide" in text and "Cakupan: sejak 1 November 2026, Laporan." in text


def test_naive_dates_are_refused(db_path: Path) -> None:
    with pytest.raises(ExportError, match="time zone"):
        run(db_path, "csv", ExportFilter(since=datetime(2026, 11, 1)))


# Contact identity ------------------------------------------------------------------------------
def test_no_contact_identity_leaves_by_default(db_path: Path) -> None:
    add(db_path)
    for fmt in ("csv", "jsonl"):
        data = run(db_path, fmt).decode("utf-8-sig")
        assert "Sari" not in data and "6281234500001" not in data and "contact" not in data


def test_include_contact_fills_named_rows_only_and_is_audited(db_path: Path) -> None:
    named = add(db_path)
    anonymous = add(db_path, anonymous=1, user_id=2, channel="telegram")
    records = {r["code"]: r for r in read_csv(run(db_path, "csv", include_contact=True, actor="cli:rina"))}
    assert list(next(iter(records.values()))) == [*COLUMNS, *CONTACT_COLUMNS]
    assert {k: records[str(TrackingCode(named))][k] for k in CONTACT_COLUMNS} == {
        "contact_name": "Sari Wulandari",
        "contact_channel": "whatsapp",
        "contact_id": "6281234500001",
    }
    assert {k: records[str(TrackingCode(anonymous))][k] for k in CONTACT_COLUMNS} == {
        "contact_name": "",
        "contact_channel": "",
        "contact_id": "",
    }

    ((actor, action, after),) = dbtools.rows(db_path, "SELECT actor, action, after FROM audit_log")
    assert (actor, action) == ("cli:rina", "export.include_contact")
    assert json.loads(after) == {
        "format": "csv",
        "filters": {},
        "rows": 2,
        "with_contact": 1,
        "anonymous_without_contact": 1,
    }
    assert "Sari" not in after and "62812" not in after


def test_include_contact_never_reaches_the_public_annex(db_path: Path) -> None:
    add(db_path)
    with pytest.raises(ContactNotAllowed):
        run(db_path, "markdown", include_contact=True)
    assert dbtools.scalar(db_path, "SELECT COUNT(*) FROM audit_log") == 0


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not found"):
        run(tmp_path / "nowhere.db", "csv")


# The bot side ------------------------------------------------------------------------------------
def official_message(text: str = "/ekspor") -> Incoming:
    return Incoming(
        channel="telegram",
        user_id="42",
        chat_id="42",
        kind=InputKind.COMMAND,
        received_at=T0,
        command="ekspor",
        args=text.partition(" ")[2],
        text=text,
    )


async def test_official_gets_the_export_as_a_file_in_the_chat(settings, bot_db, chat_rows) -> None:
    """/ekspor csv answers with a CSV document; without a format, an XLSX workbook."""
    command = make_export_command(settings, CATALOG)
    async with bot_db.transaction() as conn:
        (reply,) = await command(
            conn,
            actor="telegram:42",
            language="id",
            command="export",
            args="csv",
            msg=official_message("/ekspor csv"),
            now=T0,
        )
    assert reply.document is not None and reply.document.filename.endswith(".csv")
    assert reply.document.mime_type == "text/csv"
    assert len(read_csv(reply.document.data)) == 4
    assert reply.text.startswith("Ekspor csv: 4 kiriman.")

    async with bot_db.transaction() as conn:
        (reply,) = await command(
            conn, actor="telegram:42", language="en", command="export", args="", msg=official_message(), now=T0
        )
    assert reply.document.filename.endswith(".xlsx")
    assert read_xlsx(reply.document.data).sheetnames[0] == "Summary"


async def test_official_with_an_unknown_format_is_told_the_choices(settings, bot_db) -> None:
    command = make_export_command(settings, CATALOG)
    async with bot_db.transaction() as conn:
        (reply,) = await command(
            conn,
            actor="telegram:42",
            language="id",
            command="export",
            args="pdf",
            msg=official_message("/ekspor pdf"),
            now=T0,
        )
    assert reply.document is None and "/ekspor csv" in reply.text


async def test_too_large_for_a_chat_points_to_the_cli(settings, bot_db, chat_rows) -> None:
    command = make_export_command(settings, CATALOG, limit=500)
    async with bot_db.transaction() as conn:
        (reply,) = await command(
            conn,
            actor="telegram:42",
            language="id",
            command="export",
            args="jsonl",
            msg=official_message("/ekspor jsonl"),
            now=T0,
        )
    assert reply.document is None and "suarawarga export" in reply.text


async def test_with_delivery_the_file_follows_and_residents_are_answered_meanwhile(services) -> None:
    """The handler returns at once; the resident's message is handled before the file is ready."""
    seed_many(location(services.settings), 10_000)
    delivered: asyncio.Queue = asyncio.Queue()

    async def deliver(channel: str, chat_id: str, reply) -> None:
        await delivered.put((channel, chat_id, reply))

    command = make_export_command(services.settings, services.catalog, deliver=deliver)
    async with services.db.transaction() as conn:
        (ack,) = await command(
            conn,
            actor="telegram:42",
            language="id",
            command="export",
            args="csv",
            msg=official_message("/ekspor csv"),
            now=T0,
        )
    assert ack.document is None and "sedang disiapkan" in ack.text
    (task,) = command.running

    resident = Incoming(
        channel="terminal",
        user_id="warga",
        chat_id="warga",
        kind=InputKind.COMMAND,
        received_at=T0,
        command="start",
        text="/start",
    )
    outcome = await services.core.handle(resident)
    assert outcome.replies and not task.done(), "the resident had to wait for the export"

    channel, chat_id, reply = await asyncio.wait_for(delivered.get(), timeout=60)
    assert (channel, chat_id) == ("telegram", "42")
    assert reply.document.filename.endswith(".csv") and "10.000 kiriman" in reply.text
    assert len(read_csv(reply.document.data)) == 10_000


async def test_export_document_runs_beside_the_event_loop(settings, bot_db, chat_rows) -> None:
    document = await export_document(settings, "geojson", ExportFilter(), lang="id")
    assert document.mime_type == "application/geo+json"
    assert len(json.loads(document.data)["features"]) == 4  # every submission, GPS or not


CATALOG = Catalog.load("id")


@pytest.fixture
async def bot_db(settings) -> AsyncIterator[Database]:
    """The bot's write connection, as the officials' desk hands it to the command."""
    async with connect_db(settings) as db:
        yield db


@pytest.fixture
def chat_rows(settings, bot_db) -> None:
    """Four visible submissions in the bot's database."""
    path = location(settings)
    conn = dbtools.connect(path)
    conn.execute(
        "INSERT INTO users (id, channel, platform_id, chat_id, display_name, language, consent_version, "
        "consent_at, created_at) VALUES (1, 'whatsapp', '6281234500001', '6281234500001', 'Sari', 'id', "
        "'2026-11', ?, ?)",
        (to_db(T0), to_db(T0)),
    )
    conn.commit()
    conn.close()
    add(path, latitude=-7.65, longitude=111.33)
    add(path, kind="idea", pillar="environment", subtopic="waste", anonymous=1)
    add(path, pillar=None, subtopic=None, area=None)
    add(path, latitude=-7.61, longitude=111.29, pillar="economy", subtopic="agriculture")


def seed_many(path: Path | str, count: int) -> None:
    conn = dbtools.connect(path)
    stamp = to_db(T0)
    conn.executemany(
        "INSERT INTO submissions (code, kind, pillar, subtopic, text, language, area, channel, created_at, "
        "updated_at, status_changed_at) VALUES (?, 'report', ?, 'transport', ?, 'id', 'Plaosan', 'telegram', "
        "?, ?, ?)",
        (
            (
                f"Z{i:05d}",
                PILLARS[i % 6],
                f"Jalan rusak di dusun nomor {i}, mohon diperbaiki Pak Camat",
                stamp,
                stamp,
                stamp,
            )
            for i in range(count)
        ),
    )
    conn.commit()
    conn.close()


async def test_text_masked_at_saving_is_used_and_masked_again_when_the_rules_change(make_settings):
    """A submission's text is masked once, when it is saved; an export reuses it while the
    masking rules are the same, and masks the raw text itself once they have changed."""
    from bot.app import open_services
    from handlers import privacy
    from tests.harness import Resident

    settings = make_settings()
    async with open_services(settings) as services:
        sari = Resident(services.core)
        await sari.agree()
        await sari.submit_report("Lampu jalan depan rumah mati, hubungi saya di 081234567890 ya")
    db = location(settings)
    [(masked, version)] = dbtools.rows(db, "SELECT text_masked, masked_with FROM submissions")
    assert "081234567890" not in masked and "[telepon]" in masked and version == privacy.RULES_VERSION
    # Prove the stored copy is what the export shows.
    dbtools.execute(db, "UPDATE submissions SET text_masked = 'disimpan saat dikirim [telepon]'")
    assert b"disimpan saat dikirim" in run(db, "csv")
    dbtools.execute(db, "UPDATE submissions SET masked_with = 'older-rules'")  # older rules: not reused
    fresh = run(db, "csv")
    assert b"disimpan saat dikirim" not in fresh and b"081234567890" not in fresh and b"[telepon]" in fresh
