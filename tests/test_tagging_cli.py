"""The tagging commands (bot/cli_tagging.py), run through click's CliRunner."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from bot.cli_tagging import classify, rules

MIGRATION = Path(__file__).resolve().parents[1] / "storage" / "migrations" / "0001_core.sql"


def test_classify_prints_pillar_subtopic_and_matched_words() -> None:
    result = CliRunner().invoke(classify, ["Jalan di desa kami berlubang"])
    assert result.exit_code == 0, result.output
    assert "living" in result.output and "transport" in result.output
    assert "berlubang" in result.output


def test_classify_says_when_there_is_no_pillar() -> None:
    result = CliRunner().invoke(classify, ["halo selamat pagi"])
    assert result.exit_code == 0
    assert "tidak ada" in result.output


def test_classify_jsonl_writes_one_line_per_input_and_survives_bad_lines() -> None:
    """A bad line gets an error object on its own line; the other lines are still tagged."""
    stdin = "\n".join(
        [
            json.dumps({"id": 7, "text": "kampung kebanjiran"}),
            "{not json",
            json.dumps({"id": "b", "txt": "typo in field"}),
            json.dumps(["a", "list"]),
            "",
            json.dumps({"text": "halo"}),
        ]
    )
    result = CliRunner().invoke(classify, ["--jsonl"], input=stdin)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 5
    assert lines[0] == {
        "id": 7,
        "pillar": "environment",
        "subtopic": "flooding",
        "score": lines[0]["score"],
        "matched": ["kebanjiran"],
        "secondary": [],
    }
    assert "error" in lines[1] and lines[1]["line"] == 2
    assert lines[2]["id"] == "b" and "text" in lines[2]["error"]
    assert "error" in lines[3]
    assert lines[4] == {"id": None, "pillar": None, "subtopic": None, "score": 0.0, "matched": [], "secondary": []}


def test_classify_needs_text_or_jsonl() -> None:
    assert CliRunner().invoke(classify, []).exit_code == 2
    assert CliRunner().invoke(classify, ["x", "--jsonl"]).exit_code == 2


def test_classify_uses_rules_from_option_or_settings(tmp_path: Path) -> None:
    """--rules wins; without it, ctx.obj.rules_path from the main CLI's Settings is used."""
    own = tmp_path / "own.toml"
    own.write_text('[branding.events]\nlabel_id = "Acara"\nkeywords = ["pawai"]\n', encoding="utf-8")
    r1 = CliRunner().invoke(classify, ["--rules", str(own), "pawai meriah"])
    assert "branding" in r1.output
    settings = SimpleNamespace(rules_path=own, database_path=tmp_path / "x.db")
    r2 = CliRunner().invoke(classify, ["pawai meriah"], obj=settings)
    assert "branding" in r2.output
    r3 = CliRunner().invoke(classify, ["pawai meriah"])
    assert "branding" not in r3.output


def test_classify_with_an_invalid_rules_file_fails_kindly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[tourism.x]\nkeywords = ["a"]\n', encoding="utf-8")
    result = CliRunner().invoke(classify, ["--rules", str(bad), "a"])
    assert result.exit_code == 1
    assert "line 1" in result.output and "Traceback" not in result.output


def test_rules_check_passes_the_packaged_file() -> None:
    result = CliRunner().invoke(rules, ["check"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK")


def test_rules_check_reports_the_line_of_a_duplicate_term(tmp_path: Path) -> None:
    path = tmp_path / "dup.toml"
    path.write_text(
        '[living.transport]\nkeywords = ["jalan", "aspal"]\n\n[society.order]\nkeywords = [\n  "maling",\n  "aspal",\n]\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(rules, ["check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:7:" in result.output
    assert "aspal" in result.output


def test_rules_check_uses_settings_rules_path(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text("[living.empty]\n", encoding="utf-8")
    result = CliRunner().invoke(rules, ["check"], obj=SimpleNamespace(rules_path=path, database_path=None))
    assert result.exit_code == 1 and f"{path}:1:" in result.output


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "suarawarga.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATION.read_text(encoding="utf-8"))
    now = "2026-11-28T10:00:00.000000+00:00"

    def add(sid: int, text: str, pillar: str | None) -> None:
        conn.execute(
            "INSERT INTO submissions (id, code, kind, pillar, text, language, channel, created_at, updated_at,"
            " status_changed_at) VALUES (?, ?, 'report', ?, ?, 'id', 'terminal', ?, ?, ?)",
            (sid, f"C{sid:05d}", pillar, text, now, now, now),
        )

    def correct(sid: int, to: str, at: str) -> None:
        conn.execute(
            "INSERT INTO pillar_corrections (submission_id, from_pillar, to_pillar, actor_role, created_at)"
            " VALUES (?, NULL, ?, 'official', ?)",
            (sid, to, at),
        )

    add(1, "anak main mercun di gang", "society")
    add(2, "mercun meledak dekat rumah", "society")
    add(3, "jual mercun ke anak kecil", "society")
    add(4, "jalan berlubang", "living")
    add(5, "air pdam mati", "living")
    for sid in (1, 2):
        correct(sid, "society", now)
    correct(3, "economy", "2026-11-27T10:00:00.000000+00:00")  # older, superseded
    correct(3, "society", now)
    conn.commit()
    conn.close()
    return path


def test_rules_suggest_lists_terms_from_corrected_submissions(db: Path) -> None:
    result = CliRunner().invoke(rules, ["suggest", "--db", str(db), "--limit", "5"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[1].split()
    assert first[:3] == ["society", "mercun", "3"]  # the latest correction per submission counts


def test_rules_suggest_uses_settings_database_path(db: Path) -> None:
    result = CliRunner().invoke(rules, ["suggest"], obj=SimpleNamespace(rules_path=None, database_path=db))
    assert result.exit_code == 0 and "mercun" in result.output


def test_rules_suggest_without_database_is_a_usage_error(tmp_path: Path) -> None:
    assert CliRunner().invoke(rules, ["suggest"]).exit_code == 2
    assert CliRunner().invoke(rules, ["suggest", "--db", str(tmp_path / "none.db")]).exit_code == 1


def test_rules_fit_writes_fitted_weights_into_a_rules_file(tmp_path: Path) -> None:
    """Weights move towards the labels; the output is a valid rules file with the same terms."""
    rules_in = tmp_path / "in.toml"
    rules_in.write_text(
        '[society.order]\nkeywords = ["pengemis"]\n\n[branding.tourism]\nkeywords = ["telaga"]\nweights = { telaga = 0.5 }\n',
        encoding="utf-8",
    )
    labelled = tmp_path / "l.jsonl"
    rows = [
        {"id": f"r{i}", "text": "pengemis di telaga", "pillar": "branding", "kind": "report", "split": "dev"}
        for i in range(3)
    ]
    labelled.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.toml"
    result = CliRunner().invoke(rules, ["fit", str(labelled), "--rules", str(rules_in), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "accuracy 0.0% -> 100.0%" in result.output
    check = CliRunner().invoke(rules, ["check", str(out)])
    assert check.exit_code == 0, check.output
    from handlers.tagging import Tagger

    assert Tagger.from_path(out).classify("pengemis di telaga").pillar == "branding"
    assert Tagger.from_path(out).classify("pengemis di pasar").pillar == "society"
    assert '["pengemis"]' in out.read_text(encoding="utf-8")


def test_rules_eval_help_lists_its_options():
    """`rules eval --help` shows the evaluation's own options, not an empty click page."""
    result = CliRunner().invoke(rules, ["eval", "--help"])
    assert result.exit_code == 0
    for option in ("--data", "--rules", "--split", "--errors", "--json"):
        assert option in result.output
