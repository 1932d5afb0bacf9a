"""[[contexts]] rules: words met together shift a message's pillar, plainly and visibly.

What an official writing the rules relies on: a rule fires only when a word of every
``when`` group is in the message and no ``unless`` word is; ``add`` counts like one more
term (and its words are shown to the resident), ``scale`` lowers a sub-topic; mistakes in a
rule are reported with their line. The compiled core and the Python reference agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.tagging import RulesError, Tagger, check_rules

RULES = """
[normalize]
jln = "jalan"

[environment.flooding]
keywords = ["banjir", "genangan", "kali"]
exclude = ["dua kali"]

[environment.green-space]
keywords = ["pohon"]
phrases = ["penebangan pohon"]

[living.transport]
keywords = ["jalan"]
phrases = ["jalan rusak", "jalan raya"]

[living.utilities]
keywords = ["pju", "kabel"]
weights = { "pju" = 2.0 }

[economy.welfare]
keywords = ["bantuan", "mbr"]

[society.education]
keywords = ["sekolah", "ppdb"]
phrases = ["anak sekolah"]

[[contexts]]
note = "a road damaged by water is about the road (PILLARS.md tie-break 1)"
when = [["jalan"], ["rusak", "berlubang"]]
add = { "living.transport" = 2 }
scale = { "environment.flooding" = 0.5 }

[[contexts]]
note = "cables and lamps are why a tree is cut, not the topic"
when = ["pohon"]
scale = { "living.utilities" = 0.4 }

[[contexts]]
when = [["bantuan"], ["anak", "sekolah"]]
unless = ["ppdb"]
add = { "economy.welfare" = 2.5 }

[[contexts]]
when = ["kali"]
scale = { "living.utilities" = 0.9, "society.education" = 0.8 }
"""

WORDS = [
    "jalan",
    "Jln.",
    "rusak",
    "kerusakan",
    "berlubang",
    "banjir",
    "genangan",
    "pohon",
    "penebangan",
    "pju",
    "kabel",
    "bantuan",
    "mbr",
    "anak",
    "sekolah",
    "ppdb",
    "raya",
    "dua",
    "kali",
    "di",
    "yang",
    "😡",
    "Café",
]

FAST = Tagger.from_text(RULES)
REFERENCE = Tagger.from_text(RULES, compiled=False)


@pytest.mark.parametrize("tagger", [FAST, REFERENCE], ids=["compiled", "python"])
def test_words_met_together_shift_the_pillar(tagger: Tagger) -> None:
    # flooding and the road both scored; the damaged road decides (tie-break 1)
    r = tagger.classify("sering banjir, jalan sudah rusak semua")
    assert (r.pillar, r.subtopic, r.secondary) == ("living", "transport", ("environment",))
    assert r.matched == ("jalan", "rusak")  # the rule's words are shown with the road's
    assert r.score == 3.0
    # a flooded street without damage keeps the usual weights
    assert tagger.classify("banjir di jalan").score == 1.0
    # affixed forms count: "kerusakan" is "rusak"
    assert tagger.classify("banjir, kerusakan jalan").pillar == "living"


@pytest.mark.parametrize("tagger", [FAST, REFERENCE], ids=["compiled", "python"])
def test_every_group_is_needed_and_unless_stops_a_rule(tagger: Tagger) -> None:
    assert tagger.classify("bantuan untuk anak sekolah").pillar == "economy"
    assert tagger.classify("sekolah bantuan").pillar == "economy"
    # only one group: no shift
    assert tagger.classify("anak sekolah").pillar == "society"
    assert tagger.classify("bantuan").pillar == "economy"
    # the unless word stops it
    r = tagger.classify("bantuan ppdb sekolah")
    assert (r.pillar, r.secondary) == ("society", ("economy",))


@pytest.mark.parametrize("tagger", [FAST, REFERENCE], ids=["compiled", "python"])
def test_scale_lowers_a_subtopic_and_the_lowest_factor_wins(tagger: Tagger) -> None:
    # without the tree, lamps and cables outweigh it
    assert tagger.classify("pju dan kabel").score == 3.0
    r = tagger.classify("penebangan pohon ganggu pju dan kabel")
    assert (r.pillar, r.matched, r.secondary) == ("environment", ("penebangan pohon",), ("living",))
    # pju 2 + kabel 1 = 3, times the lower of 0.4 (pohon) and 0.9 (kali): 1.2 < pohon 1.5
    r = tagger.classify("pohon di kali, pju kabel")
    assert (r.pillar, r.score) == ("environment", 2.0)


@pytest.mark.parametrize("tagger", [FAST, REFERENCE], ids=["compiled", "python"])
def test_a_context_word_inside_an_exclusion_does_not_count(tagger: Tagger) -> None:
    # "dua kali" is not the river: the rule on "kali" does not lower the lamps
    assert tagger.classify("pju mati dua kali").score == 2.0
    assert tagger.classify("pju dekat kali").score == 1.8


def test_rule_mistakes_are_reported_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        "[living.transport]\n"
        'keywords = ["jalan"]\n'
        "\n"
        "[[contexts]]\n"
        'when = ["jalan", "rusak parah"]\n'
        'add = { "living.nothing" = 2 }\n'
        "\n"
        "[[contexts]]\n"
        'when = ["jalan"]\n'
        'scale = { "living.transport" = 1.5 }\n'
        "colour = 1\n",
        encoding="utf-8",
    )
    problems = [str(p) for p in check_rules(path)]
    assert any(p.startswith("line 5:") and "'rusak parah'" in p for p in problems)
    assert any(p.startswith("line 6:") and "'living.nothing'" in p for p in problems)
    assert any(p.startswith("line 10:") and "below 1" in p for p in problems)
    assert any(p.startswith("line 11:") and "'colour'" in p for p in problems)
    with pytest.raises(RulesError):
        Tagger.from_path(path)


def test_packaged_rules_use_contexts_and_pass_check() -> None:
    assert check_rules(None) == []
    assert Tagger.from_path(None)._context_rules


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=30))
def test_compiled_core_and_reference_agree(words: list[str]) -> None:
    text = " ".join(words)
    assert FAST.classify(text) == REFERENCE.classify(text)
