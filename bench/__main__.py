"""Every SuaraWarga benchmark, one command.

    .venv/bin/python -m bench                  # everything, a readable table (~10 minutes)
    .venv/bin/python -m bench --quick          # fewer and shorter runs, 200k rows (~2-3 minutes
                                               #  once the seeded databases are cached)
    .venv/bin/python -m bench --json           # one JSON object with every figure
    .venv/bin/python -m bench --only telegram_ingest,memory

Each benchmark runs in its own process (its memory and its core pinning are its own) and
prints one JSON object; this command merges them under their names, with the machine
they ran on. Seeded million-row databases are cached in $TMPDIR/suarawarga-bench and
reused by later runs (--fresh seeds them again). Figures are medians over several runs with
their spread (min, max); targets are reported, not enforced: these are benchmarks, not tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, render_table, run_subprocess_json

CACHE = Path(tempfile.gettempdir()) / "suarawarga-bench"


def plan(quick: bool) -> dict[str, tuple[list[str], float]]:
    """name -> (argv, timeout in seconds). Scripts owned by others run if they exist."""
    py = sys.executable
    rows = 200_000 if quick else 1_000_000
    digest_db = CACHE / f"digest-{rows}.db"  # bench_digest's seeder; the memory benchmark shares it
    export_db = CACHE / f"export-{rows}.db"
    quick_flag = ["--quick"] if quick else []
    benches: dict[str, tuple[list[str], float]] = {
        "telegram_ingest": ([py, "-m", "bench.bench_ingest", "--json", *quick_flag], 900),
        "whatsapp_ingest": ([py, "-m", "bench.bench_whatsapp", "--json", *quick_flag], 900),
        "pg_instances": ([py, "-m", "bench.bench_pg_instances", "--json", *quick_flag], 1500),
        "tagging": (
            [py, "bench/bench_tagging.py", "--json", *(["--runs", "3", "--repeat", "5"] if quick else [])],
            300,
        ),
        "digest": (
            [
                py,
                "bench/bench_digest.py",
                "--json",
                "--rows",
                str(rows),
                "--db",
                str(digest_db),
                *(["--runs", "3"] if quick else []),
            ],
            1200,
        ),
        "export": (
            [
                py,
                "bench/bench_export.py",
                "--json",
                "--rows",
                str(rows),
                "--db",
                str(export_db),
                *(["--runs", "2", "--formats", "csv"] if quick else []),
            ],
            1800,
        ),
        "memory": ([py, "-m", "bench.bench_memory", "--json", "--rows", str(rows), "--db", str(digest_db)], 1200),
        "masking": (
            [py, "bench/bench_masking.py", "--json", *(["--runs", "3", "--texts", "50000"] if quick else [])],
            600,
        ),
        # Residents' latency while an official builds a digest over the seeded database.
        "desk_contention": (
            [
                py,
                "bench/bench_desk_contention.py",
                "--json",
                "--rows",
                str(rows),
                "--db",
                str(digest_db),
                "--seconds",
                "5" if quick else "10",
            ],
            1200,
        ),
    }
    return {
        name: (argv, timeout)
        for name, (argv, timeout) in benches.items()
        if argv[1] == "-m" or (ROOT / argv[1]).exists()
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs and 200,000 rows")
    parser.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    parser.add_argument("--only", default="", help="comma-separated names: " + ", ".join(plan(False)))
    parser.add_argument("--fresh", action="store_true", help="seed the cached databases again")
    args = parser.parse_args()

    todo = plan(args.quick)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in todo]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(todo)}")
        todo = {n: todo[n] for n in wanted}
    if args.fresh and CACHE.exists():
        shutil.rmtree(CACHE)
    CACHE.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick, "benchmarks": {}}
    for name, (argv, timeout) in todo.items():
        if not args.json:
            print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        result, log_tail = run_subprocess_json(argv, timeout)
        if result is None:
            report["benchmarks"][name] = {"error": log_tail}
        else:
            # Our scripts print {name: {...}}; the others print their figures directly.
            inner = (
                next(iter(result.values()))
                if len(result) == 1 and isinstance(next(iter(result.values())), dict)
                else result
            )
            report["benchmarks"][name] = {**inner, "wall_seconds": round(time.perf_counter() - t0, 1)}
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return
    print(render_table({"machine": report["machine"]}))
    print(render_table(report["benchmarks"]))
    print(f"total {report['total_seconds']} s")


if __name__ == "__main__":
    main()
