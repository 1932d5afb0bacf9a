"""Shared fixtures: real SQLite files in temporary folders, settings built like production."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings

# Tests never read the developer's .env or environment: every setting is explicit here.
for _key in list(os.environ):
    if _key.startswith(("TELEGRAM_", "WHATSAPP_", "DIGEST_", "SMTP_")) or _key in (
        "DATABASE_PATH",
        "DATABASE_URL",
        "RULES_PATH",
        "OFFICIALS",
        "AREAS",
        "TIMEZONE",
    ):
        del os.environ[_key]


# On CI every property test draws the same examples, so a run's verdict does not depend on
# luck; locally they explore (hypothesis' default), which is how new cases are found.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    hypothesis_settings.load_profile("ci")


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


# PostgreSQL ---------------------------------------------------------------------------------
# Tests that take `pg_url` run on a real PostgreSQL named by TEST_DATABASE_URL, each in a
# fresh schema dropped afterwards. Without TEST_DATABASE_URL they skip and the summary says
# so; on CI (CI=true) a missing URL or an unreachable server fails them instead.
_pg_not_tested: list[str] = []


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """TEST_DATABASE_URL, checked once to be reachable."""
    import asyncio

    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        if _on_ci():
            pytest.fail("TEST_DATABASE_URL is not set on CI: PostgreSQL must be tested there")
        _pg_not_tested.append("set TEST_DATABASE_URL")
        pytest.skip("PostgreSQL not tested (set TEST_DATABASE_URL)")

    async def reach() -> None:
        import asyncpg

        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    try:
        asyncio.run(reach())
    except Exception as exc:  # any reason: refused, no such database, bad credentials
        if _on_ci():
            pytest.fail(f"PostgreSQL at TEST_DATABASE_URL is not reachable on CI: {exc}")
        _pg_not_tested.append(f"TEST_DATABASE_URL not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at TEST_DATABASE_URL: {exc}")
    return url


@pytest.fixture
async def pg_url(pg_server: str) -> AsyncIterator[str]:
    """A DATABASE_URL whose search_path is a fresh, empty schema, dropped after the test."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        parts = urlsplit(pg_server)
        query = "&".join(q for q in (parts.query, f"search_path={schema}") if q)
        yield urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if _pg_not_tested:
        terminalreporter.write_line(f"PostgreSQL not tested ({_pg_not_tested[0]})", yellow=True)
