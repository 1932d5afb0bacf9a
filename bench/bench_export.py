"""Exports at scale: 1,000,000 submissions, time and peak memory per format.

    .venv/bin/python bench/bench_export.py                 # csv x5, then jsonl and xlsx once
    .venv/bin/python bench/bench_export.py --rows 200000 --formats csv --runs 3 --json
    .venv/bin/python bench/bench_export.py --db /tmp/1m.db  # keep (and reuse) the seeded db

Issue 6 asks for CSV under 30 s and under 200 MB peak on one core. Each export runs in
its own process (exactly what `suarawarga export` does), pinned to one CPU where the OS
allows, and its peak resident memory comes from os.wait4's rusage for that child alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Realistic text: residents' sentences, with the personal data mix seen in pilots
# (a phone number in a few percent, "Pak/Bu <Name>" often, RT/RW numbers everywhere).
_OPENINGS = [
    "Jalan di depan {place} rusak parah, banyak lubang dan motor sering jatuh waktu hujan.",
    "Lampu PJU di {place} mati sudah dua minggu, malam hari gelap sekali dan rawan.",
    "Sampah menumpuk di TPS dekat {place}, baunya sampai ke rumah warga.",
    "Saluran air di {place} mampet, kalau hujan deras air meluap ke jalan.",
    "Usul dibuat taman baca dan ruang bermain anak di {place}.",
    "Pelayanan KTP di kecamatan lambat sekali, antre dari pagi belum selesai.",
    "Harga pupuk naik dan stok di kios {place} sering kosong.",
    "Mohon ada pelatihan UMKM dan pemasaran online untuk ibu-ibu di {place}.",
    "Banyak anak muda balap liar di {place} setiap malam minggu.",
    "Puskesmas {place} kekurangan dokter, pasien menunggu lama.",
    "The road near {place} has been broken for months, please repair it.",
    "Idea: a weekly farmers' market in {place} with QRIS payments.",
]
_PLACES = ["pasar", "balai desa", "SD negeri", "masjid", "alun-alun", "terminal", "jembatan", "sawah"]
_EXTRAS = [
    "",
    "",
    "",
    "",
    " Mohon segera ditindaklanjuti.",
    " Terima kasih.",
    " Lokasinya di RT {rt} RW {rw}.",
    " Sudah lapor ke Pak RT tapi belum ada tindakan.",
    " Sudah lapor ke Bu Lurah tapi belum ada kabar.",
    " Bisa hubungi saya di 08{phone}.",
    " Kontak: {name}.{email}@gmail.com",
    " Saya Pak {Name} dari dusun sebelah.",
    " Sudah tiga kali lapor 🙏",
    " Warga sudah “gotong royong” tapi tidak cukup.",
    " NIK saya 3520{nik} kalau perlu.",
]
_NAMES = ["Budi", "Sari", "Joko", "Ani", "Wati", "Agus", "Dewi", "Slamet"]
_PILLAR_SUBTOPICS = [
    ("living", "transport"),
    ("living", "utilities"),
    ("environment", "waste"),
    ("environment", "flooding"),
    ("society", "community"),
    ("governance", "civil-registration"),
    ("economy", "agriculture"),
    ("economy", "business-markets"),
    ("society", "public-order"),
    ("living", "health"),
    (None, None),
]
_STATUSES = ["new", "new", "reviewed", "forwarded", "in_masterplan", "resolved", "rejected"]


def _text(rng: random.Random) -> str:
    body = rng.choice(_OPENINGS).format(place=rng.choice(_PLACES))
    for _ in range(rng.choice((0, 1, 1, 2))):
        name = rng.choice(_NAMES)
        body += rng.choice(_EXTRAS).format(
            rt=f"{rng.randint(1, 12):02d}",
            rw=f"{rng.randint(1, 6):02d}",
            phone="".join(rng.choice("0123456789") for _ in range(10)),
            name=name.lower(),
            Name=name,
            email=rng.randint(1, 99),
            nik="".join(rng.choice("0123456789") for _ in range(12)),
        )
    return body


def seed(path: Path, rows: int, *, seed_value: int = 6) -> float:
    """Create a migrated database at `path` holding `rows` submissions; return seconds."""
    from bot.config import MAGETAN_KECAMATAN
    from handlers.domain import CODE_ALPHABET
    from storage.database import Database, to_db

    async def migrate() -> None:
        async with Database(path):
            pass

    started = time.perf_counter()
    asyncio.run(migrate())
    rng = random.Random(seed_value)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    # Indexes are rebuilt after the bulk insert: same database, seeded several times faster.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'submissions' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    users = max(1, rows // 20)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO users (id, channel, platform_id, chat_id, display_name, language, consent_version, "
        "consent_at, created_at) VALUES (?, ?, ?, ?, ?, 'id', '2026-11', ?, ?)",
        (
            (
                i,
                "whatsapp" if i % 3 else "telegram",
                f"62812{i:08d}",
                f"62812{i:08d}",
                rng.choice(_NAMES),
                to_db(base),
                to_db(base),
            )
            for i in range(1, users + 1)
        ),
    )
    seen: set[str] = set()

    def code() -> str:
        while True:
            value = "".join(rng.choices(CODE_ALPHABET, k=6))
            if value not in seen:
                seen.add(value)
                return value

    step = timedelta(days=330) / rows

    def submissions():
        for i in range(rows):
            pillar, subtopic = rng.choice(_PILLAR_SUBTOPICS)
            anonymous = rng.random() < 0.3
            has_gps = rng.random() < 0.4
            stamp = to_db(base + step * i)
            yield (
                code(),
                rng.randint(1, users),
                "idea" if rng.random() < 0.3 else "report",
                pillar,
                subtopic,
                _text(rng),
                "id",
                rng.choice(MAGETAN_KECAMATAN) if rng.random() < 0.85 else None,
                -7.65 + rng.uniform(-0.1, 0.1) if has_gps else None,
                111.33 + rng.uniform(-0.1, 0.1) if has_gps else None,
                int(anonymous),
                None if anonymous else rng.choice(_NAMES),
                "whatsapp" if rng.random() < 0.6 else "telegram",
                rng.choice(_STATUSES),
                int(rng.random() < 0.01),
                rng.choice((0, 0, 0, 1, 2, 5)),
                stamp,
                stamp,
                stamp,
            )

    conn.executemany(
        "INSERT INTO submissions (code, user_id, kind, pillar, subtopic, text, language, area, latitude, "
        "longitude, anonymous, submitter_name, channel, status, hidden, supports, created_at, "
        "updated_at, status_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        submissions(),
    )
    # Issue 17's columns (migration 0013) as status changes and closure answers keep them:
    # answered a day after arriving, most resolutions confirmed, some unanswered or waiting.
    conn.execute(
        "UPDATE submissions SET "
        "forwarded_at = CASE WHEN status = 'forwarded' THEN created_at END, "
        "first_response_at = CASE WHEN status <> 'new' THEN created_at END, "
        "first_response_s = CASE WHEN status <> 'new' THEN 86400 END, "
        "resolved_at = CASE WHEN status IN ('resolved', 'in_masterplan') THEN created_at END, "
        "resolution_s = CASE WHEN status IN ('resolved', 'in_masterplan') THEN 86400 END, "
        "closure = CASE WHEN status = 'resolved' THEN CASE WHEN id % 10 < 6 THEN 'confirmed' "
        "WHEN id % 10 < 8 THEN 'unconfirmed' ELSE 'waiting' END END, "
        "rating = CASE WHEN status = 'resolved' AND id % 10 < 6 THEN 3 + id % 3 END"
    )
    conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.close()
    return time.perf_counter() - started


def _mask_as_saved(db: Path, *, raw: bool) -> float | None:
    """Give every row the masked text the bot stores when a submission is saved (or, with
    `raw`, take it away again); returns the seconds it took, None when nothing changed."""
    from storage.database import Database

    async def migrate() -> None:
        async with Database(db):
            pass

    asyncio.run(migrate())
    from handlers import privacy

    conn = sqlite3.connect(db, isolation_level=None)
    try:
        if raw:
            if conn.execute("SELECT 1 FROM submissions WHERE masked_with IS NOT NULL LIMIT 1").fetchone() is None:
                return None
            started = time.perf_counter()
            conn.execute("UPDATE submissions SET text_masked = NULL, masked_with = NULL")
            return round(time.perf_counter() - started, 1)
        version = privacy.RULES_VERSION
        todo = conn.execute("SELECT count(*) FROM submissions WHERE masked_with IS NOT ?", (version,)).fetchone()[0]
        if not todo:
            return None
        started = time.perf_counter()
        conn.execute("BEGIN")
        rows = conn.execute("SELECT id, text FROM submissions WHERE masked_with IS NOT ?", (version,)).fetchall()
        conn.executemany(
            "UPDATE submissions SET text_masked = ?, masked_with = ? WHERE id = ?",
            ((privacy.redact(text), version, i) for i, text in rows),
        )
        conn.execute("COMMIT")
        return round(time.perf_counter() - started, 1)
    finally:
        conn.close()


def _child(fmt: str, db: str, out: str) -> None:
    """Runs in the measured process: one export, its own wall time on stdout."""
    from zoneinfo import ZoneInfo

    from bot.exports import ExportFilter, export

    started = time.perf_counter()
    cpu = time.process_time()
    with open(out, "wb") as handle:
        count = export(Path(db), fmt, handle, ExportFilter(), zone=ZoneInfo("Asia/Jakarta"))
    print(
        json.dumps(
            {
                "rows": count,
                "export_s": time.perf_counter() - started,
                "export_cpu_s": time.process_time() - cpu,
                "vm_hwm_mb": _vm_hwm_mb(),
            }
        )
    )


def _vm_hwm_mb() -> float | None:
    """Peak resident memory of this program alone (Linux), unlike ru_maxrss, which
    also remembers the parent's footprint from before exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def measure(fmt: str, db: Path, out: Path) -> dict:
    started = time.perf_counter()
    cmd = [sys.executable, __file__, "--child", fmt, str(db), str(out)]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd] if _has_taskset() else cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{fmt} export failed with exit code {proc.returncode}")
    result = json.loads(output)
    return {
        "format": fmt,
        "rows": result["rows"],
        "export_s": round(result["export_s"], 2),
        "export_cpu_s": round(result["export_cpu_s"], 2),
        "process_s": round(time.perf_counter() - started, 2),
        "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        # The parent stays small (seeding runs in its own process), so ru_maxrss, which
        # Linux carries across fork and exec, is the export's own peak too.
        "peak_rss_mb": max(round(usage.ru_maxrss / 1024, 1), result["vm_hwm_mb"] or 0),
        "bytes": out.stat().st_size,
    }


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="CSV runs (median and spread)")
    parser.add_argument("--formats", default="csv,jsonl,xlsx")
    parser.add_argument("--db", type=Path, help="seeded database to reuse (created if missing)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", nargs=3, metavar=("FMT", "DB", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", nargs=2, metavar=("DB", "ROWS"), help=argparse.SUPPRESS)
    parser.add_argument("--mask", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument(
        "--raw", action="store_true", help="no text masked at saving: every row masked by the export (as before 0011)"
    )
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.seed:
        seed(Path(args.seed[0]), int(args.seed[1]))
        return
    if args.mask:
        _mask_as_saved(Path(args.mask), raw=args.raw)
        return

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        db = args.db or Path(tmp) / "bench.db"
        seed_s = None
        if not db.exists():
            # In a child: seeding a million rows grows this process, and a big parent
            # would inflate the children's ru_maxrss.
            started = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--seed", str(db), str(args.rows)], check=True, cwd=ROOT)
            seed_s = round(time.perf_counter() - started, 1)
        # The bot masks a submission's text once, when it is saved (migration 0011): the
        # seeded rows get the same, timed apart, unless --raw measures exports without it.
        # In a child, as the seeding: reading a million texts would grow this process, and
        # a big parent inflates the export children's ru_maxrss (fork shares its pages).
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--mask", str(db), *(["--raw"] if args.raw else [])], check=True, cwd=ROOT
        )
        mask_s = round(time.perf_counter() - started, 1)
        rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
        results: dict = {
            "masked_at_saving": not args.raw,
            "mask_at_saving_s": mask_s,
            "rows_in_db": rows,
            "seed_s": seed_s,
            "cpu_pinned": _has_taskset(),
            # Wall time means little on a busy machine; CPU time is the export's own cost.
            "load_average_before": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
            "formats": {},
        }
        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            runs = args.runs if fmt == "csv" else 1
            measured = []
            for _ in range(runs):
                measured.append(measure(fmt, db, Path(tmp) / f"out.{fmt}"))
                if not args.json:
                    print(f"{fmt}: {measured[-1]}", file=sys.stderr)
            times = [m["export_s"] for m in measured]
            cpu = [m["export_cpu_s"] for m in measured]
            results["formats"][fmt] = {
                "rows": measured[0]["rows"],
                "export_s_median": round(statistics.median(times), 2),
                "export_s_min": min(times),
                "export_s_max": max(times),
                "export_cpu_s_median": round(statistics.median(cpu), 2),
                "export_cpu_s_min": min(cpu),
                "export_cpu_s_max": max(cpu),
                "process_s_median": round(statistics.median(m["process_s"] for m in measured), 2),
                "peak_rss_mb_max": max(m["peak_rss_mb"] for m in measured),
                "bytes": measured[0]["bytes"],
                "runs": runs,
            }
        # Issue 20's targets for 1,000,000 rows, CPU seconds and peak memory, beside the figures.
        from bench.common import target

        limits = {"csv": 15.0, "jsonl": 10.0, "xlsx": 90.0}
        for fmt, r in results["formats"].items():
            if fmt in limits:
                r["cpu_target"] = target(r["export_cpu_s_median"], limits[fmt], at_least=False)
            r["memory_target"] = target(r["peak_rss_mb_max"], 200.0, at_least=False)
        results["load_average_after"] = round(os.getloadavg()[0], 2)
        if args.json:
            print(json.dumps(results))
        else:
            for fmt, r in results["formats"].items():
                print(
                    f"{fmt:8} {r['rows']:>9,} rows  {r['export_s_median']:6.2f} s median "
                    f"({r['export_s_min']}-{r['export_s_max']}, {r['runs']} runs), CPU "
                    f"{r['export_cpu_s_median']} s ({r['export_cpu_s_min']}-{r['export_cpu_s_max']})  "
                    f"peak {r['peak_rss_mb_max']} MB  {r['bytes'] / 1e6:.0f} MB written"
                )
            print(
                f"(load average {results['load_average_before']} before, {results['load_average_after']} "
                f"after, on {results['cpus']} CPUs)"
            )
            if seed_s is not None:
                print(f"(seeding {rows:,} rows took {seed_s} s)")


if __name__ == "__main__":
    main()
