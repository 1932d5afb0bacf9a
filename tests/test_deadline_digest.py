"""What officials see of deadlines in the weekly digest and in every export format (issue
17), end to end: residents' reports and an official's moves over Telegram (the fake Bot
API), the resident's "Sudah" and rating, then the digest delivered by e-mail to a real SMTP
server and the exports written by bot/exports.py, with a controlled clock crossing a
weekend, Independence Day (Monday 17 August 2026) and Maulid Nabi (Tuesday 25 August)."""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

import openpyxl
from aiosmtpd.smtp import SMTP

from bot.digest_service import DigestService
from bot.exports import COLUMNS, ExportFilter, export
from handlers.deadlines import DeadlinePolicy
from handlers.digest import Period
from tests.test_deadlines import OFFICIAL, Clock, add_resident, stack, submit, wib

TEAM = "tim@magetan.go.id"
PNG = bytes.fromhex(  # a valid 1x1 PNG: the chart is not what this test looks at
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944"
    "4154789c63f8ffff3f0005fe02fe0def46b80000000049454e44ae426082"
)


class Inbox:
    """aiosmtpd handler keeping what arrived."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


@asynccontextmanager
async def smtp(inbox: Inbox) -> AsyncIterator[int]:
    """A real SMTP server in this event loop, on a free port."""
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(inbox, hostname="127.0.0.1"), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


TRASH = "Sampah menumpuk di TPS dekat pasar Maospati, baunya sampai ke rumah warga"
LAMP = "Lampu jalan mati di Jalan Pahlawan Maospati sejak dua minggu"


async def _week(tg, clock: Clock):
    """Thursday 13 August: three reports. Friday 14th: the lamp forwarded, the rubbish
    resolved and confirmed ("Sudah", rated 5); the road left unanswered."""
    clock.now = wib("2026-08-13", 10)
    sari = await add_resident(tg.db, "1001")
    road = await submit(tg, sari, clock)
    lamp = await submit(tg, sari, clock, LAMP)
    trash = await submit(tg, sari, clock, TRASH)
    clock.now = wib("2026-08-14", 10)
    await tg.say(OFFICIAL, f"/status {lamp} diteruskan Dinas PUPR Magetan")
    await tg.say(OFFICIAL, f"/status {trash} selesai Sudah diangkut")
    assert (await tg.notified(1001, count=2))[1].endswith(
        "Apakah masalahnya sudah beres?\nKalau ada, kirim juga foto hasilnya."
    )
    await tg.press(1001, "Sudah")
    assert (await tg.press(1001, "5"))[0].plain == "Terima kasih atas nilainya."
    return road, lamp, trash


async def test_the_digest_email_shows_overdue_counts_medians_closures_and_the_oldest_codes(make_settings):
    clock = Clock(wib("2026-08-13", 10))
    inbox = Inbox()
    async with smtp(inbox) as port, stack(make_settings, clock) as (tg, _):
        road, lamp, _trash = await _week(tg, clock)
        settings = tg.services.settings.model_copy(
            update={
                "digest_emails": [TEAM],
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_starttls": False,
                "smtp_from": "suarawarga@magetan.go.id",
            }
        )
        # Wednesday 26 August: the road's first response was due Wednesday 19th (Monday
        # 17th a holiday), the lamp's agency answer Monday 24th.
        clock.now = wib("2026-08-26", 7)
        service = DigestService(settings, tg.services.catalog, db=tg.db, clock=clock, chart=lambda *a: PNG)
        week = Period.iso_week(2026, 33, settings.zone)
        report = await service.deliver(week)
    assert report.sent == [f"email:{TEAM}"]
    [raw] = inbox.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "TENGGAT DAN PENYELESAIAN" in text
    for line in (
        "Lewat tenggat per 26 Agustus 2026: 2 kiriman.",
        "Per pilar: Kelayakan Hidup 2",
        "Per instansi tujuan (yang diteruskan): Dinas PUPR Magetan 1",
        "Median sampai tanggapan pertama: 24 jam, dari 2 tanggapan pertama pada periode ini.",
        "Median sampai selesai: 24 jam, dari 1 yang diselesaikan pada periode ini.",
        "Jawaban pelapor atas penyelesaian pada periode ini: 1 sudah beres, 0 belum beres, 0 tanpa jawaban.",
        f"• {road} – tanggapan pertama, tenggat 19 Agustus 2026, lewat 4 hari kerja (Kelayakan Hidup)",
        f"• {lamp} – jawaban instansi – Dinas PUPR Magetan, tenggat 24 Agustus 2026, lewat 1 hari kerja",
    ):
        assert line in text, line
        assert line.removeprefix("• ") in html, line  # the HTML part lists them as <li>
    # The spreadsheet attached to the same e-mail has the deadline columns.
    [attachment] = [p for p in message.iter_attachments() if p.get_filename().endswith(".xlsx")]
    book = openpyxl.load_workbook(io.BytesIO(attachment.get_content()), read_only=True)
    rows = list(book.worksheets[1].iter_rows(values_only=True))
    header = list(rows[0])
    by_code = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert by_code[str(road)]["Tahap berikutnya"] == "tanggapan pertama"
    assert by_code[str(road)]["Tenggat"].date() == date(2026, 8, 19)
    assert by_code[str(road)]["Lewat tenggat"] == "ya" and by_code[str(road)]["Hari kerja terlambat"] == 4
    assert by_code[str(lamp)]["Tahap berikutnya"] == "jawaban instansi"
    assert by_code[str(lamp)]["Tanggapan pertama"].date() == date(2026, 8, 14)


async def test_every_export_format_has_the_deadline_columns(make_settings, tmp_path):
    clock = Clock(wib("2026-08-13", 10))
    async with stack(make_settings, clock) as (tg, _):
        road, lamp, trash = await _week(tg, clock)
        path, zone = tg.db_path, tg.services.settings.zone
    policy = DeadlinePolicy()

    def run(fmt: str) -> bytes:
        out = io.BytesIO()
        export(path, fmt, out, ExportFilter(), zone=zone, deadlines=policy, now=wib("2026-08-26", 9))
        return out.getvalue()

    expected = {
        str(road): ("first_response", "2026-08-19", True, 4, None, None, None, None),
        str(lamp): ("agency_answer", "2026-08-24", True, 1, "2026-08-14T10:00", None, None, None),
        str(trash): (None, None, None, None, "2026-08-14T10:00", "2026-08-14T10:00", "confirmed", 5),
    }
    names = (
        "due_stage",
        "due_at",
        "overdue",
        "working_days_late",
        "first_response_at",
        "resolved_at",
        "closure",
        "rating",
    )
    assert list(COLUMNS[-8:]) == list(names)

    def check(record: dict) -> None:
        got = tuple(record[n] for n in names)
        want = expected[record["code"]]
        stamps = tuple(v[:16] if isinstance(v, str) and "T" in v else v for v in got)
        assert stamps == want, record["code"]

    for line in run("jsonl").decode().splitlines():
        check(json.loads(line))
    for feature in json.loads(run("geojson"))["features"]:
        check(feature["properties"])
    reader = csv.DictReader(io.StringIO(run("csv").decode("utf-8-sig")))
    for row in reader:
        typed = {
            **row,
            "overdue": {"true": True, "false": False, "": None}[row["overdue"]],
            "working_days_late": int(row["working_days_late"]) if row["working_days_late"] else None,
            "rating": int(row["rating"]) if row["rating"] else None,
        }
        check({k: (v if v != "" else None) for k, v in typed.items()})
    annex = run("markdown").decode()
    assert "Tenggat: 2 kiriman lewat tenggat per 26 Agustus 2026" in annex
    assert "1 dipastikan beres oleh pelapor" in annex
    assert str(road) not in annex.split("Tenggat:")[1].split("\n")[0]  # no codes in the published line
