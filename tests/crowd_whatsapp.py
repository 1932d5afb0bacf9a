"""Several `suarawarga run` instances on one PostgreSQL, and a crowd of WhatsApp residents.

The WhatsApp sibling of tests/crowd.py, for the PostgreSQL tests that kill instances and the
database (tests/test_postgres_outage.py, tests/test_postgres_crowd.py):

* `Instance` is the production entry point, `python -m bot run`, as a subprocess with
  DATABASE_URL set, serving the WhatsApp webhook (and optionally Telegram's) on a port of its
  own; the test SIGKILLs and restarts it on the same port;
* `Meta` delivers webhooks the way Meta does: signed with the app secret, to one of the
  instances (as a load balancer would), again and again until one answers 200, sometimes
  twice (to the same instance or to another);
* `WaResident` reads what the bot sent them at the fake Graph API and answers it like a
  person (press the offered button, type the description), poking a silent bot.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.crowd import CODE, DESCRIBE_PROMPT, DESCRIPTIONS, BotProcess, choose
from tests.drivers_web import graph_choices, graph_text
from tests.fakes import (
    DEFAULT_WA_TOKEN,
    PHONE_ID,
    FakeGraph,
    sign,
    wa_body,
    wa_button_reply,
    wa_list_reply,
    wa_text_message,
)
from tests.pgcluster import free_port

APP_SECRET = "crowd-app-secret-0123456789"
TELEGRAM_SECRET = "crowd_webhook-secret_0123456789"
_wamids = itertools.count(1)


def new_wamid() -> str:
    return f"wamid.CROWD{next(_wamids):08d}"


class Instance:
    """One bot process on PostgreSQL with its web server on 127.0.0.1:`port`."""

    def __init__(
        self,
        name: str,
        folder: Path,
        database_url: str,
        graph_url: str,
        *,
        telegram_url: str | None = None,
        telegram_token: str | None = None,
        **env: str,
    ):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        telegram: dict[str, str] = {}
        if telegram_token:
            telegram = {
                "TELEGRAM_MODE": "webhook",
                "TELEGRAM_WEBHOOK_URL": f"{self.url}/webhook/telegram",
                "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            }
        # DATABASE_PATH is set by BotProcess but unused: DATABASE_URL wins. No token, no
        # Telegram (an empty TELEGRAM_BOT_TOKEN disables the channel).
        self.proc = BotProcess(
            folder / "unused.db",
            telegram_url or "http://127.0.0.1:9",
            telegram_token or "",
            folder / f"{name}.log",
            DATABASE_URL=database_url,
            WHATSAPP_ACCESS_TOKEN=DEFAULT_WA_TOKEN,
            WHATSAPP_PHONE_NUMBER_ID=PHONE_ID,
            WHATSAPP_APP_SECRET=APP_SECRET,
            WHATSAPP_VERIFY_TOKEN="crowd-verify",
            WHATSAPP_API_BASE_URL=f"{graph_url}/v21.0",
            WHATSAPP_MESSAGES_PER_SECOND="1000",
            HTTP_PORT=str(self.port),
            # The flood guard is not under test: a scripted resident types fast.
            FLOOD_MAX_MESSAGES="100000",
            **telegram,
            **env,
        )
        self.http = httpx.AsyncClient(base_url=self.url, timeout=15)

    @property
    def alive(self) -> bool:
        return self.proc.alive

    async def start(self, timeout: float = 60) -> None:
        """Start and wait until /healthz answers 200 (the process is up and its database
        reachable); fails with the process's log when it does not come up."""
        await self.proc.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive:
                raise AssertionError(f"{self.name} exited at start:\n{self.proc.log_text()[-3000:]}")
            try:
                if (await self.http.get("/healthz", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)  # nothing to await: the process tells nobody it is up
        raise AssertionError(f"{self.name} did not become healthy:\n{self.proc.log_text()[-3000:]}")

    async def kill(self) -> None:
        await self.proc.kill()

    async def stop(self) -> None:
        await self.proc.stop()

    async def close(self) -> None:
        await self.proc.stop()
        await self.http.aclose()

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        answer = await self.http.get("/healthz")
        return answer.status_code, answer.json()

    async def wait_idle(self, timeout: float = 30) -> None:
        """Wait until /healthz shows no WhatsApp message accepted here and not yet answered."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.healthz()
            if status == 200 and body.get("whatsapp_backlog") == 0:
                return
            assert time.monotonic() < deadline, f"{self.name} still has a backlog: {body}"
            await asyncio.sleep(0.1)  # the process announces nothing: its /healthz is polled

    async def post_whatsapp(self, payload: dict[str, Any]) -> int:
        """POST one webhook body as Meta does; the HTTP status, or 0 when nobody answered."""
        body = wa_body(payload)
        try:
            answer = await self.http.post(
                "/webhook/whatsapp",
                content=body,
                headers={"X-Hub-Signature-256": sign(body, APP_SECRET), "Content-Type": "application/json"},
            )
        except httpx.TransportError:
            return 0
        return answer.status_code

    async def post_telegram(self, update: dict[str, Any]) -> int:
        try:
            answer = await self.http.post(
                "/webhook/telegram",
                content=json.dumps(update),
                headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET, "Content-Type": "application/json"},
            )
        except httpx.TransportError:
            return 0
        return answer.status_code

    def log_text(self) -> str:
        return self.proc.log_text()


@dataclass
class Delivery:
    """One webhook as Meta tracks it: delivered until an instance answers 200."""

    wamid: str
    payload: dict[str, Any]
    attempts: list[tuple[str, int]] = field(default_factory=list)  # (instance, status)

    @property
    def acknowledged(self) -> bool:
        return any(status == 200 for _, status in self.attempts)


class Meta:
    """Delivers webhooks to random instances, retrying until one says 200 (Meta retries
    with a backoff for days; here quickly, bounded), sometimes delivering twice."""

    def __init__(self, instances: list[Instance], rng: random.Random, *, twice: float = 0.15):
        self.instances = instances
        self.rng = rng
        self.twice = twice
        self.deliveries: list[Delivery] = []
        self.retry_after = 0.2

    async def deliver(self, payload: dict[str, Any], deadline: float = 90.0) -> Delivery:
        wamid = payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        delivery = Delivery(wamid, payload)
        self.deliveries.append(delivery)
        give_up = time.monotonic() + deadline
        while not delivery.acknowledged:
            assert time.monotonic() < give_up, f"no instance took {wamid}: {delivery.attempts}"
            target = self.rng.choice(self.instances)
            status = await target.post_whatsapp(payload)
            delivery.attempts.append((target.name, status))
            if status != 200:
                await asyncio.sleep(self.retry_after)  # Meta's backoff: a time, not an event
        if self.rng.random() < self.twice:
            # Meta's at-least-once: the same webhook again, to the same or another instance.
            again = self.rng.choice(self.instances)
            delivery.attempts.append((again.name, await again.post_whatsapp(payload)))
        return delivery


@dataclass
class WaResident:
    """A WhatsApp resident who wants `goal` reports saved, whatever happens to the bot."""

    wa_id: str
    graph: FakeGraph
    meta: Meta
    rng: random.Random
    goal: int = 1
    patience: float = 4.0  # seconds without an answer before poking the bot
    max_actions: int = 80
    codes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    actions: int = 0
    pokes: int = 0
    _seen: int = 0

    def inbox(self) -> list[dict[str, Any]]:
        return self.graph.sent_to(self.wa_id)

    async def run(self) -> None:
        await self._send_text("halo")
        while len(self.codes) < self.goal:
            assert self.actions < self.max_actions, f"resident {self.wa_id} is going round in circles"
            answered = await self._wait_answer()
            new = self.inbox()[self._seen :]
            self._seen += len(new)
            for message in new:
                found = CODE.search(graph_text(message))
                if found and found.group(1) not in self.codes:
                    self.codes.append(found.group(1))
            if len(self.codes) >= self.goal:
                return
            if not answered:
                self.pokes += 1
            await self._act_on(self.inbox()[-1] if self.inbox() else None)

    async def _wait_answer(self) -> bool:
        have = len(self.inbox())
        if have > self._seen and self._asks(self.inbox()[-1]):
            return True
        try:
            await self.graph.wait_for_sent(
                lambda m: m.get("to") == self.wa_id and self._asks(m), count=self._asking() + 1, timeout=self.patience
            )
        except TimeoutError:
            return False
        return True

    def _asking(self) -> int:
        return sum(1 for m in self.inbox()[: self._seen] if self._asks(m))

    @staticmethod
    def _asks(message: dict[str, Any]) -> bool:
        return bool(graph_choices(message)) or DESCRIBE_PROMPT in graph_text(message)

    async def _send_text(self, text: str) -> None:
        self.actions += 1
        await self.meta.deliver(wa_text_message(self.wa_id, text, wamid=new_wamid()))

    async def _act_on(self, message: dict[str, Any] | None) -> None:
        if message is None:
            await self._send_text("halo")
            return
        text = graph_text(message)
        choices = graph_choices(message)
        if DESCRIBE_PROMPT in text and not choices:
            description = f"{self.rng.choice(DESCRIPTIONS)} (warga {self.wa_id}, kiriman {len(self.written) + 1})"
            self.written.append(description)
            await self._send_text(description)
            return
        picked = choose([c["id"] for c in choices], self.rng)
        if picked is None:
            await self._send_text("/lapor")  # lost: start a report again, as a person would
            return
        choice = next(c for c in choices if c["id"] == picked)
        self.actions += 1
        if message["interactive"]["type"] == "button":
            payload = wa_button_reply(self.wa_id, choice["id"], choice["title"], wamid=new_wamid())
        else:
            payload = wa_list_reply(
                self.wa_id, choice["id"], choice["title"], choice.get("description"), wamid=new_wamid()
            )
        await self.meta.deliver(payload)


def tracking_codes_sent(graph: FakeGraph) -> dict[tuple[str, str], int]:
    """(wa_id, code without dash) -> how many times the bot sent it to them."""
    found: dict[tuple[str, str], int] = {}
    for message in graph.sent:
        for code in CODE.findall(graph_text(message)):
            key = (str(message.get("to")), code.replace("-", ""))
            found[key] = found.get(key, 0) + 1
    return found


KEPT_TEXT = re.compile(r"\(warga (\d+), kiriman (\d+)\)")
