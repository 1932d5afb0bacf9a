"""k-fold view of the real development part (never the test part), to check that a rules
change generalises before keeping it.

    .venv/bin/python bench/realtext/cv.py [--rules FILE] [--base FILE] [--k 5]

Folds are fixed by sha256("fold:" + id) mod k over the dev rows. Rules are hand-edited, so
"cross-validation" here means: vocabulary is mined from the errors of some folds
(errors.py --folds), and a change is kept only when it also helps the folds it was not
mined from. This prints accuracy per fold and per source for --rules and, with --base,
the difference fold by fold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from handlers.tagging import Tagger  # noqa: E402

DATA = HERE / "data" / "real.jsonl"


def fold_of(row_id: str, k: int) -> int:
    return int(hashlib.sha256(f"fold:{row_id}".encode()).hexdigest(), 16) % k


def dev_rows() -> list[dict]:
    return [r for r in map(json.loads, open(DATA, encoding="utf-8")) if r["split"] == "dev"]


def score(tagger: Tagger, rows: list[dict], k: int) -> dict:
    folds, src, pil = Counter(), Counter(), Counter()
    nf, ns, npl = Counter(), Counter(), Counter()
    covered = 0
    for r in rows:
        res = tagger.classify(r["text"])
        ok = res.pillar == r["pillar"]
        covered += res.pillar is not None
        f, s = fold_of(r["id"], k), r["id"].split(":")[0]
        folds[f] += ok
        nf[f] += 1
        src[s] += ok
        ns[s] += 1
        pil[r["pillar"]] += ok
        npl[r["pillar"]] += 1
    return {
        "acc": sum(folds.values()) / len(rows),
        "coverage": covered / len(rows),
        "folds": [folds[i] / nf[i] for i in range(k)],
        "sources": {s: src[s] / ns[s] for s in sorted(ns)},
        "recall": {p: pil[p] / npl[p] for p in sorted(npl)},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules")
    ap.add_argument("--base")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = dev_rows()
    new = score(Tagger.from_path(args.rules), rows, args.k)
    base = score(Tagger.from_path(args.base), rows, args.k) if args.base else None
    if args.json:
        print(json.dumps({"rules": new, "base": base}))
        return 0

    def line(name: str, d: dict) -> str:
        f = " ".join(f"{x:.3f}" for x in d["folds"])
        s = " ".join(f"{k}={v:.3f}" for k, v in d["sources"].items())
        rc = " ".join(f"{k[:4]}={v:.2f}" for k, v in d["recall"].items())
        return f"{name}: dev {d['acc']:.4f} cov {d['coverage']:.3f} | folds {f} | {s} | {rc}"

    if base:
        print(line("base ", base))
    print(line("rules", new))
    if base:
        diff = [a - b for a, b in zip(new["folds"], base["folds"], strict=False)]
        print(
            "fold deltas:",
            " ".join(f"{d:+.3f}" for d in diff),
            f"(mean {sum(diff) / len(diff):+.4f}, folds improved {sum(d > 0 for d in diff)}/{len(diff)})",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
