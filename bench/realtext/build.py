"""Rebuild the real-text development set from fetched snapshots of public repositories.

    .venv/bin/python bench/realtext/build.py --mirror /work/.mirror

The texts themselves state no licence, so none of them is in this repository: this script
reads them from the fetched snapshots (bare git directories, as the search tool's `fetch`
leaves them under DIR/<owner>+<name>/repo) and writes them under bench/realtext/data/
(git-ignored). What is committed is this script, the topic-to-pillar map (topic_map.toml)
and our own labels keyed by row id (labels.csv).

Reserved rows are dropped *before anything else is kept*: every Surabaya row whose `id` is in
../shared/tagging/reserved-ids.txt and every text (any source) whose key is in
../shared/tagging/reserved-text-keys.txt, key = first 16 hex digits of sha256 of
re.sub(r'[\\W_]+', '', text.lower()) in UTF-8. They are kept for a measurement from outside.

Written:
  data/surabaya.jsonl   id, text, topik, instansi         (every kept complaint)
  data/reviews.jsonl    id, text, site, stars             (Google-Maps reviews, religious sites)
  data/sirah.jsonl      id, text, site                    (Google-Maps reviews of a tourist spring)
  data/real.jsonl       id, text, pillar, kind, split, round (the labelled rows; the format of
                        tests/data/eval_messages.jsonl, so handlers.tagging_eval reads it)
The split is fixed once: test when sha256("split:" + id) mod 10 < 3 (30%), else dev.
Exit status 2 when a snapshot is missing, with a message saying how to fetch it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
LABELS = HERE / "labels.csv"
SHARED = Path("/work/shared/tagging")

SOURCES = {
    # source name -> (owner+name folder under --mirror, path inside the repository)
    "surabaya": ("jaal047+Project_Capstone_LaskarAI_KeluhCerdas-", "Dataset/Dataset_Anotasi.xlsx"),
    "reviews": ("R-Pandu-M+analisis-sentimen-ulasan-dengan-algoritma-SVM-kernel-RBF", "mydatabase.sql"),
    # Google-Maps reviews of a natural-spring tourist site in Malang regency (round 2)
    "sirah": ("davinaaulia14+sentiment-analysis-sumber-sira", "data/hasil_ubah_tanggal.csv"),
}
FETCH_HINT = {
    "surabaya": "github:jaal047/Project_Capstone_LaskarAI_KeluhCerdas-",
    "reviews": "github:R-Pandu-M/analisis-sentimen-ulasan-dengan-algoritma-SVM-kernel-RBF",
    "sirah": "github:davinaaulia14/sentiment-analysis-sumber-sira",
}
_KEY_RE = re.compile(r"[\W_]+")


def text_key(text: str) -> str:
    return hashlib.sha256(_KEY_RE.sub("", text.lower()).encode("utf-8")).hexdigest()[:16]


def split_of(row_id: str) -> str:
    return "test" if int(hashlib.sha256(f"split:{row_id}".encode()).hexdigest(), 16) % 10 < 3 else "dev"


def _read_list(path: Path) -> set[str]:
    if not path.exists():
        sys.exit(f"build.py: {path} is missing; it lists the reserved rows that must be dropped")
    return {ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")}


class MissingSnapshot(Exception):
    pass


def _git_show(mirror: Path, source: str) -> bytes:
    folder, path = SOURCES[source]
    git_dir = mirror / folder / "repo"
    if not git_dir.is_dir():
        git_dir = mirror / folder
    if not (git_dir / "HEAD").exists():
        raise MissingSnapshot(
            f"snapshot of {source} missing: no git directory at {mirror / folder}/repo "
            f"(bring it with the fetch tool: {FETCH_HINT[source]})"
        )
    out = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{path}"], capture_output=True)
    if out.returncode != 0:
        raise MissingSnapshot(f"snapshot of {source} has no {path}: {out.stderr.decode(errors='replace').strip()}")
    return out.stdout


def _clean(text: object) -> str:
    return re.sub(r"\s+", " ", str(text or "")).strip()


def read_surabaya(blob: bytes, ids: set[str], keys: set[str]) -> tuple[list[dict], int]:
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(blob), read_only=True)
    ws = wb.worksheets[0]
    rows = ws.iter_rows(values_only=True)
    header = [str(h) for h in next(rows)]
    col = {h: i for i, h in enumerate(header)}
    kept, dropped = [], 0
    for r in rows:
        row_id = str(r[col["id"]]).strip()
        text = str(r[col["keluhan"]] or "")
        # the filter comes first: a reserved row is never kept, printed or looked at
        if row_id in ids or text_key(text) in keys:
            dropped += 1
            continue
        text = _clean(text)
        if not text:
            continue
        kept.append(
            {"id": row_id, "text": text, "topik": _clean(r[col["topik"]]), "instansi": _clean(r[col["instansi"]])}
        )
    return kept, dropped


def read_reviews(blob: bytes, keys: set[str]) -> tuple[list[dict], int]:
    db = sqlite3.connect(":memory:")
    db.executescript(blob.decode("utf-8"))
    tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    kept, dropped = [], 0
    for t in tables:
        cols = [c[1] for c in db.execute(f'PRAGMA table_info("{t}")')]
        stars = next((c for c in cols if "star" in c.lower()), None)
        for rowid, review, star in db.execute(f'SELECT rowid, "Review", "{stars}" FROM "{t}" ORDER BY rowid'):
            text = str(review or "")
            if text_key(text) in keys:
                dropped += 1
                continue
            text = _clean(text)
            if text:
                kept.append({"id": f"{t}:{rowid}", "text": text, "site": t, "stars": star})
    return kept, dropped


def read_sirah(blob: bytes, keys: set[str]) -> tuple[list[dict], int]:
    """Reviews of Sumber Sirah (a spring-fed swimming site): id = the record's number in the CSV.
    Only the review text is kept (not the reviewer's name or the date)."""
    records = csv.reader(io.StringIO(blob.decode("utf-8")))
    next(records)  # header: review text, reviewer, relative date, month
    kept, dropped = [], 0
    for n, rec in enumerate(records, start=1):
        text = rec[0] if rec else ""
        if text_key(text) in keys:
            dropped += 1
            continue
        text = _clean(text)
        if text:
            kept.append({"id": str(n), "text": text, "site": "sumber_sirah"})
    return kept, dropped


def read_labels(path: Path = LABELS) -> dict[tuple[str, str], tuple[str, str]]:
    return {k: (v[0], v[1]) for k, v in read_label_rows(path).items()}


def read_label_rows(path: Path = LABELS) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(source, id) -> (pillar, kind, round): round 1 = the first 1,657 labels, 2 = added in round 2, 3 = added in round 3."""
    out = {}
    if path.exists():
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                out[(row["source"], row["id"])] = (row["pillar"], row["kind"], row.get("round") or "1")
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mirror", type=Path, default=Path("/work/.mirror"), help="folder holding the fetched snapshots")
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--reserved-ids", type=Path, default=SHARED / "reserved-ids.txt")
    ap.add_argument("--reserved-keys", type=Path, default=SHARED / "reserved-text-keys.txt")
    args = ap.parse_args(argv)

    ids, keys = _read_list(args.reserved_ids), _read_list(args.reserved_keys)
    args.out.mkdir(parents=True, exist_ok=True)
    texts: dict[tuple[str, str], str] = {}
    missing = []
    for source in SOURCES:
        try:
            blob = _git_show(args.mirror, source)
        except MissingSnapshot as exc:
            missing.append(str(exc))
            continue
        if source == "surabaya":
            rows, dropped = read_surabaya(blob, ids, keys)
        elif source == "reviews":
            rows, dropped = read_reviews(blob, keys)
        else:
            rows, dropped = read_sirah(blob, keys)
        write_jsonl(args.out / f"{source}.jsonl", rows)
        texts.update({(source, r["id"]): r["text"] for r in rows})
        print(f"{source}: kept {len(rows)} rows, dropped {dropped} reserved -> {args.out / (source + '.jsonl')}")
    for m in missing:
        print(f"build.py: {m}", file=sys.stderr)
    labels = read_label_rows()
    real = []
    for (source, row_id), (pillar, kind, rnd) in labels.items():
        text = texts.get((source, row_id))
        if text is None:
            continue  # its snapshot is missing (said above) or the row is reserved now
        rid = f"{source}:{row_id}"
        real.append(
            {"id": rid, "text": text, "pillar": pillar, "kind": kind, "split": split_of(rid), "round": int(rnd)}
        )
    real.sort(key=lambda r: r["id"])
    if real:
        write_jsonl(args.out / "real.jsonl", real)
        n_test = sum(r["split"] == "test" for r in real)
        print(f"labelled: {len(real)} rows ({len(real) - n_test} dev, {n_test} test) -> {args.out / 'real.jsonl'}")
    return 2 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
