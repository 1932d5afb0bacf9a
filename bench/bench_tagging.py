"""Tagging throughput on one core: messages per second, median of several runs + spread.

    .venv/bin/python bench/bench_tagging.py [--runs 7] [--repeat 20] [--rules PATH] [--json]

The corpus is the evaluation set (tests/data/eval_messages.jsonl) repeated; the token
cache is warmed first, as it is in a running bot. Only Tagger.classify is timed.
Three figures:
  - compiled: the tagger as the bot runs it (handlers/_tagcore.c), warm token cache;
  - compiled, first sight: the token caches emptied before every pass over the eval set,
    so each distinct word of a pass is canonicalised (stemmed) once, in Python;
  - pure Python: the reference path (Tagger(compiled=False)), warm, for comparison.
A calibration figure (µs for sum(range(100))) is printed so numbers from different
machines can be compared; virtual machines vary a lot between runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handlers.tagging import Tagger
from handlers.tagging_eval import DEFAULT_DATA, load_rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=20, help="copies of the eval set per run")
    ap.add_argument("--rules", default=None)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    texts = [r.text for r in load_rows(args.data)]
    corpus = texts * args.repeat

    def rates(tagger: Tagger, cold: bool) -> list[float]:
        classify = tagger.classify
        for t in texts:
            classify(t)  # warm the per-token cache
        out = []
        for _ in range(args.runs):
            elapsed = 0.0
            for _ in range(args.repeat):
                if cold:
                    tagger.forget_words()
                t0 = time.perf_counter()
                for t in texts:
                    classify(t)
                elapsed += time.perf_counter() - t0
            out.append(len(corpus) / elapsed)
        return out

    compiled = Tagger.from_path(args.rules)
    if not compiled.compiled:
        print("warning: the compiled core is not built; measuring the Python path", file=sys.stderr)
    warm = rates(compiled, cold=False)
    cold = rates(compiled, cold=True)
    python = rates(Tagger.from_path(args.rules, compiled=False), cold=False)
    calib = min(timeit.repeat("sum(range(100))", number=100_000, repeat=5)) / 100_000 * 1e6
    result = {
        "messages": len(corpus),
        "runs": args.runs,
        "compiled": compiled.compiled,
        "msgs_per_s_median": round(statistics.median(warm)),
        "msgs_per_s_min": round(min(warm)),
        "msgs_per_s_max": round(max(warm)),
        "us_per_msg_median": round(1e6 / statistics.median(warm), 2),
        "first_sight_msgs_per_s_median": round(statistics.median(cold)),
        "python_msgs_per_s_median": round(statistics.median(python)),
        "words_per_msg": round(sum(len(t.split()) for t in texts) / len(texts), 1),
        "calibration_us_sum_range_100": round(calib, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['msgs_per_s_median']:,} msgs/s median of {args.runs} runs "
            f"(min {result['msgs_per_s_min']:,}, max {result['msgs_per_s_max']:,}; "
            f"{result['us_per_msg_median']} µs/msg; {len(corpus):,} messages per run, "
            f"{result['words_per_msg']} words each on average; compiled core: {result['compiled']})\n"
            f"first sight of every word: {result['first_sight_msgs_per_s_median']:,} msgs/s; "
            f"pure-Python path: {result['python_msgs_per_s_median']:,} msgs/s; "
            f"calibration sum(range(100)) = {calib:.2f} µs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
