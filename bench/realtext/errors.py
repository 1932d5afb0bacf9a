"""Misclassified messages of the real development part, for tuning (never run on test).

    .venv/bin/python bench/realtext/errors.py [--gold PILLAR] [--pred PILLAR] [--width 160] [--folds 0,1,2 --k 5]

--folds shows only the dev rows of those folds (cv.py's folds), so vocabulary can be mined
from some folds and checked on the others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv import fold_of

from handlers.tagging import Tagger

DATA = Path(__file__).resolve().parent / "data" / "real.jsonl"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gold")
    ap.add_argument("--pred")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--rules")
    ap.add_argument("--folds", help="comma-separated fold numbers (default: every fold)")
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    tagger = Tagger.from_path(args.rules)
    folds = {int(x) for x in args.folds.split(",")} if args.folds else None
    for line in open(DATA, encoding="utf-8"):
        r = json.loads(line)
        if r["split"] != "dev":  # the test part is only measured, never read
            continue
        if folds is not None and fold_of(r["id"], args.k) not in folds:
            continue
        res = tagger.classify(r["text"])
        if res.pillar == r["pillar"]:
            continue
        if (args.gold and r["pillar"] != args.gold) or (args.pred and str(res.pillar) != args.pred):
            continue
        print(f"{r['pillar'][:4]}>{str(res.pillar)[:4]} {list(res.matched)[:5]} | {r['text'][: args.width]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
