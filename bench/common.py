"""Helpers every benchmark shares: statistics over runs, the machine, an offline Bot API.

Benchmarks are not tests: they report what was measured (median over several runs and
the spread) beside the target, and leave the verdict to the reader and to RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from telegram.request import BaseRequest, RequestData

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/bench_x.py` as well as `python -m bench.bench_x`
    sys.path.insert(0, str(ROOT))

# A token of the right shape for Settings; it never leaves the process.
FAKE_TOKEN = "123456789:" + "B" * 35


# Statistics -------------------------------------------------------------------------------------
def summary(values: Sequence[float], unit: str, *, digits: int = 2) -> dict[str, Any]:
    """Median of several runs with the spread (min, max) and every run, for run-to-run diffs."""
    vals = [float(v) for v in values]
    return {
        "median": round(statistics.median(vals), digits),
        "min": round(min(vals), digits),
        "max": round(max(vals), digits),
        "runs": [round(v, digits) for v in vals],
        "unit": unit,
    }


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (no interpolation: a real sample)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-pct * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def latency_figures(latencies_s: Iterable[float]) -> dict[str, float]:
    ordered = sorted(latencies_s)
    return {
        "p50_ms": percentile(ordered, 50) * 1000,
        "p90_ms": percentile(ordered, 90) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
    }


def target(value: float, limit: float, *, at_least: bool) -> dict[str, Any]:
    return {
        "target": limit,
        "kind": "at least" if at_least else "under",
        "pass": value >= limit if at_least else value < limit,
    }


# The machine ------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """What the figures were measured on, so two result files can be compared honestly."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    import aiosqlite
    import telegram

    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gb": mem_total,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "python_telegram_bot": telegram.__version__,
        "aiosqlite": getattr(aiosqlite, "__version__", "?"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def pin_one_core() -> int | None:
    """Run on one core, as the targets are stated; returns the core or None if not possible."""
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return core
    except (AttributeError, OSError):
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quiet_logs() -> None:
    """Benchmarks print figures; the bot's INFO lines (migrations, flood guard) would drown them."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    for name in ("httpx", "telegram", "uvicorn", "uvicorn.access", "aiosqlite", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


def settings_for(db_path: Path, **overrides: Any):
    from bot.config import Settings

    values: dict[str, Any] = {"database_path": db_path}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# Output -----------------------------------------------------------------------------------------
def emit(name: str, result: dict[str, Any], as_json: bool) -> None:
    """One JSON object (for `python -m bench` to merge) or a readable table."""
    if as_json:
        print(json.dumps({name: result}, ensure_ascii=False))
    else:
        print(render_table({name: result}))


def render_table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for bench, figures in results.items():
        lines.append(f"== {bench}")
        for key, value in _flatten(figures):
            lines.append(f"  {key:<58} {value}")
    return "\n".join(lines)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(data, dict) and "median" in data and "runs" in data:
        unit = data.get("unit", "")
        out.append(
            (prefix, f"{data['median']} {unit} (min {data['min']}, max {data['max']}, {len(data['runs'])} runs)")
        )
        return out
    if isinstance(data, dict) and "target" in data and "pass" in data and len(data) <= 3:
        verdict = "PASS" if data["pass"] else "FAIL"
        out.append((prefix, f"{verdict} ({data['kind']} {data['target']})"))
        return out
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    out.append((prefix, str(data)))
    return out


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start


# An offline Bot API for PTB ----------------------------------------------------------------------
class InProcessBotApi(BaseRequest):
    """A telegram.request.BaseRequest answered in-process: no sockets at all.

    It goes through PTB's real request layer (parameter encoding, JSON decoding of the
    answer, de_json of the returned Message), so the reply path costs what it costs in
    production minus the network. It records the last keyboard sent to each chat so a
    scripted resident can press what they were shown."""

    def __init__(self) -> None:
        self.sent = 0
        self.calls: dict[str, int] = {}
        self.last_markup: dict[int, list[str]] = {}
        self._message_id = 0
        self._bot = {
            "id": int(FAKE_TOKEN.split(":")[0]),
            "is_bot": True,
            "first_name": "SuaraWarga",
            "username": "suarawarga_bot",
        }

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1].lower()
        self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
        # json_parameters is what PTB's own HTTPX layer posts: the same encoding work.
        params = request_data.json_parameters if request_data is not None else {}
        result: Any = True
        if endpoint == "getme":
            result = self._bot
        elif endpoint in ("sendmessage", "sendphoto", "sendlocation", "senddocument"):
            self._message_id += 1
            self.sent += 1
            chat_id = int(params["chat_id"])
            markup = json.loads(params["reply_markup"]) if "reply_markup" in params else None
            if markup and markup.get("inline_keyboard"):
                self.last_markup[chat_id] = [b["callback_data"] for row in markup["inline_keyboard"] for b in row]
            result = {
                "message_id": self._message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": "Warga"},
                "from": self._bot,
                "text": params.get("text") or params.get("caption") or "",
            }
            if markup:
                result["reply_markup"] = markup
        elif endpoint == "getupdates":
            result = []
        return 200, json.dumps({"ok": True, "result": result}).encode()


def offline_application(channel: Any, request: Any):
    """Rebuild `channel.app` around an in-process request object, with the same handlers.

    bot/channels/telegram.py builds its Application from settings (base URL, timeouts)
    and has no hook for a custom BaseRequest; a `request=` constructor parameter there
    would make this helper unnecessary (see bench/RESULTS.md)."""
    from telegram import Update
    from telegram.ext import Application, TypeHandler

    app = Application.builder().token(FAKE_TOKEN).request(request).get_updates_request(request).updater(None).build()
    app.add_handler(TypeHandler(Update, channel._on_update))
    app.add_error_handler(channel._on_error)
    channel.app = app
    return app


def run_subprocess_json(argv: list[str], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run one benchmark script with --json; (merged object of every JSON line, stderr tail)."""
    import subprocess

    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    merged: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                merged.update(obj)
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    if proc.returncode != 0 and not merged:
        return None, f"exit {proc.returncode}: {tail}"
    return merged or None, tail


def call_quietly(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return {"error": f"{exc.__class__.__name__}: {exc}"}
