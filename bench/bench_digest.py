"""How long a weekly digest takes with 1,000,000 submissions in the database.

    .venv/bin/python bench/bench_digest.py               # seed a temp db, measure, report
    .venv/bin/python bench/bench_digest.py --json        # one JSON object, for machines
    .venv/bin/python bench/bench_digest.py --db /tmp/big.db   # keep (and reuse) the seeded db

Seeds ten weeks of realistic traffic (growing week by week, a daily rhythm, pillars and
kecamatan far from uniform, most submissions never supported, a few hidden, older ones
further along in their status) with executemany, indexes built after the rows. Then times
read_digest_rows + compute_digest for the last full week, pinned to one core: the median of
several runs and their spread, the slowest queries, and the query plans.

With --configs it measures several databases: the same week on top of 100,000, 1,000,000
and 3,000,000 stored (the cost must follow the week, not the history) and a week of
150,000. Target (issue 20): under 100 ms at 1,000,000 with 20,000 in the week.

For comparison it also times one week's GROUP BY written the obvious way (a created_at
range, the planner free to choose), and shows the plan SQLite picks for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import MAGETAN_KECAMATAN
from handlers.deadlines import DeadlinePolicy, Rules
from handlers.digest import Period, compute_digest
from handlers.domain import CODE_ALPHABET
from storage.database import Database, connect_readonly, to_db
from storage.deadlines import deadline_report_on
from storage.digest_queries import query_plans, read_digest_rows_on

ZONE = ZoneInfo("Asia/Jakarta")
PILLAR_WEIGHTS = {
    "living": 35,
    "environment": 20,
    "governance": 15,
    "society": 12,
    "economy": 10,
    "branding": 4,
    None: 4,
}
SUBTOPICS = {
    "living": ["jalan", "pju", "air_bersih", "transportasi", "kesehatan", "perumahan"],
    "environment": ["sampah", "banjir", "sungai", "polusi", "taman"],
    "governance": ["adminduk", "perizinan", "aparat", "pungli", "aplikasi"],
    "society": ["sekolah", "keamanan", "ketertiban", "bencana"],
    "economy": ["bansos", "umkm", "pasar", "pertanian", "pekerjaan"],
    "branding": ["wisata", "acara", "produk", "wajah_kota"],
}
TEXTS = [
    "Jalan di desa {n} rusak berat dan berlubang, sudah {d} bulan tidak diperbaiki.",
    "Lampu PJU di dusun {n} mati sejak minggu lalu, jalan gelap dan rawan kecelakaan.",
    "Sampah menumpuk di TPS dekat pasar {n}, baunya sampai ke rumah warga, mohon diangkut.",
    "Usul dibangun taman bermain anak di lahan kosong RT {n}, supaya anak tidak main di jalan.",
    "Pengurusan KTP-el di kecamatan lama sekali, sudah {d} kali datang belum jadi. Hubungi 0812{n:07d}.",
    "Saluran air di gang {n} mampet, setiap hujan banjir setinggi lutut masuk ke rumah.",
    "Mohon pelatihan pemasaran online untuk UMKM keripik tempe di desa {n}.",
]
STATUS_FLOW = ["reviewed", "forwarded", "resolved"]


def _weighted(rng: random.Random, weights: dict):
    """A fast weighted draw: cumulative weights once, then bisect (rng.choices rebuilds them)."""
    import bisect
    import itertools

    keys = list(weights)
    cum = list(itertools.accumulate(weights.values()))
    total, rand, find = cum[-1], rng.random, bisect.bisect
    return lambda: keys[find(cum, rand() * total)]


def _stamp(epoch: float) -> str:
    # Same text as storage.database.to_db, ~3x faster for a million rows.
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")


HISTORY_WEEKS = 104  # two years of campaign before the fortnight the digest reads
WEEK_ROWS = 20_000  # issue 20: 20,000 submissions in the digest's week


def seed(path: Path, rows: int, *, now: datetime, rng_seed: int = 5, week_rows: int = WEEK_ROWS) -> float:
    """Create the schema with the real migrations, then insert `rows` submissions, their
    status history and their supports. `week_rows` arrive in the digest's week and as many
    in the week before; the rest are spread over HISTORY_WEEKS before that, so the same week
    can sit on top of 100,000 or 3,000,000 stored. Returns seconds taken."""
    started = time.perf_counter()

    async def schema() -> None:
        async with Database(path):
            pass

    asyncio.run(schema())
    rng = random.Random(rng_seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    tables = "('submissions', 'status_history', 'supports', 'closures')"
    indexes = [
        r[0]
        for r in conn.execute(
            f"SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN {tables} AND sql IS NOT NULL"
        )
    ]
    for (name,) in conn.execute(
        f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN {tables} AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f"DROP INDEX {name}")  # build them once at the end: far faster

    pillar_of = _weighted(rng, PILLAR_WEIGHTS)
    area_weights = {a: 1 / (i + 1) ** 0.8 for i, a in enumerate(rng.sample(MAGETAN_KECAMATAN, len(MAGETAN_KECAMATAN)))}
    area_weights[None] = 0.4
    area_of = _weighted(rng, area_weights)
    hour_weights = {h: (3 if 6 <= h <= 21 else 1) * (2 if h in (7, 8, 19, 20) else 1) for h in range(24)}
    hour_of = _weighted(rng, hour_weights)
    week_start = Period.week_before(now, ZONE).start.timestamp()
    previous_start = week_start - 604_800
    history_start = previous_start - HISTORY_WEEKS * 604_800
    now_epoch = now.timestamp()
    assert _stamp(now_epoch) == to_db(now)
    alphabet = CODE_ALPHABET
    week_rows = min(week_rows, rows // 2)
    supports_rows: list[tuple[int, int, str]] = []
    closures_rows: list[tuple[int, str, str | None, str | None, int | None]] = []

    def code(i: int) -> str:
        out = []
        for _ in range(6):
            i, r = divmod(i, 32)
            out.append(alphabet[r])
        return "".join(out)

    def arrival(i: int) -> float:
        # Oldest first, so ids follow time as in production.
        history = rows - 2 * week_rows
        if i < history:
            day = int((i / max(history, 1)) * HISTORY_WEEKS * 7)
            base = history_start + day * 86_400
        else:
            j = i - history
            base = (previous_start if j < week_rows else week_start) + int((j % week_rows) / week_rows * 7) * 86_400
        return base + hour_of() * 3600 + int(rng.random() * 3600)  # local midnights + local hour

    def generate():
        for i in range(rows):
            created = arrival(i)
            pillar = pillar_of()
            kind = "idea" if rng.random() < 0.2 else "report"
            subtopic = rng.choice(SUBTOPICS[pillar]) if pillar else None
            age_weeks = (now_epoch - created) / 604_800
            status, changed = "new", created
            steps = min(len(STATUS_FLOW), int(rng.random() * age_weeks / 2.5))
            if rng.random() < 0.03:
                status, steps = "rejected", 0
                changed = created + 86_400 * (1 + int(rng.random() * 4))
            if steps:  # the last step happened some time between arrival and now
                status = STATUS_FLOW[steps - 1]
                changed = created + rng.random() * (now_epoch - created)
            if changed > now_epoch:
                status, changed = "new", created
            # Issue 17's clocks on the row (migration 0013), as set_status keeps them; the last
            # step stands for all (one history row per later step, below).
            changed_at = _stamp(changed)
            answered = status != "new"
            resolved = status == "resolved"
            seconds = round(changed - created)
            closure = rating = None
            if resolved:
                # The resident's answer: most confirm, some never answer, recent ones wait.
                answered_epoch = min(changed + rng.random() * 3 * 86_400, now_epoch)
                roll = rng.random()
                if changed > now_epoch - 7 * 86_400 and roll < 0.5:
                    closure = "waiting"
                elif roll < 0.7:
                    closure, rating = "confirmed", 3 + int(rng.random() * 3)
                else:
                    closure = "unconfirmed"
                closures_rows.append(
                    (
                        i + 1,
                        changed_at,
                        None if closure == "waiting" else closure,
                        None if closure == "waiting" else _stamp(answered_epoch),
                        rating,
                    )
                )
            supports = 0 if rng.random() < 0.7 else int(rng.expovariate(0.3))
            # Supports arrive over the weeks after the submission (some in the digest's week).
            for u in range(min(supports, 6)):
                when = created + rng.random() * min(now_epoch - created, 8 * 604_800)
                supports_rows.append((i + 1, u + 1, _stamp(when)))
            text = TEXTS[int(rng.random() * len(TEXTS))].format(n=int(rng.random() * 9999), d=2 + int(rng.random() * 7))
            yield (
                code(i + 1),
                kind,
                pillar,
                subtopic,
                pillar,
                text,
                "id",
                area_of(),
                "telegram",
                status,
                1 if rng.random() < 0.01 else 0,
                supports,
                _stamp(created),
                changed_at,
                changed_at,
                "Dinas PUPR" if status == "forwarded" else None,
                changed_at if status == "forwarded" else None,
                changed_at if answered else None,
                seconds if answered else None,
                changed_at if resolved else None,
                seconds if resolved else None,
                closure,
                rating,
            )

    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO submissions (code, kind, pillar, subtopic, auto_pillar, text, language, area, channel, "
        "status, hidden, supports, created_at, updated_at, status_changed_at, forwarded_to, "
        "forwarded_at, first_response_at, first_response_s, resolved_at, resolution_s, closure, rating) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        generate(),
    )
    conn.executemany(
        "INSERT INTO closures (submission_id, resolved_at, resolved_by, outcome, answered_at, rating) "
        "VALUES (?, ?, 'telegram:1', ?, ?, ?)",
        closures_rows,
    )
    # One history row for arriving, one for each later step (approximated as one move to
    # the current status at its change time): ~1.3 rows per submission, as in production.
    conn.execute(
        "INSERT INTO status_history (submission_id, from_status, to_status, actor, created_at) "
        "SELECT id, NULL, 'new', 'resident', created_at FROM submissions"
    )
    conn.execute(
        "INSERT INTO status_history (submission_id, from_status, to_status, note, actor, created_at) "
        "SELECT id, 'new', status, forwarded_to, 'telegram:1', status_changed_at FROM submissions "
        "WHERE status <> 'new'"
    )
    conn.executemany(
        "INSERT OR IGNORE INTO supports (submission_id, user_id, created_at) VALUES (?, ?, ?)", supports_rows
    )
    conn.execute("COMMIT")
    for sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")  # as a maintained production db would have; plans are pinned anyway
    conn.close()
    return time.perf_counter() - started


def _per_query(conn: sqlite3.Connection, period: Period, runs: int) -> dict[str, float]:
    """Median time of each digest query alone: where the time goes."""
    import storage.digest_queries as q

    bounds = q._bounds(period)
    queries = {
        "groups": (q.GROUPS_SQL, bounds),
        "top (x12)": (q.TOP_SQL, {**bounds, "pillar": "living", "kind": "report", "limit": q.QUOTE_CANDIDATES}),
        "movement (x5)": (q.MOVEMENT_SQL, {**bounds, "status": "reviewed"}),
        "moves (x2)": (q.MOVES_SQL, {**bounds, "status": "forwarded", "limit": q.MOVES_LIMIT}),
        "supports": (q.SUPPORTS_SQL, bounds),
        # The ids bound one parameter each where json_each is gone (the PostgreSQL-ready queries).
        "gains": q._gains_query(list(range(1, 61)))
        if hasattr(q, "_gains_query")
        else (q.GAINS_SQL, {"ids": "[" + ",".join(str(i) for i in range(1, 61)) + "]"}),
        "waiting (x3)": (q.WAITING_SQL, {**bounds, "status": "new", "limit": q.BACKLOG}),
        "untagged_open": (q.UNTAGGED_OPEN_SQL, bounds),
        "untagged_oldest": (q.UNTAGGED_OLDEST_SQL, {**bounds, "limit": q.BACKLOG}),
        "movement_hidden": (q.MOVEMENT_HIDDEN_SQL, bounds),
    }
    out = {}
    for name, (sql, params) in queries.items():
        times = []
        for _ in range(max(3, runs // 2)):
            started = time.perf_counter()
            conn.execute(sql, params).fetchall()
            times.append(time.perf_counter() - started)
        out[name] = round(statistics.median(times) * 1000, 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:6])


def measure(path: Path, period: Period, runs: int) -> dict:
    conn = connect_readonly(path)
    try:
        times, cpu, digest, deadline_times = [], [], None, []
        for _ in range(runs):
            started, started_cpu = time.perf_counter(), time.process_time()
            conn.execute("BEGIN")
            rows = read_digest_rows_on(conn, period)
            # Issue 17's figures, as the digest service reads them (overdue as of "now").
            deadline_started = time.perf_counter()
            figures = deadline_report_on(conn, RULES, today=TODAY, since=period.start, until=period.end)
            deadline_times.append(time.perf_counter() - deadline_started)
            conn.execute("COMMIT")
            digest = compute_digest(period, rows, regency="Kabupaten Magetan", deadlines=figures)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        plans = query_plans(conn, period)
        per_query = _per_query(conn, period, runs)
        # The weekly GROUP BY as one would first write it, the planner free to choose.
        naive_sql = (
            "SELECT pillar, kind, area, subtopic, status, count(*) FROM submissions "
            "WHERE created_at >= :start AND created_at < :end AND hidden = 0 "
            "GROUP BY pillar, kind, area, subtopic, status"
        )
        bounds = {"start": to_db(period.start), "end": to_db(period.end)}
        naive_plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + naive_sql, bounds)]
        started = time.perf_counter()
        conn.execute(naive_sql, bounds).fetchall()
        naive = time.perf_counter() - started
        total_rows = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
    finally:
        conn.close()
    assert digest is not None
    return {
        "rows": total_rows,
        "period": period.label,
        "week_submissions": digest.total.current,
        "runs": runs,
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "stdev_s": round(statistics.stdev(times), 4) if len(times) > 1 else 0.0,
        # CPU time of this process: what the wall clock would be on an idle core.
        "cpu_median_s": round(statistics.median(cpu), 4),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "plans": plans,
        "per_query_ms": per_query,
        "deadline_figures_ms_median": round(statistics.median(deadline_times) * 1000, 1),
        "deadline_figures": {
            "overdue": digest.deadlines.overdue if digest.deadlines else None,
            "first_responses": digest.deadlines.first_responses if digest.deadlines else None,
            "resolutions": digest.deadlines.resolutions if digest.deadlines else None,
            "closures": digest.deadlines.closures if digest.deadlines else None,
        },
        "deadline_plans": _deadline_plans(conn_path=path, period=period),
        "naive_group_by": {"seconds": round(naive, 4), "plan": naive_plan},
    }


RULES = Rules(DeadlinePolicy(), ZONE)
TODAY = datetime(2026, 12, 2, 3, 0, tzinfo=UTC).astimezone(ZONE).date()  # the bench's "now"


def _deadline_plans(*, conn_path: Path, period: Period) -> dict[str, list[str]]:
    """The plan SQLite picks for each of issue 17's figure queries."""
    from storage.deadlines import _report_queries

    conn = connect_readonly(conn_path)
    try:
        queries = _report_queries(RULES.cutoffs(TODAY), period.start, period.end, 10)
        return {
            name: [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            for name, (sql, params) in queries.items()
        }
    finally:
        conn.close()


def _migrate(path: Path) -> None:
    """A database seeded before a migration gets it the way the bot would at start-up."""

    async def run() -> None:
        async with Database(path):
            pass

    asyncio.run(run())


TARGET_S = 0.100  # issue 20: the digest's queries under 100 ms at 1,000,000 with 20,000 in the week


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--week-rows", type=int, default=WEEK_ROWS)
    parser.add_argument(
        "--configs",
        default=None,
        help="several ROWS:WEEK pairs, e.g. 100000:20000,1000000:20000,3000000:20000,"
        "1000000:150000 (cost against history and against the week)",
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--db", type=Path, default=None, help="keep the seeded db here (reused if present); with --configs, a folder"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # a Wednesday: last full week is 2026-W48
    period = Period.week_before(now, ZONE)
    configs = (
        [tuple(int(x) for x in c.split(":")) for c in args.configs.split(",")]
        if args.configs
        else [(args.rows, args.week_rows)]
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows, week in configs:
            if args.configs:
                folder = args.db or Path(tmp)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"digest-{rows}-{week}.db"
            else:
                path = args.db or Path(tmp) / "bench_digest.db"
            seed_s = None
            if not path.exists():
                seed_s = round(seed(path, rows, now=now, week_rows=week), 1)
            else:
                _migrate(path)
            result = {"seed_s": seed_s, "week_rows_seeded": week, **measure(path, period, args.runs)}
            result["target_s"], result["ok"] = TARGET_S, result["median_s"] < TARGET_S
            results.append(result)
            if not args.json:
                _print(result, args.runs)
    if args.json:
        print(json.dumps(results if args.configs else results[0], ensure_ascii=False))


def _print(result: dict, runs: int) -> None:
    print(
        f"{result['rows']:,} submissions (seeded in {result['seed_s']} s); digest {result['period']} "
        f"covers {result['week_submissions']:,}"
    )
    print(
        f"compute digest: median {result['median_s'] * 1000:.1f} ms over {runs} runs "
        f"(min {result['min_s'] * 1000:.1f}, max {result['max_s'] * 1000:.1f}, "
        f"stdev {result['stdev_s'] * 1000:.1f}); CPU median {result['cpu_median_s'] * 1000:.1f} ms; "
        f"target < {TARGET_S * 1000:.0f} ms (at 1,000,000 with 20,000 in the week): "
        f"{'OK' if result['ok'] else 'MISSED'} (load average {result['load_average']:.2f})"
    )
    print(f"  slowest queries (ms, median): {result['per_query_ms']}")
    print(
        f"  deadline figures (issue 17): {result['deadline_figures_ms_median']} ms median; "
        f"{result['deadline_figures']}; plans {result['deadline_plans']}"
    )
    print(
        f"  one week's GROUP BY written the obvious way: {result['naive_group_by']['seconds'] * 1000:.1f} ms, "
        f"plan {result['naive_group_by']['plan']}"
    )
    print("  query plans:")
    for name, steps in result["plans"].items():
        print(f"    {name}: {' / '.join(steps)}")


if __name__ == "__main__":
    main()
