"""What the application is made of once built from Settings: one value handed to the web
server, the channels and the workers (bot/app.py builds it; nothing here imports app)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.conversation import Core
    from handlers.i18n import Catalog
    from handlers.language import LanguageDetector
    from handlers.messages import Channel
    from handlers.tagging import Tagger
    from storage.database import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    catalog: Catalog
    detector: LanguageDetector
    tagger: Tagger
    core: Core
    # name -> sender, filled as each channel starts (the outbox worker keeps a reference)
    channels: dict[str, Channel] = field(default_factory=dict)
    # Work started by a message and finished after its answer (chat exports): what a
    # process that is about to end waits for.
    background: set[asyncio.Task[None]] = field(default_factory=set)

    async def finish_background(self, timeout: float = 600.0) -> None:
        if self.background:
            await asyncio.wait(set(self.background), timeout=timeout)
