"""Shared fixtures: real SQLite files in temporary folders, settings built like production."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

# Tests never read the developer's .env or environment: every setting is explicit here.
for _key in list(os.environ):
    if _key.startswith(("TELEGRAM_", "WHATSAPP_", "DIGEST_", "SMTP_")) or _key in (
        "DATABASE_PATH", "RULES_PATH", "OFFICIALS", "AREAS", "TIMEZONE",
    ):
        del os.environ[_key]


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database migrated once; tests start from copies (the suite stays fast)."""
    import asyncio

    from storage.database import Database

    path = tmp_path_factory.mktemp("template") / "suarawarga.db"

    async def migrate() -> None:
        async with Database(path):
            pass

    asyncio.run(migrate())
    return path


@pytest.fixture
def make_settings(tmp_path: Path):
    from bot.config import Settings

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {"database_path": tmp_path / "suarawarga.db"}
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
async def services(settings) -> AsyncIterator[object]:
    from bot.app import open_services

    async with open_services(settings) as svc:
        yield svc


# One bot per test module for the web channels: starting uvicorn, the fakes and the
# services for every test would triple the suite's time.
@pytest.fixture(scope="module")
def module_settings(tmp_path_factory):
    from bot.config import Settings

    def build(**overrides: object) -> Settings:
        folder = tmp_path_factory.mktemp("bot")
        return Settings(_env_file=None, database_path=folder / "suarawarga.db", **overrides)  # type: ignore[call-arg]

    return build


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wa_bot(module_settings):
    """The WhatsApp webhook server with a fake Graph API (tests/drivers_web.py)."""
    from tests.drivers_web import WhatsAppDriver

    async with WhatsAppDriver(module_settings) as driver:
        yield driver


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tg_bot(module_settings):
    """Telegram in webhook mode with a fake Bot API (tests/drivers_web.py)."""
    from tests.drivers_web import TelegramWebhookDriver

    async with TelegramWebhookDriver(module_settings) as driver:
        yield driver
