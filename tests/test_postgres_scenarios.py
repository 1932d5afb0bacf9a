"""The resident scenarios over every channel, on PostgreSQL: the same bot, only DATABASE_URL set."""

from __future__ import annotations

import asyncpg
import pytest

from tests.scenarios import SCENARIOS, play
from tests.test_scenarios import DRIVERS


@pytest.mark.parametrize("channel", sorted(DRIVERS))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_scenario_over_channel_on_postgresql(channel, scenario, make_settings, pg_url):
    """Each scenario reads the same on every channel and leaves its submission in PostgreSQL."""

    def on_postgresql(**overrides: object):
        return make_settings(database_url=pg_url, **overrides)

    async with DRIVERS[channel](on_postgresql) as driver:
        code = await play(driver, SCENARIOS[scenario])
    assert code is not None
    conn = await asyncpg.connect(pg_url)
    try:
        row = await conn.fetchrow(
            "SELECT kind, pillar, channel, anonymous FROM submissions WHERE code = $1", code.replace("-", "")
        )
    finally:
        await conn.close()
    expected = {"report-id": ("report", "living", 1), "idea-en": ("idea", "economy", 0)}[scenario]
    assert row is not None
    assert (row[0], row[1], row[3]) == expected
    assert row[2] in channel
