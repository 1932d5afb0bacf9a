"""Issue 18 over WhatsApp: an official on WhatsApp links a submission to a masterplan
section; the resident inside the 24-hour window gets the text, a supporter outside it the
approved status template (signed webhooks in, the fake Graph API out, the outbox worker)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from click.testing import CliRunner

from bot.cli_masterplan import masterplan
from bot.outbox import OutboxWorker
from storage import submissions, users
from storage.database import utcnow
from tests.drivers_web import WhatsAppDriver, graph_text
from tests.test_masterplan import MARKDOWN
from tests.test_officials import FAST, add_resident, add_submission, scalar

OFFICIAL_WA = "628999"


async def test_a_link_made_on_whatsapp_reaches_resident_and_supporter_once(make_settings, tmp_path):
    async with WhatsAppDriver(
        make_settings,
        officials=f"whatsapp:{OFFICIAL_WA}",
        whatsapp_template_status="kabar_status",
        whatsapp_template_language="id",
    ) as sari:
        services = sari.services
        services.channels["whatsapp"] = sari.channel
        worker = OutboxWorker(
            services.db, services.channels, sari.settings, services.catalog, pacing=FAST, base_backoff=0.01
        )
        services.core.on_outbox = worker.wake
        await worker.start()
        try:
            outline = tmp_path / "kerangka.md"
            outline.write_text(MARKDOWN, encoding="utf-8")
            loaded = await asyncio.to_thread(CliRunner().invoke, masterplan, ["load", str(outline)], obj=sari.settings)
            assert loaded.exit_code == 0, loaded.output

            official = sari.another(OFFICIAL_WA, "Petugas")
            for person in (sari, official):
                await person.send_text("halo")
                await person.press("Setuju")
                await person.replies()
            async with services.db.transaction() as conn:
                resident, _ = await users.get_user_and_conversation(conn, "whatsapp", sari.wa_id)
            assert resident is not None
            code = await add_submission(
                services.db, resident, "Bank sampah di setiap RW supaya kali bersih", kind="idea", pillar="environment"
            )
            budi = await add_resident(
                services.db, "628555", channel="whatsapp", name="Budi", last_inbound_ago=timedelta(days=2)
            )
            async with services.db.transaction() as conn:
                [submission_id] = [
                    r[0]
                    for r in await conn.execute_fetchall("SELECT id FROM submissions WHERE code = ?", (code.value,))
                ]
                await submissions.add_support(conn, submission_id, budi.id, utcnow())

            await official.send_text(f"/masterplan {code} 5.1")
            answers = await official.replies()
            assert answers[-1] == (
                f'{code} masuk masterplan, bagian 5.1 "Bank Sampah dan Daur Ulang".\n'
                "Pelapor akan dikabari.\n1 pendukung juga akan dikabari."
            )
            await sari.graph.wait_for_sent(lambda p: p.get("to") == "628555")
            [text] = [graph_text(p) for p in sari.graph.sent_to(sari.wa_id) if "rancangan masterplan" in graph_text(p)]
            assert text.startswith(
                f"Kabar untuk ide Anda {code}: sudah masuk rancangan masterplan, bagian 5.1 "
                '"Bank Sampah dan Daur Ulang".'
            )
            [template] = sari.graph.sent_to("628555")
            assert template["type"] == "template" and template["template"]["name"] == "kabar_status"
            params = [p["text"] for p in template["template"]["components"][0]["parameters"]]
            assert params == [str(code), "masuk masterplan"]

            await official.send_text(f"/masterplan {code} 5.1")
            assert (await official.replies())[-1] == f"{code} sudah ada di bagian 5.1."
            await worker.idle.wait()
            assert scalar(sari.db_path, "SELECT count(*) FROM outbox") == 2
        finally:
            await worker.stop()
