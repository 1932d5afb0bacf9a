"""Deadlines in working days, reminders, escalation and the closure the resident confirms
(issue 17).

The calendar is checked on its own; the rest runs end to end over Telegram (the fake Bot
API on 127.0.0.1, python-telegram-bot's polling, the outbox worker) with a controlled clock
walking a submission across a weekend and Independence Day (Monday 17 August 2026), and a
second process on the same database repeating the day's run.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from bot.app import open_services
from bot.channels.telegram import TelegramChannel
from bot.outbox import OutboxWorker
from bot.reminders import ReminderScheduler, ReminderService
from handlers.deadlines import (
    AGENCY_ANSWER,
    FIRST_RESPONSE,
    RESOLUTION,
    DeadlinePolicy,
    WorkCalendar,
    parse_extra,
    pending_stages,
)
from handlers.domain import TrackingCode
from handlers.officials import OfficialDesk
from storage import submissions, users
from storage.database import location
from tests import dbtools
from tests.fakes import FakeTelegram, serve
from tests.test_officials import FAST, OFFICIAL, ROAD, TelegramStack, add_resident, scalar

WIB = ZoneInfo("Asia/Jakarta")
COORDINATORS = -100555


def wib(day: str, hour: int = 8, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=WIB)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now.astimezone(UTC)


# The calendar ------------------------------------------------------------------------------------
def test_weekends_national_holidays_and_cuti_bersama_are_not_working_days():
    cal = WorkCalendar()
    assert cal.is_working_day(date(2026, 8, 14))  # Friday
    assert not cal.is_working_day(date(2026, 8, 15))  # Saturday
    assert not cal.is_working_day(date(2026, 8, 17))  # Independence Day, a Monday
    assert not cal.is_working_day(date(2026, 3, 20))  # cuti bersama Idul Fitri (SKB 2026)
    assert not cal.is_working_day(date(2026, 12, 24))  # cuti bersama Natal
    # Thursday 13 August + 3: Fri 14, (weekend, 17 August), Tue 18, Wed 19.
    assert cal.add_working_days(date(2026, 8, 13), 3) == date(2026, 8, 19)
    assert cal.working_days_between(date(2026, 8, 19), date(2026, 8, 24)) == 3


def test_regional_days_come_from_holidays_extra():
    cal = WorkCalendar(parse_extra(["2026-08-18"]))
    assert cal.add_working_days(date(2026, 8, 13), 3) == date(2026, 8, 20)


def test_each_stage_has_its_own_clock():
    """New: first response; forwarded: the agency's answer and the resolution; a reopening
    restarts the resolution's clock; closed statuses owe nothing."""
    policy = DeadlinePolicy()
    made = wib("2026-08-13", 10)
    [first] = pending_stages(policy, status="new", created_at=made, zone=WIB)
    assert (first.stage, first.due_on) == (FIRST_RESPONSE, date(2026, 8, 19))
    stages = pending_stages(policy, status="forwarded", created_at=made, zone=WIB, forwarded_at=wib("2026-08-18", 9))
    assert [(d.stage, d.due_on) for d in stages] == [
        (AGENCY_ANSWER, date(2026, 8, 26)),
        (RESOLUTION, date(2026, 8, 31)),
    ]  # 25 August: Maulid Nabi
    [again] = pending_stages(policy, status="reviewed", created_at=made, zone=WIB, reopened_at=wib("2026-08-24", 10))
    assert (again.stage, again.due_on) == (RESOLUTION, date(2026, 9, 8))
    assert pending_stages(policy, status="resolved", created_at=made, zone=WIB) == []


# End to end over Telegram -----------------------------------------------------------------------
@contextlib.asynccontextmanager
async def stack(make_settings, clock: Clock) -> AsyncIterator[tuple[TelegramStack, ReminderService]]:
    fake = FakeTelegram(max_poll_wait=0.1)
    async with serve(fake.app) as url:
        settings = make_settings(
            telegram_bot_token=fake.token,
            telegram_api_base_url=f"{url}/bot",
            telegram_file_base_url=f"{url}/file/bot",
            officials=f"telegram:{OFFICIAL}",
            escalation_chats=f"telegram:{COORDINATORS}",
        )
        async with open_services(settings) as services:
            core = services.core
            core.clock = clock
            core.desk = OfficialDesk(services.catalog, services.tagger, zone=settings.zone)
            worker = OutboxWorker(
                services.db, services.channels, settings, services.catalog, pacing=FAST, base_backoff=0.01, clock=clock
            )
            core.on_outbox = worker.wake
            channel = TelegramChannel(settings, core, services.catalog)
            await channel.start()
            services.channels["telegram"] = channel
            tg = TelegramStack(fake, services, channel, worker, location(settings))
            reminders = ReminderService(services.db, settings, services.catalog, clock=clock, on_outbox=worker.wake)
            await tg.start_worker()
            try:
                yield tg, reminders
            finally:
                await worker.stop()
                await channel.stop()


async def submit(tg: TelegramStack, user: users.User, clock: Clock, text: str = ROAD) -> TrackingCode:
    draft = {
        "kind": "report",
        "text": text,
        "pillar": "living",
        "auto_pillar": "living",
        "area": "Maospati",
        "anonymous": False,
        "name": user.display_name,
    }
    rng = random.Random(len(text))
    async with tg.db.transaction() as conn:
        return TrackingCode(
            await submissions.insert_submission(
                conn, user=user, draft=draft, draw_code=lambda: TrackingCode.generate(rng).value, now=clock()
            )
        )


async def press_again(tg: TelegramStack, user_id: int, label: str) -> list:
    """Press `label` on the latest message that has it (not necessarily the last one)."""
    message = [m for m in tg.fake.sent_to(user_id) if any(b["text"] == label for b in m.buttons)][-1]
    data = next(b["callback_data"] for b in message.buttons if b["text"] == label)
    before = len(tg.fake.sent_to(user_id))
    tg.fake.push_callback(user_id, data, language_code="id")
    return await tg._handled(user_id, before)


def second_process_run(
    db_path,
    at: datetime,
    *,
    officials: str = f"telegram:{OFFICIAL}",
    escalation: str = f"telegram:{COORDINATORS}",
    then_kill: bool = False,
) -> str:
    """The day's run again from a new process on the same database (a restart); with
    `then_kill` the process SIGKILLs itself once the run has committed, before any send."""
    where = "DATABASE_URL" if dbtools.is_postgres(db_path) else "DATABASE_PATH"  # the test's engine
    env = {**os.environ, where: str(db_path), "OFFICIALS": officials, "ESCALATION_CHATS": escalation}
    code = (
        "import asyncio, datetime, os, signal\n"
        "from bot.config import load_settings\n"
        "from bot.reminders import run_once\n"
        f"at = datetime.datetime.fromisoformat({at.isoformat()!r})\n"
        "r = asyncio.run(run_once(load_settings(_env_file=None), clock=lambda: at))\n"
        "print(r.reminded, r.escalated, r.unconfirmed, r.messages, flush=True)\n"
        + ("os.kill(os.getpid(), signal.SIGKILL)\n" if then_kill else "")
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == (-9 if then_kill else 0), done.stderr
    return done.stdout.strip()


async def test_a_report_through_deadlines_reminder_escalation_reopen_and_confirmed_close(make_settings):
    clock = Clock(wib("2026-08-13", 10))  # Thursday; Monday 17 August is Independence Day
    async with stack(make_settings, clock) as (tg, reminders):
        sari = await add_resident(tg.db, "1001")
        budi = await add_resident(tg.db, "1002")
        await add_resident(tg.db, "2001")
        road = await submit(tg, sari, clock)
        lamp = await submit(tg, budi, clock, "Lampu jalan mati di Jalan Pahlawan Maospati sejak dua minggu")
        await tg.say(2001, f"/dukung {road}")

        status = await tg.say(1001, f"/status {road}")
        assert "Target tanggapan pertama: paling lambat Rabu, 19 Agustus 2026" in status[0].plain

        # Friday: nothing is due on the next working day (Tuesday 18, after the holiday).
        clock.now = wib("2026-08-14")
        assert (await reminders.run()).messages == 0

        # Tuesday 18: both fall due tomorrow; one reminder lists them.
        clock.now = wib("2026-08-18")
        first = await reminders.run()
        assert sorted(first.reminded) == sorted([road.value, lamp.value]) and first.messages == 1
        [reminder] = await tg.notified(OFFICIAL)
        assert reminder.startswith("Pengingat: kiriman ini jatuh tempo Rabu, 19 Agustus 2026.")
        assert f"• {road} – tanggapan pertama – Laporan" in reminder and f"• {lamp} –" in reminder
        assert (await reminders.run()).messages == 0
        assert second_process_run(tg.db_path, clock()) == "[] [] [] 0"

        # Wednesday 19: the lamp gets its first response in time; the road does not.
        clock.now = wib("2026-08-19", 9)
        await tg.say(OFFICIAL, f"/status {lamp} ditinjau")
        assert (await tg.notified(1002))[0].startswith(f"Kabar untuk laporan Anda {lamp}")
        assert (await reminders.run()).messages == 0

        # Thursday 20 and Friday 21: the road is escalated each working day, once.
        clock.now = wib("2026-08-20")
        assert (await reminders.run()).escalated == [road.value]
        [escalation] = await tg.notified(COORDINATORS)
        assert escalation == (
            f"Lewat tenggat: 1 kiriman\n• {road} – tanggapan pertama – tenggat Rabu, "
            "19 Agustus 2026, lewat 1 hari kerja\nRincian: /lihat KODE"
        )
        assert second_process_run(tg.db_path, clock()) == "[] [] [] 0"
        clock.now = wib("2026-08-21")
        await reminders.run()
        assert "lewat 2 hari kerja" in (await tg.notified(COORDINATORS))[0]
        clock.now = wib("2026-08-22")  # Saturday
        assert (await reminders.run()).messages == 0
        status = await tg.say(1001, f"/status {road}")
        assert "(sudah lewat, petugas sudah kami ingatkan)" in status[0].plain

        # Monday 24: resolved; the resident is asked, and says it is not fixed.
        clock.now = wib("2026-08-24", 10)
        await tg.say(OFFICIAL, f"/status {road} selesai Lubang sudah ditambal")
        [asked] = await tg.notified(1001)
        assert asked.endswith(
            "Catatan: Lubang sudah ditambal\n\nApakah masalahnya sudah beres?\nKalau ada, kirim juga foto hasilnya."
        )
        assert [b["text"] for b in tg.fake.sent_to(1001)[-1].buttons] == ["Sudah", "Belum"]
        assert "selesai" in (await tg.notified(2001))[0]
        answer = await tg.press(1001, "Belum")
        assert [m.plain for m in answer] == [
            f"Maaf, masalahnya belum beres. {road} kami buka lagi dan petugas sudah dikabari.",
            "Ceritakan apa yang belum beres, dalam satu pesan:",
        ]
        told = f"{road} dibuka lagi: pelapor bilang masalahnya belum beres. Target penyelesaian baru: Selasa, 8 September 2026."
        assert await tg.notified(OFFICIAL) == [told]
        assert await tg.notified(COORDINATORS) == [told]
        assert "belum beres, jadi dibuka lagi" in (await tg.notified(2001))[0]
        noted = await tg.say(1001, "Lubangnya masih ada di sisi kiri jalan")
        assert noted[0].plain == "Terima kasih, keterangan Anda sudah kami teruskan ke petugas."
        words = f"Keterangan pelapor untuk {road}:\nLubangnya masih ada di sisi kiri jalan"
        assert await tg.notified(OFFICIAL) == [words]
        assert await tg.notified(COORDINATORS) == [words]
        assert scalar(tg.db_path, "SELECT status FROM submissions WHERE code = ?", road.value) == "reviewed"
        status = await tg.say(1001, f"/status {road}")
        assert "Target penyelesaian: paling lambat Selasa, 8 September 2026" in status[0].plain
        again = await press_again(tg, 1001, "Belum")  # the old question, pressed again
        assert again[0].plain == f"Jawaban Anda untuk {road} sudah kami catat sebelumnya."

        # Tuesday 25: resolved again, confirmed, rated.
        clock.now = wib("2026-08-25", 10)
        await tg.say(OFFICIAL, f"/status {road} selesai Sudah diaspal ulang")
        await tg.notified(1001)
        await tg.notified(2001)
        thanks = await tg.press(1001, "Sudah")
        assert thanks[0].plain.startswith(f"Terima kasih sudah memastikan. {road} kami tutup.")
        assert [b["text"] for b in thanks[0].buttons] == ["1", "2", "3", "4", "5"]
        assert (await tg.press(1001, "5"))[0].plain == "Terima kasih atas nilainya."
        assert "pelapor memastikan masalahnya sudah beres" in (await tg.notified(2001))[0]
        assert (
            scalar(tg.db_path, "SELECT outcome || ' ' || rating FROM closures WHERE outcome = 'confirmed'")
            == "confirmed 5"
        )
        clock.now = wib("2026-08-26")
        assert second_process_run(tg.db_path, clock()) == "[] [] [] 0"
        await tg.worker.idle.wait()

    # Exactly once each: the official had one reminder and two reopening messages, the
    # coordinators two escalations and the same two; nothing failed or is left.
    def count(chat: int, words: str) -> int:
        return sum(1 for m in tg.fake.sent_to(chat) if words in (m.plain or ""))

    assert count(OFFICIAL, "Pengingat") == 1 and count(COORDINATORS, "Lewat tenggat") == 2
    assert count(OFFICIAL, "dibuka lagi") == 1 and count(COORDINATORS, "Keterangan pelapor") == 1
    assert count(1001, "Apakah masalahnya sudah beres?") == 2
    assert scalar(tg.db_path, "SELECT count(*) FROM outbox WHERE state != 'sent'") == 0


async def test_an_unanswered_question_closes_as_unconfirmed_after_seven_days(make_settings):
    clock = Clock(wib("2026-09-01", 10))
    async with stack(make_settings, clock) as (tg, reminders):
        sari = await add_resident(tg.db, "1001")
        await add_resident(tg.db, "2001", language="en")
        road = await submit(tg, sari, clock)
        await tg.say(2001, f"/support {road}", language="en")
        await tg.say(OFFICIAL, f"/status {road} selesai")
        await tg.notified(1001)
        await tg.notified(2001)
        clock.now = wib("2026-09-07")
        assert (await reminders.run()).unconfirmed == []
        clock.now = wib("2026-09-08", 11)
        assert (await reminders.run()).unconfirmed == [road.value]
        assert await tg.notified(2001) == [
            f"News about report {road}, which you support: closed as resolved, without the resident's confirmation."
        ]
        assert (await reminders.run()).messages == 0
        late = await press_again(tg, 1001, "Sudah")
        assert late[0].plain == f"Pertanyaan untuk {road} ini sudah tidak berlaku."


async def test_the_scheduler_makes_a_run_missed_earlier_today(make_settings):
    """Started after REMINDER_TIME on a working day, the day's run is made at once."""
    clock = Clock(wib("2026-08-18", 9))
    async with stack(make_settings, clock) as (tg, reminders):
        sari = await add_resident(tg.db, "1001")
        clock.now = wib("2026-08-13", 10)
        await submit(tg, sari, clock)
        clock.now = wib("2026-08-18", 9)
        scheduler = ReminderScheduler(reminders, tg.services.settings, clock=clock)
        await scheduler.start()
        try:
            report = await scheduler.wait_catch_up()
        finally:
            await scheduler.stop()
        assert report is not None and report.messages == 1
        assert (await tg.notified(OFFICIAL))[0].startswith("Pengingat")


async def test_deadline_report_gives_the_digest_its_figures(make_settings):
    """Overdue by pillar and agency, the oldest overdue first, medians, closure outcomes:
    indexed reads of the clocks kept on the rows (migration 0013), on the digest's sqlite3
    thread and on the bot's connection alike."""
    import contextlib as _c

    from handlers.deadlines import Rules, stages_of
    from storage.deadlines import SubmissionDeadline, deadline_report, deadline_report_on, submission_deadlines

    clock = Clock(wib("2026-08-13", 10))
    policy = DeadlinePolicy()
    rules = Rules(policy, WIB)
    window = {"since": wib("2026-08-10"), "until": wib("2026-08-17")}
    async with stack(make_settings, clock) as (tg, _):
        sari = await add_resident(tg.db, "1001")
        road = await submit(tg, sari, clock)
        lamp = await submit(tg, sari, clock, "Lampu jalan mati di Jalan Pahlawan Maospati sejak dua minggu")
        clock.now = wib("2026-08-14", 10)
        await tg.say(OFFICIAL, f"/status {lamp} diteruskan Dinas PUPR Magetan")
        await tg.say(OFFICIAL, f"/status {road} selesai")
        async with tg.db.transaction() as conn:
            on_bot = await deadline_report(conn, rules, today=date(2026, 9, 1), **window)
    with _c.closing(dbtools.connect(tg.db_path)) as conn:
        report = deadline_report_on(conn, rules, today=date(2026, 9, 1), **window)
    assert on_bot == report
    assert report.overdue == 1
    assert report.overdue_by_pillar == {"living": 1} and report.overdue_by_agency == {"Dinas PUPR Magetan": 1}
    assert [(i.code, i.stage, i.working_days_late) for i in report.oldest_overdue] == [
        (lamp.value, AGENCY_ANSWER, 5),
        (lamp.value, RESOLUTION, 1),
    ]
    assert report.median_hours_to_first_response == 24.0 and report.median_hours_to_resolution == 24.0
    assert (report.first_responses, report.resolutions) == (2, 1)
    assert report.closures == {"confirmed": 0, "disputed": 0, "unconfirmed": 0, "waiting": 1}
    with _c.closing(dbtools.connect(tg.db_path)) as conn:
        columns = submission_deadlines(
            conn, stages_of(policy, WIB), policy.calendar.working_days_between, today=date(2026, 9, 1)
        )
    assert columns[lamp.value] == SubmissionDeadline(AGENCY_ANSWER, date(2026, 8, 24), 5, None, None)
    assert columns[road.value] == SubmissionDeadline(None, None, 0, "waiting", None)


def test_cutoffs_agree_with_due_dates_across_weekends_and_holidays():
    """'Started before the cutoff' is exactly 'due before today', for every start day and
    stage length over a stretch with weekends, Idul Fitri's holidays and cuti bersama."""
    from datetime import timedelta

    from handlers.deadlines import WorkCalendar, cutoff_day

    cal = WorkCalendar(frozenset({date(2026, 8, 19)}))
    for today_offset in range(0, 60, 3):
        today = date(2026, 3, 1) + timedelta(days=today_offset)
        for days in (1, 3, 5, 10):
            cut = cutoff_day(cal, today, days)
            for back in range(0, 40):
                start = today - timedelta(days=back)
                assert (cal.add_working_days(start, days) < today) == (start < cut), (today, days, start)


async def test_a_run_killed_after_committing_is_sent_once_by_the_next_process(make_settings):
    """SIGKILL right after the day's run committed, before anything was sent: the outbox of
    the next process delivers the reminder, once, and no later run queues it again."""
    clock = Clock(wib("2026-08-13", 10))
    async with stack(make_settings, clock) as (tg, reminders):
        sari = await add_resident(tg.db, "1001")
        road = await submit(tg, sari, clock)
        clock.now = wib("2026-08-18")
        assert second_process_run(tg.db_path, clock(), then_kill=True) == f"['{road.value}'] [] [] 1"
        tg.worker.wake()
        [reminder] = await tg.notified(OFFICIAL)
        assert f"• {road} – tanggapan pertama" in reminder
        assert second_process_run(tg.db_path, clock()) == "[] [] [] 0"
        assert (await reminders.run()).messages == 0
        await tg.worker.idle.wait()
    assert sum("Pengingat" in (m.plain or "") for m in tg.fake.sent_to(OFFICIAL)) == 1


async def test_closure_notes_can_be_scrubbed_for_an_anonymising_erasure(make_settings):
    from storage import deadlines as store

    clock = Clock(wib("2026-08-13", 10))
    async with stack(make_settings, clock) as (tg, _):
        sari = await add_resident(tg.db, "1001")
        road = await submit(tg, sari, clock)
        await tg.say(OFFICIAL, f"/status {road} selesai")
        await tg.notified(1001)
        await tg.press(1001, "Belum")
        await tg.say(1001, "Belum beres, hubungi saya Sari di 081234567890")
        async with tg.db.transaction() as conn:
            assert await store.scrub_closure_notes(conn, sari.id, lambda t: t.replace("081234567890", "[nomor]")) == 1
    assert scalar(tg.db_path, "SELECT note FROM closures") == "Belum beres, hubungi saya Sari di [nomor]"
