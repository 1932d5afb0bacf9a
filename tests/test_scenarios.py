"""The same resident scenarios over every channel, ending in the same database rows."""

from __future__ import annotations

import pytest

from tests import dbtools
from tests.drivers import TelegramPollingDriver, TerminalDriver
from tests.scenarios import SCENARIOS, play

DRIVERS = {"terminal": TerminalDriver, "telegram-polling": TelegramPollingDriver}
try:  # the web channels (WhatsApp, Telegram webhook) run on the ASGI server
    from tests.drivers_web import TelegramWebhookDriver, WhatsAppDriver

    DRIVERS.update({"whatsapp": WhatsAppDriver, "telegram-webhook": TelegramWebhookDriver})
except ImportError:  # pragma: no cover - only while the web drivers are being written
    pass


@pytest.mark.parametrize("channel", sorted(DRIVERS))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_scenario_over_channel(channel, scenario, make_settings):
    """Each scenario reads the same on every channel and leaves one submission behind."""
    async with DRIVERS[channel](make_settings) as driver:
        code = await play(driver, SCENARIOS[scenario])
        assert code is not None
        with dbtools.connect(driver.db_path) as conn:
            row = conn.execute(
                "SELECT kind, pillar, channel, anonymous FROM submissions WHERE code = ?",
                (code.replace("-", ""),),
            ).fetchone()
    expected = {"report-id": ("report", "living", 1), "idea-en": ("idea", "economy", 0)}[scenario]
    assert row is not None
    assert (row[0], row[1], row[3]) == expected
    assert row[2] in channel
