"""A scripted crowd of residents and a bot process that can be killed at any moment.

The crash test (tests/test_faults.py) needs the fake Bot API to outlive the bot, so the
roles are split by process:

* the test process serves a FakeTelegram on 127.0.0.1 and runs the crowd: each resident
  is a task that reads what the bot sent to their chat and answers it like a person would
  (press the offered button, type the description, send /lapor when lost);
* the bot is the production entry point, `python -m bot run`, started as a subprocess
  (`BotProcess`) polling the fake over HTTP, on a real SQLite file. The test SIGKILLs it
  at random moments and starts it again on the same database.

A resident never sees an error: when an answer does not come (the bot died after saving
but before replying, or before saving), they wait for the bot to be back and then act on
the last message they have, as a person would poke a silent bot.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.telegram_api import FakeTelegram, SentMessage

REPO = Path(__file__).resolve().parents[1]
CODE = re.compile(r"Kode pelacakan: ([2-9A-HJ-NP-Z]{3}-[2-9A-HJ-NP-Z]{3})")
DESCRIBE_PROMPT = "Ceritakan masalahnya"
INTERNAL_ERROR = "terjadi kesalahan di sistem kami"

# Descriptions the tagger recognises (and one it does not), so every branch of the flow
# (proposed pillar, pick list, similar reports) is walked by somebody.
DESCRIPTIONS = (
    "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor",
    "Sampah menumpuk di pinggir sungai dan tidak diangkut sudah dua minggu",
    "Lampu penerangan jalan di perempatan mati sejak bulan lalu, gelap sekali",
    "Mohon diperhatikan, warga di sini butuh perhatian dari pemerintah daerah",
)


class BotProcess:
    """`python -m bot run` on a given database, polling the fake Bot API at `api_url`."""

    def __init__(self, db_path: Path, api_url: str, token: str, log_path: Path, **env: str):
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DATABASE_PATH": str(db_path),
            "TELEGRAM_BOT_TOKEN": token,
            "TELEGRAM_API_BASE_URL": f"{api_url}/bot",
            "TELEGRAM_FILE_BASE_URL": f"{api_url}/file/bot",
            "LOG_LEVEL": "INFO",
            **env,
        }
        self.cwd = db_path.parent  # no stray .env from the developer's checkout
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.cwd,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        self.starts += 1

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a power cut of the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@dataclass
class Resident:
    """One resident who wants `goal` reports saved, whatever happens to the bot."""

    user_id: int
    fake: FakeTelegram
    rng: random.Random
    ready: asyncio.Event  # set while a bot process is up and polling
    goal: int = 2
    patience: float = 0.8  # seconds without an answer before poking the bot
    max_actions: int = 120  # a resident who loops forever is a failure, not a hang
    codes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # every description typed
    actions: int = 0
    pokes: int = 0
    _seen: int = 0

    def inbox(self) -> list[SentMessage]:
        return self.fake.sent_to(self.user_id)

    async def run(self) -> None:
        self._act_text("/start")
        while len(self.codes) < self.goal:
            assert self.actions < self.max_actions, f"resident {self.user_id} is going round in circles"
            answered = await self._wait_answer()
            new = self.inbox()[self._seen :]
            self._seen += len(new)
            for message in new:
                found = CODE.search(message.text or "")
                if found and found.group(1) not in self.codes:
                    self.codes.append(found.group(1))
            if len(self.codes) >= self.goal:
                return
            if not answered:
                self.pokes += 1
            self._act_on(self.inbox()[-1] if self.inbox() else None)

    async def _wait_answer(self) -> bool:
        """True when a complete answer arrived; False when the resident gave up waiting."""
        silences = 0
        while silences < 2:
            have = len(self.inbox())
            # The answer may be several messages (saved + menu): it is complete when the
            # last one asks for something.
            if have > self._seen and self._asks(self.inbox()[-1]):
                return True
            try:
                await self.fake.wait_for_sent(
                    lambda m: m.chat_id == self.user_id, count=have + 1, timeout=self.patience
                )
            except TimeoutError:
                # Silence: the bot may be down. Wait for it to be back, then once more for
                # whatever it re-reads from the queue, before poking it.
                silences += 1
                await self.ready.wait()
        return False

    @staticmethod
    def _asks(message: SentMessage) -> bool:
        return bool(message.buttons) or DESCRIBE_PROMPT in (message.text or "")

    def _act_text(self, text: str) -> None:
        self.actions += 1
        if text.startswith("/"):
            self.fake.push_command(self.user_id, text)
        else:
            self.fake.push_text(self.user_id, text)

    def _press(self, message: SentMessage, data: str) -> None:
        self.actions += 1
        self.fake.push_callback(self.user_id, data, message.message_id)

    def _act_on(self, message: SentMessage | None) -> None:
        if message is None:
            self._act_text("/start")
            return
        if DESCRIBE_PROMPT in (message.text or "") and not message.buttons:
            text = f"{self.rng.choice(DESCRIPTIONS)} (warga {self.user_id}, kiriman {len(self.written) + 1})"
            self.written.append(text)
            self._act_text(text)
            return
        picked = choose(message.callback_data, self.rng)
        if picked is None:
            self._act_text("/lapor")  # lost: start a report again, as a person would
        else:
            self._press(message, picked)


def choose(data: list[str], rng: random.Random) -> str | None:
    """The button a resident who wants their report saved presses among `data` (the
    buttons' `step.serial:value` payloads, the same on every channel); None when lost."""
    by_step: dict[str, list[str]] = {}
    for d in data:
        step = re.split(r"[.:]", d, maxsplit=1)[0]
        by_step.setdefault(step, []).append(d)
    if "consent" in by_step:
        return next(d for d in data if d.startswith("consent:yes"))
    if "menu" in by_step:
        return "menu:report" if "menu:report" in data else next(d for d in by_step["menu"] if "report" in d)
    if "pillar" in by_step:
        return next(d for d in data if d.endswith(":ok"))
    if "pick" in by_step:
        return rng.choice(by_step["pick"])
    if "area" in by_step:
        areas = [d for d in by_step["area"] if d.rsplit(":", 1)[1].isdigit()]
        return rng.choice(areas or by_step["area"])
    if "similar" in by_step:
        return next(d for d in data if d.endswith(":mine"))
    if "photo" in by_step:
        return by_step["photo"][0]
    if "identity" in by_step:
        return rng.choice(by_step["identity"])
    if "confirm" in by_step:
        return next(d for d in data if d.endswith(":send"))
    return None
