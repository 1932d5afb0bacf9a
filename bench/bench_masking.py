"""Masking of personal data in free text: precision and recall per kind, and µs per call.

    .venv/bin/python bench/bench_masking.py             # table
    .venv/bin/python bench/bench_masking.py --json      # one JSON object
    .venv/bin/python bench/bench_masking.py --misses    # also list every miss and false alarm

Quality is measured on tests/data/masking.jsonl (hand-written sentences, each with the
expected spans per kind: phone, nik, email, name, address). A labelled span counts as found
when every letter and digit in it is covered by a found span of the same kind (a name
whose third word leaks is a miss). A found span counts as right when it overlaps a labelled
span of its kind and covers no letter or digit outside the labels ("Sari Wulandari dari"
for "Sari Wulandari" is a false alarm: "dari" is lost from the text).

Speed is handlers.privacy.redact over two sets of texts, the median of several runs, on
one core: the labelled sentences, and 200,000 texts from bench/bench_export.py's
generator (what a million-row export masks; issue 6 gives the export 15 s for 1,000,000).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handlers import privacy  # noqa: E402 - after the path set-up above

DATA = ROOT / "tests" / "data" / "masking.jsonl"
KINDS = ("phone", "nik", "email", "name", "address")


def load_cases(path: Path = DATA) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


_MASK_KIND = {
    "[telepon]": "phone",
    "[phone]": "phone",
    "[NIK]": "nik",
    "[email]": "email",
    "[nama]": "name",
    "[name]": "name",
    "[alamat]": "address",
    "[address]": "address",
}


def spans_from_redact(redact: Any, text: str) -> list[privacy.Span]:
    """Spans of an older privacy module that only has redact(text): where its masks went."""
    out = redact(text)
    pieces = re.split(r"(\[(?:telepon|phone|NIK|email|nama|name|alamat|address)\])", out)
    pattern = "".join("(.+?)" if i % 2 else re.escape(p) for i, p in enumerate(pieces))
    m = re.fullmatch(pattern, text, re.DOTALL)
    if m is None:
        return []
    kinds = [_MASK_KIND[p] for p in pieces[1::2]]
    return [privacy.Span(m.start(g), m.end(g), k) for g, k in enumerate(kinds, 1)]


def _covered(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return all(any(a <= i < b for a, b in spans) for i in range(start, end) if text[i].isalnum())


def score(cases: list[dict[str, Any]], find: Any = None) -> dict[str, dict[str, Any]]:
    """Per kind: labelled, found (true positives), false alarms, misses, precision, recall."""
    result: dict[str, dict[str, Any]] = {
        k: {"labelled": 0, "found": 0, "predicted": 0, "right": 0, "misses": [], "false_alarms": []} for k in KINDS
    }
    for case in cases:
        text = case["text"]
        predicted = (find or privacy.find)(text)
        for kind in KINDS:
            gold = [(s["start"], s["end"]) for s in case["spans"] if s["kind"] == kind]
            mine = [(s.start, s.end) for s in predicted if s.kind == kind]
            r = result[kind]
            for a, b in gold:
                r["labelled"] += 1
                if _covered(text, a, b, mine):
                    r["found"] += 1
                else:
                    r["misses"].append((text, text[a:b]))
            for a, b in mine:
                r["predicted"] += 1
                overlaps = any(a < gb and ga < b for ga, gb in gold)
                if overlaps and _covered(text, a, b, gold):
                    r["right"] += 1
                else:
                    r["false_alarms"].append((text, text[a:b]))
    for r in result.values():
        r["recall"] = round(r["found"] / r["labelled"], 3) if r["labelled"] else None
        r["precision"] = round(r["right"] / r["predicted"], 3) if r["predicted"] else None
    return result


def _export_texts(n: int) -> list[str]:
    import bench_export  # bench/ is on sys.path when run as a script

    rng = random.Random(6)
    return [bench_export._text(rng) for _ in range(n)]


def _us_per_call(redact: Any, texts: list[str], runs: int) -> dict[str, Any]:
    # CPU time of this process: the machine is shared, and waiting for a core is not cost.
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        for text in texts:
            redact(text)
        times.append((time.process_time() - t0) / len(texts) * 1e6)
    return {
        "median": round(statistics.median(times), 2),
        "min": round(min(times), 2),
        "max": round(max(times), 2),
        "runs": [round(t, 2) for t in times],
        "unit": "µs/call CPU",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--misses", action="store_true", help="list misses and false alarms")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--texts", type=int, default=200_000, help="export-like texts to time")
    parser.add_argument(
        "--module",
        type=Path,
        help="score and time another privacy.py (e.g. an old "
        "version from git show); spans come from where its redact put masks",
    )
    args = parser.parse_args()
    redact, find = privacy.redact, privacy.find
    if args.module:
        import importlib.util

        spec = importlib.util.spec_from_file_location("privacy_under_test", args.module)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        redact = module.redact
        find = getattr(module, "find", None) or (lambda text: spans_from_redact(module.redact, text))
    cases = load_cases()
    quality = score(cases, find)
    # Batches written after the rules they are scored on ("set": "holdout-N" in the file).
    held = {
        name: score([c for c in cases if c.get("set") == name], find)
        for name in sorted({c["set"] for c in cases if c.get("set")})
    }
    labelled_texts = [c["text"] for c in cases] * max(1, 20_000 // len(cases))
    export_texts = _export_texts(args.texts)
    speed = {
        "labelled_sentences": _us_per_call(redact, labelled_texts, args.runs),
        "export_texts": _us_per_call(redact, export_texts, args.runs),
    }
    avg_len = {
        "labelled_sentences": round(statistics.mean(map(len, labelled_texts)), 1),
        "export_texts": round(statistics.mean(map(len, export_texts)), 1),
    }
    figures = {
        "sentences": len(cases),
        "without_personal_data": sum(not c["spans"] for c in cases),
        "kinds": {k: {f: v for f, v in r.items() if f not in ("misses", "false_alarms")} for k, r in quality.items()},
        "held_out": {
            name: {k: {f: v for f, v in r.items() if f not in ("misses", "false_alarms")} for k, r in table.items()}
            for name, table in held.items()
        },
        "us_per_call": speed,
        "mean_chars": avg_len,
        "seconds_per_million_export_texts": round(speed["export_texts"]["median"], 1),
    }
    if args.json:
        print(json.dumps({"masking": figures}, ensure_ascii=False))
        return
    print(f"{len(cases)} sentences ({figures['without_personal_data']} without personal data)")
    tables = [("all sentences", quality)] + [(f'of which the "{n}" set', t) for n, t in held.items()]
    for title, table in tables:
        print(f"{title}:\n{'kind':<8} {'labelled':>8} {'recall':>7} {'predicted':>9} {'precision':>9}")
        for k, r in table.items():
            print(f"{k:<8} {r['labelled']:>8} {r['recall']!s:>7} {r['predicted']:>9} {r['precision']!s:>9}")
    for name, s in speed.items():
        print(
            f"redact on {name} ({avg_len[name]} chars): {s['median']} µs/call CPU "
            f"(min {s['min']}, max {s['max']}, {args.runs} runs)"
        )
    if args.misses:
        for k, r in quality.items():
            for text, part in r["misses"]:
                print(f"MISS  {k:<7} {part!r:<28} in {text!r}")
            for text, part in r["false_alarms"]:
                print(f"FALSE {k:<7} {part!r:<28} in {text!r}")


if __name__ == "__main__":
    main()
