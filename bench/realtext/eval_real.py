"""The pillar tagger on real residents' text: accuracy, per-pillar precision/recall, confusion.

    make eval-real                                   # rebuild the set, then dev and test parts
    .venv/bin/python bench/realtext/eval_real.py --part dev [--rules FILE] [--before FILE] [--mirror DIR] [--json]

Rebuilds bench/realtext/data/ from the fetched snapshots first (build.py: reserved rows are
dropped before anything is kept), then scores the packaged rules (or --rules) on our own
labels (labels.csv). The texts state no licence and are never committed; when a snapshot
is missing this says so and how to fetch it, and exits with status 2.

The test part is for measuring once the rules are frozen: every run that prints it is
counted in data/test_looks.log, so the number of looks can be reported honestly.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import build  # noqa: E402

from handlers.tagging import Tagger  # noqa: E402
from handlers.tagging_eval import evaluate, format_report, load_rows  # noqa: E402


def count_looks(log: Path) -> int:
    """Looks at the test part: one per logged run, plus any "prior: N" line (a checkout where
    data/, which is git-ignored, was rebuilt keeps the earlier sessions' count that way);
    lines starting with "#" are notes."""
    looks = 0
    for line in open(log, encoding="utf-8"):
        m = re.match(r"prior:\s*(\d+)", line)
        looks += int(m.group(1)) if m else bool(line.strip()) and not line.startswith("#")
    return looks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eval_real", description=__doc__.split("\n")[0])
    ap.add_argument("--mirror", type=Path, default=Path("/work/.mirror"), help="folder of the fetched snapshots")
    ap.add_argument("--rules", default=None, help="rules file (default: the packaged one)")
    ap.add_argument("--before", default=None, help="also score this rules file (the 'before' figures), in the same run")
    ap.add_argument("--part", choices=("dev", "test", "both"), default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = build.main(["--mirror", str(args.mirror)])
    if status != 0 or not (build.DATA / "real.jsonl").exists():
        print(out.getvalue(), end="", file=sys.stderr)
        print(
            "eval-real: the real-text snapshot is missing, so there is nothing to measure.\n"
            f"  Fetch {', '.join(build.FETCH_HINT.values())} with the\n"
            f"  search tool's fetch into {args.mirror}, then run `make eval-real` again.",
            file=sys.stderr,
        )
        return 2
    rows = load_rows(build.DATA / "real.jsonl")
    rounds = {d["id"]: d.get("round", 1) for d in map(json.loads, open(build.DATA / "real.jsonl", encoding="utf-8"))}
    tagger = Tagger.from_path(args.rules)
    before = Tagger.from_path(args.before) if args.before else None
    parts = ["dev", "test"] if args.part == "both" else [args.part]
    if "test" in parts:
        with open(build.DATA / "test_looks.log", "a", encoding="utf-8") as f:
            extra = f" before={args.before}" if args.before else ""
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} rules={args.rules or 'packaged'}{extra}\n")
    reports = {p: evaluate(tagger, [r for r in rows if r.split == p]) for p in parts}
    if args.json:
        print(json.dumps({p: rep.to_dict() for p, rep in reports.items()}))
        return 0
    print(out.getvalue().strip())
    for p, rep in reports.items():
        print()
        part = [r for r in rows if r.split == p]
        print(format_report(f"real {p} part ({', '.join(sorted({r.id.split(':')[0] for r in part}))})", rep))
        by_source = []
        for source in sorted({r.id.split(":")[0] for r in part}):
            sub = [r for r in part if r.id.startswith(source + ":")]
            ok = sum(tagger.classify(r.text).pillar == r.pillar for r in sub)
            by_source.append(f"{source} {ok / len(sub):.1%} ({len(sub)})")
        print("accuracy by source: " + ", ".join(by_source))
        by_round = []
        for rnd in sorted({rounds[r.id] for r in part}):
            sub = [r for r in part if rounds[r.id] == rnd]
            ok = sum(tagger.classify(r.text).pillar == r.pillar for r in sub)
            by_round.append(f"labelled in round {rnd}: {ok / len(sub):.1%} ({len(sub)})")
        print("accuracy by labelling round: " + ", ".join(by_round))
        if before is not None:
            b = evaluate(before, part)
            rec = " ".join(f"{k[:4]}={v['recall']:.2f}" for k, v in b.per_pillar.items())
            b_src = []
            for source in sorted({r.id.split(":")[0] for r in part}):
                sub = [r for r in part if r.id.startswith(source + ":")]
                b_src.append(f"{source} {sum(before.classify(r.text).pillar == r.pillar for r in sub) / len(sub):.1%}")
            b_rnd = []
            for rnd in sorted({rounds[r.id] for r in part}):
                sub = [r for r in part if rounds[r.id] == rnd]
                b_rnd.append(
                    f"round {rnd} {sum(before.classify(r.text).pillar == r.pillar for r in sub) / len(sub):.1%}"
                )
            print(
                f"before ({args.before}): accuracy {b.accuracy:.1%}, coverage {b.coverage:.1%}, recall {rec}; "
                f"by source {', '.join(b_src)}; by round {', '.join(b_rnd)}"
            )
    if "test" in parts:
        looks = count_looks(build.DATA / "test_looks.log")
        print(f"\n(test part printed {looks} time(s) so far: data/test_looks.log)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
