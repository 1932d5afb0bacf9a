"""Shared fixtures: real SQLite files in temporary folders, settings built like production."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Tests never read the developer's .env or environment: every setting is explicit here.
for _key in list(os.environ):
    if _key.startswith(("TELEGRAM_", "WHATSAPP_", "DIGEST_", "SMTP_")) or _key in (
        "DATABASE_PATH", "RULES_PATH", "OFFICIALS", "AREAS", "TIMEZONE",
    ):
        del os.environ[_key]


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
