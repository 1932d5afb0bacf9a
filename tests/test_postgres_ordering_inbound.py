"""Which instance handles a stored WhatsApp message, on a real PostgreSQL.

Instance A stored two messages: one a moment ago (A's lanes are handling it), one 2 minutes
ago and never handled (A died). Instance B's sweep takes only the orphan, so a resident is not
answered twice by two instances; A's own sweep would take both (its own rows)."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.inbound_worker import ORPHANED_AFTER, InboundWorker
from storage import inbound
from storage.database import utcnow
from storage.pg import PgDatabase


def _payload(sender: str, text: str) -> str:
    return json.dumps({"message": {"from": sender, "type": "text", "text": {"body": text}}})


async def test_another_instances_sweep_takes_only_the_rows_left_by_an_instance_that_died(pg_url: str) -> None:
    async with PgDatabase(pg_url) as db_a, PgDatabase(pg_url) as db_b:
        now = utcnow()
        async with db_a.transaction() as conn:
            await inbound.accept(
                conn,
                "whatsapp",
                [
                    ("wamid.fresh", _payload("6281", "halo"), now),
                    ("wamid.orphan", _payload("6282", "halo"), now - ORPHANED_AFTER - timedelta(seconds=60)),
                ],
            )
        # What each sweep hands to its lanes is recorded instead of handled (no core here).
        b = InboundWorker(db_b, core=None, whatsapp=None)  # type: ignore[arg-type]
        taken: list[str] = []
        b._enqueue = lambda wamid, sender, payload: taken.append(wamid)  # type: ignore[method-assign]
        assert await b.sweep() == 1
        assert taken == ["wamid.orphan"]

        a = InboundWorker(db_a, core=None, whatsapp=None)  # type: ignore[arg-type]
        a._accepted.add("wamid.fresh")  # what A's webhook route recorded when it stored it
        mine: list[str] = []
        a._enqueue = lambda wamid, sender, payload: mine.append(wamid)  # type: ignore[method-assign]
        assert await a.sweep() == 2
        assert sorted(mine) == ["wamid.fresh", "wamid.orphan"]
