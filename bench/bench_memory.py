"""The bot's resident memory with 1,000,000 submissions stored (target: under 200 MB).

Seeds the submissions with bench/bench_digest.py's seeder (executemany, realistic ten
weeks of traffic, indexes built after the rows), then starts the real services
(bot.app.open_services) on that database, handles a few hundred Telegram updates through
the real TelegramChannel (bench/bench_ingest.py's offline Bot API: residents finishing
reports, so the similar-report lookup runs against the million rows) and reads the
process RSS with psutil. The seeding runs in a child process so its memory never counts.

    .venv/bin/python -m bench.bench_memory [--quick] [--json] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, emit, pin_one_core, quiet_logs, summary, target


def seed_in_child(db: Path, rows: int) -> float:
    """Seed with bench_digest.seed in a separate process (its memory is not the bot's)."""
    code = (
        "import sys; from datetime import UTC, datetime; from pathlib import Path;"
        "sys.path.insert(0, '.'); sys.path.insert(0, 'bench');"
        "from bench_digest import seed;"
        f"print(seed(Path({str(db)!r}), {rows}, now=datetime.now(UTC)))"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def stored(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM submissions").fetchone()[0]


async def measure(db: Path, messages_residents: int) -> dict[str, Any]:
    import psutil

    from bench.bench_ingest import BASE_UID, Bot, Updates, load_texts, make_residents, seed_users

    proc = psutil.Process()
    rss = lambda: proc.memory_info().rss / 1024 / 1024  # noqa: E731
    before_start = rss()
    folder = db.parent
    link = folder / "bench.db"
    if db != link:
        if link.exists():
            link.unlink()
        link.symlink_to(db)
    async with Bot(folder, naive=False) as bot:
        after_start = rss()
        residents = make_residents(messages_residents, load_texts(), 3, BASE_UID + 900_000)
        seed_users(bot.settings.database_path, [(r.uid, r.lang, "chosen") for r in residents], "idle", {"n": 0})
        for r in residents:
            r.consented = True
        updates = Updates()
        handled = 0
        # Residents one after another, each through their whole report (about 11 updates).
        for r in residents:
            while not r.done:
                body = r.next_update(updates, bot.request.last_markup.get(r.uid, []))
                if body is None:
                    break
                await bot.handle(body)
                handled += 1
        after_messages = rss()
        errors = [r.failed for r in residents if r.failed]
    return {
        "rss_before_services_mb": before_start,
        "rss_after_start_mb": after_start,
        "rss_after_messages_mb": after_messages,
        "peak_rss_mb": max(after_messages, _hwm()),
        "messages": handled,
        "errors": len(errors),
    }


def _hwm() -> float:
    """VmHWM: the peak RSS of this process (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="200,000 submissions instead of 1,000,000")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--db", type=Path, help="a seeded database to reuse (created if missing)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--measure-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--residents", type=int, default=30, help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet_logs()
    if args.measure_only:
        # One fresh process per measurement: RSS is the bot's alone.
        pin_one_core()
        import json

        print(json.dumps(asyncio.run(measure(args.measure_only, args.residents))))
        return
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    runs = 3
    with tempfile.TemporaryDirectory(prefix="sw-bench-mem-") as tmp:
        db = args.db or Path(tmp) / "million.db"
        seed_seconds = None
        if not db.exists():
            seed_seconds = seed_in_child(db, rows)
        count = stored(db)
        results = []
        for _ in range(runs):
            # A copy per run: each run adds residents and submissions.
            run_db = Path(tmp) / "run" / "bench.db"
            run_db.parent.mkdir(exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                Path(str(run_db) + suffix).unlink(missing_ok=True)
            subprocess.run(["cp", "--reflink=auto", str(db), str(run_db)], check=True)
            proc = subprocess.run(
                [sys.executable, "-m", "bench.bench_memory", "--measure-only", str(run_db)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("{")), None)
            if line is None:
                raise SystemExit(f"measurement failed: {proc.stderr[-2000:]}")
            import json

            results.append(json.loads(line))
    rss = summary([r["rss_after_messages_mb"] for r in results], "MB", digits=1)
    result = {
        "submissions_stored": count,
        "seed_seconds": round(seed_seconds, 1) if seed_seconds else None,
        "messages_handled_per_run": results[0]["messages"],
        "rss_after_start": summary([r["rss_after_start_mb"] for r in results], "MB", digits=1),
        "rss_after_messages": rss,
        "peak_rss": summary([r["peak_rss_mb"] for r in results], "MB", digits=1),
        "rss_target": target(rss["median"], 200.0, at_least=False),
        "conversation_errors": sum(r["errors"] for r in results),
    }
    if count < 1_000_000:
        result["note"] = f"only {count} submissions (--quick); the target is stated at 1,000,000"
    emit("bot_memory", result, args.json)


if __name__ == "__main__":
    main()
