"""Issue 17 over WhatsApp: signed webhooks in, the fake Graph API out, the outbox worker in
between, a controlled clock. The official and the coordinator are on WhatsApp too (they
agreed to the notice once, so their 24-hour window is known); the day's run is repeated by
a second process on the same database."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

from bot.outbox import OutboxWorker
from bot.reminders import ReminderService
from handlers.domain import TrackingCode
from storage import submissions, users
from tests.drivers_web import WhatsAppDriver, graph_text
from tests.test_deadlines import Clock, second_process_run, wib
from tests.test_officials import FAST, ROAD, scalar

OFFICIAL_WA, COORDINATOR_WA = "628999", "628777"


@contextlib.asynccontextmanager
async def whatsapp(make_settings, clock: Clock) -> AsyncIterator[tuple[WhatsAppDriver, ReminderService]]:
    async with WhatsAppDriver(
        make_settings, officials=f"whatsapp:{OFFICIAL_WA}", escalation_chats=f"whatsapp:{COORDINATOR_WA}"
    ) as sari:
        services = sari.services
        services.core.clock = clock
        services.channels["whatsapp"] = sari.channel
        worker = OutboxWorker(
            services.db, services.channels, sari.settings, services.catalog, pacing=FAST, base_backoff=0.01, clock=clock
        )
        services.core.on_outbox = worker.wake
        await worker.start()
        try:
            yield (
                sari,
                ReminderService(services.db, sari.settings, services.catalog, clock=clock, on_outbox=worker.wake),
            )
        finally:
            await worker.stop()


async def consent(driver: WhatsAppDriver) -> None:
    await driver.send_text("halo")
    await driver.press("Setuju")
    await driver.replies()


async def news(driver: WhatsAppDriver, count: int = 1) -> list[str]:
    """Wait for `count` more messages to this number; return the new ones."""
    await driver.settled()
    already = driver._seen
    await driver.graph.wait_for_sent(lambda p: p.get("to") == driver.wa_id, count=already + count)
    return await driver.replies()


async def test_deadlines_and_closure_over_whatsapp(make_settings):
    clock = Clock(wib("2026-08-13", 10))
    async with whatsapp(make_settings, clock) as (sari, reminders):
        official, coordinator = sari.another(OFFICIAL_WA, "Petugas"), sari.another(COORDINATOR_WA, "Koordinator")
        for person in (sari, official, coordinator):
            await consent(person)
        async with sari.services.db.transaction() as conn:
            user, _ = await users.get_user_and_conversation(conn, "whatsapp", sari.wa_id)
            assert user is not None
            rng = random.Random(7)
            code = TrackingCode(
                await submissions.insert_submission(
                    conn,
                    user=user,
                    draft={
                        "kind": "report",
                        "text": ROAD,
                        "pillar": "living",
                        "area": "Maospati",
                        "anonymous": False,
                        "name": "Sari",
                    },
                    draw_code=lambda: TrackingCode.generate(rng).value,
                    now=clock(),
                )
            )

        # WhatsApp's window: staff hear from the bot within 24 hours of writing to it. The
        # official is silent since Thursday: the reminder waits for their next message.
        clock.now = wib("2026-08-18")
        assert (await reminders.run()).reminded == [code.value]
        await official.send_text("/baru")
        await sari.graph.wait_for_sent(lambda p: p.get("to") == OFFICIAL_WA and "Pengingat" in graph_text(p))
        [reminder] = [r for r in await official.replies() if r.startswith("Pengingat")]
        assert reminder.startswith("Pengingat: kiriman ini jatuh tempo Rabu, 19 Agustus 2026.")
        clock.now = wib("2026-08-20", 7, 50)
        await coordinator.send_text("/bantuan")
        await coordinator.replies()
        clock.now = wib("2026-08-20")
        assert (await reminders.run()).escalated == [code.value]
        [escalation] = await news(coordinator)
        assert escalation.startswith(f"Lewat tenggat: 1 kiriman\n• {code} – tanggapan pertama")
        assert (
            second_process_run(
                sari.db_path, clock(), officials=f"whatsapp:{OFFICIAL_WA}", escalation=f"whatsapp:{COORDINATOR_WA}"
            )
            == "[] [] [] 0"
        )

        clock.now = wib("2026-08-24", 9)
        for person in (sari, coordinator):
            await person.send_text("/bantuan")
            await person.replies()
        clock.now = wib("2026-08-24", 10)
        await official.send_text(f"/status {code} selesai Lubang sudah ditambal")
        await official.replies()
        [asked] = await news(sari)
        assert asked.endswith(
            "Catatan: Lubang sudah ditambal\n\nApakah masalahnya sudah beres?\nKalau ada, kirim juga foto hasilnya."
        )
        assert [b["reply"]["title"] for b in sari.last_interactive()["interactive"]["action"]["buttons"]] == [
            "Sudah",
            "Belum",
        ]
        await sari.press("Belum")
        assert await sari.replies() == [
            f"Maaf, masalahnya belum beres. {code} kami buka lagi dan petugas sudah dikabari.",
            "Ceritakan apa yang belum beres, dalam satu pesan:",
        ]
        reopened = (
            f"{code} dibuka lagi: pelapor bilang masalahnya belum beres. "
            "Target penyelesaian baru: Selasa, 8 September 2026."
        )
        assert await news(official) == [reopened]
        assert await news(coordinator) == [reopened]
        await sari.send_text("Lubangnya masih ada di sisi kiri")
        assert (await sari.replies())[0] == "Terima kasih, keterangan Anda sudah kami teruskan ke petugas."
        words = f"Keterangan pelapor untuk {code}:\nLubangnya masih ada di sisi kiri"
        assert await news(official) == [words]
        assert await news(coordinator) == [words]

        clock.now = wib("2026-08-24", 14)
        await official.send_text(f"/status {code} selesai Sudah diaspal ulang")
        await official.replies()
        await news(sari)
        await sari.press("Sudah")
        [thanks] = await sari.replies()
        assert thanks.startswith(f"Terima kasih sudah memastikan. {code} kami tutup.")
        await sari.press("5")
        assert await sari.replies() == ["Terima kasih atas nilainya."]
        await sari.settled()

    texts = {who: [graph_text(p) for p in sari.graph.sent_to(who)] for who in (OFFICIAL_WA, COORDINATOR_WA)}
    assert sum("Pengingat" in t for t in texts[OFFICIAL_WA]) == 1
    assert sum("Lewat tenggat" in t for t in texts[COORDINATOR_WA]) == 1
    assert sum("dibuka lagi" in t for t in texts[COORDINATOR_WA]) == 1
    assert (
        scalar(sari.db_path, "SELECT outcome || ' ' || rating FROM closures WHERE outcome = 'confirmed'")
        == "confirmed 5"
    )
