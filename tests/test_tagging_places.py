"""Place awareness: a visitor's problem at a listed place is branding, elsewhere it is not.

The [places] section of the rules file lists the regency's tourist, heritage and iconic
places (names) and the words that make any spot a visitor's place (context). Beggars,
rubbish or parking *at* such a place go to branding (PILLARS.md tie-break 7); the same
complaint somewhere ordinary keeps its usual pillar. Checked through Tagger.classify,
with the packaged rules and with a small rules file of our own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from handlers.tagging import RulesError, Tagger, check_rules

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=[True, False], ids=["compiled", "python"])
def tagger(request: pytest.FixtureRequest) -> Tagger:
    return Tagger.from_path(None, compiled=request.param)


@pytest.mark.parametrize(
    ("at_place", "elsewhere", "usual"),
    [
        (
            "Banyak pengemis memaksa minta uang di Telaga Sarangan",
            "Banyak pengemis memaksa minta uang di perempatan pasar",
            "society",
        ),
        (
            "sampah berserakan di area Candi Sadon, pengunjung jijik",
            "sampah berserakan di gang rumah kami, baunya menyengat",
            "environment",
        ),
        (
            "juru parkir liar di Cemoro Sewu minta 20 ribu",
            "juru parkir liar di depan indomaret minta 20 ribu",
            "living",
        ),
        ("peziarah dipalak preman di makam sunan", "warga dipalak preman di pos ronda", "society"),
    ],
)
def test_a_visitor_problem_at_a_place_is_branding_and_elsewhere_not(
    tagger: Tagger, at_place: str, elsewhere: str, usual: str
) -> None:
    here = tagger.classify(at_place)
    assert here.pillar == "branding"
    assert here.subtopic == "places"
    assert tagger.classify(elsewhere).pillar == usual
    # the resident sees the place first, then the problem
    assert here.matched[0].lower() in at_place.lower()
    assert usual in here.secondary


def test_a_resident_problem_near_a_place_keeps_its_pillar(tagger: Tagger) -> None:
    """Flooding or a KTP is not about visitors, even next to the lake."""
    assert tagger.classify("rumah kami dekat Telaga Sarangan kebanjiran tiap hujan deras").pillar == "environment"
    assert tagger.classify("KTP saya hilang waktu ke Telaga Sarangan, mau urus yang baru").pillar == "governance"


def test_a_street_named_after_a_place_is_an_address(tagger: Tagger) -> None:
    result = tagger.classify("pengemis tiap pagi di Jl. Lawu depan toko")
    assert result.pillar == "society"
    assert "branding" not in result.secondary


def test_a_light_place_word_scores_but_does_not_move_a_complaint(tagger: Tagger) -> None:
    """The town square and the mountain's name in a village address only add their weight."""
    assert tagger.classify("pemuda mabuk tiap malam di alun-alun, warga resah").pillar == "society"
    assert tagger.classify("pemuda mabuk tiap malam di desa lereng Lawu").pillar == "society"


RULES = """
[places]
names = ["telaga biru"]
context = ["wisata"]
context_weight = 2
visitor_topics = ["society.order"]

[society.order]
keywords = ["pengemis", "copet"]
weights = { pengemis = 4 }

[environment.waste]
keywords = ["sampah"]
weights = { sampah = 3 }
"""


def test_visitor_topics_come_from_the_rules_file() -> None:
    t = Tagger.from_text(RULES)
    r = t.classify("pengemis di telaga biru")
    assert (r.pillar, r.subtopic, r.matched) == ("branding", "places", ("telaga biru", "pengemis"))
    assert r.score == 7.0 and r.secondary == ("society",)
    # rubbish is not a visitor topic in this file: the higher score decides
    assert t.classify("sampah di tempat wisata").pillar == "environment"
    assert t.classify("pengemis di pasar").pillar == "society"


def test_rules_check_reports_a_wrong_visitor_topic_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(RULES.replace('"society.order"', '"society.ordr"'), encoding="utf-8")
    problems = check_rules(path)
    assert [p.line for p in problems] == [6]
    assert "society.ordr" in problems[0].message
    with pytest.raises(RulesError):
        Tagger.from_path(path)


def test_eval_real_says_when_the_snapshot_is_missing(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "realtext" / "eval_real.py"), "--mirror", str(tmp_path), "--part", "dev"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "snapshot" in out.stderr and "missing" in out.stderr
    assert "github:jaal047/Project_Capstone_LaskarAI_KeluhCerdas-" in out.stderr
