"""Pillar tagging: which chapter of the smart-city masterplan should answer a message.

Pure: ``Tagger.classify(text) -> TagResult`` depends only on the text and the rules file
(handlers/rules/pillars.toml, or a regency's own file through RULES_PATH). The rules are
data an official can edit; this module only knows how to read and apply them.

How a message is tagged
-----------------------
1. Tokens: the text is lower-cased and split into letter/digit runs ("jl." -> "jl"). ASCII
   text (nearly all messages) does this with one bytes.translate + split, in C; other text
   uses the regex. Both give the same tokens (a test checks it).
2. Canonical form of each token (cached per token, so a message costs dict look-ups):
   everyday spellings from ``[normalize]`` ("jln" -> "jalan", "uwuh" -> "sampah"), repeated
   letters squeezed ("gelappp"), "beda2" -> "beda", then affix stripping *guided by the rule
   vocabulary*: "kebanjiran" -> "banjir", "perizinan" -> "izin", "dalane" -> "dalan",
   "flooding" -> "flood". A token is only stripped when the result is a word of the rules,
   so "jalan" never becomes "jal" and unknown words are left alone. Stopwords are never
   stripped, which is how generic forms are kept away from a root ("berjalan" is not the
   road "jalan", "pembayaran" is not the wage "bayaran").
3. One Aho-Corasick pass (pyahocorasick, in C) over " tok tok tok " finds every keyword,
   phrase and exclusion at token boundaries, whatever the number of rules.
4. A match inside a longer match is dropped ("sampah" inside "bank sampah", "polisi" inside
   "polisi tidur", "kali" inside the exclusion "dua kali"); an exclusion also cancels its own
   sub-topic's terms on its own span. Both are worked out per key when the rules load, so a
   message only looks up a precomputed list of (offset, term) pairs to hide.
5. Each distinct term adds its weight to its sub-topic and pillar. The weights of a key are
   packed in one integer per key (a field per pillar and per sub-topic, in thousandths), so
   the scores of a message are a single integer sum: exact, and independent of order.

Places. The ``[places]`` table lists the regency's tourist, heritage and iconic places
and generic visitor-place words; they score for branding (sub-topic "places"). When the
winning sub-topic is one of its ``visitor_topics`` (public order, rubbish, pollution,
transport) and a place word weighing >= ``switch_weight`` is in the message, the message
goes to branding: beggars or touts *at* Telaga Sarangan are about the place and its
visitors (PILLARS.md tie-break 7), the same complaint at a crossroads is not. This step
runs after either path (compiled or Python), so both give the same result. On real
Surabaya complaints and shrine reviews (bench/realtext, ``make eval-real``) it lifted
branding recall on the development part from 0.42 to 0.70 before any vocabulary change.

Tie-break (documented, fixed, independent of file and dictionary order): highest pillar
score; then the pillar whose single strongest term weighs more; then PILLARS order. Within
the pillar: highest sub-topic score, then strongest term, then sub-topic key alphabetically.

Stemmer decision (measured with ``python -m handlers.tagging_eval --compare-stemmers`` on
tests/data/eval_messages.jsonl, 602 messages, same rules file, one core of the dev VM):
    stemmer    accuracy  coverage  stem cost, first sight of a word   load
    affix       97.2%     99.7%      ~10 us/word                    0.05 s
    sastrawi    97.0%     99.3%     ~160 us/word (uncached)          0.35 s
    none        97.0%     99.3%          -                          0.05 s
With a warm token cache all three tag at the same speed. The vocabulary-guided affix rules
are kept: at least as accurate, 16x cheaper per new word, and they handle what Sastrawi
cannot: Javanese suffixes ("dalane" -> jalan, "banyune" -> air, "pelayanane"), English
endings, and abbreviations/normalisation before stemming. Sastrawi also over-stems
("diperbaiki" -> "baik"). It is a dev-only dependency; the
``stemmer="sastrawi"`` option stays for re-measuring after large rule changes.

Speed. The issue asks for 50,000 messages/s on one core. The Python path below, after
several rounds (C-level set and sum operations, ~600 bytecodes a message), reached
27-32k msgs/s: tokens, canonical forms and the Aho-Corasick pass are ~7 us in C, the rest
was Python scoring and recovering the resident's words. So Tagger.classify now runs in a
compiled core (handlers/_tagcore.c, built at install, optional): the same steps stated on
token spans (a word-level trie of the keys instead of Aho-Corasick over characters), in one
C call, 3-6 us a message. A word seen the first time is canonicalised once; its affix
search (~13 us in the Python generator) also runs in C (_tagcore.Affixes: the same
candidates in the same order, looked up without allocating), ~1 us. The Python path stays
as the reference both are tested against (tests/test_tagging_core.py: identical results
on the eval set, random word salad, overlap/tie rules and generated affixed words), and
as the path for text whose letters are not all ASCII and for machines without a compiler.
Figures: bench/bench_tagging.py, bench/RESULTS.md.
The stemmer table above was measured before the vocabulary was broadened. Again on
2026-11-28 with 1,616 messages (blind batches included) and the broadened rules:
    stemmer    accuracy  holdout splits  coverage  load
    affix       99.0%       99.0%         99.9%    0.15 s
    sastrawi    98.8%       98.7%         99.8%    0.65 s
    none        98.3%       98.2%         99.8%    0.17 s
(in-sample for all three, since the rules were tuned with the affix rules on).
"""

from __future__ import annotations

import functools
import math
import operator
import os
import re
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import reduce
from importlib import resources
from itertools import compress, filterfalse
from pathlib import Path
from types import NotImplementedType
from typing import Any, Protocol

import ahocorasick

from handlers.domain import PILLARS

try:  # the compiled core (handlers/_tagcore.c), built at install when a C compiler is there
    import handlers._tagcore as _tagcore
except ImportError:  # pragma: no cover - a machine without a compiler: the Python path
    _tagcore = None

#: True when Tagger.classify runs in the compiled core (bench and tests report it).
COMPILED = _tagcore is not None


class _CompiledAffixes(Protocol):
    """_tagcore.Affixes (a C extension, no stub): _affix_candidates' search in C."""

    def first(self, word: str, /) -> str | NotImplementedType | None:
        """The accepted root of the first candidate, None, or NotImplemented (not ASCII, too long)."""


class _CompiledCore(Protocol):
    """_tagcore.Core (a C extension, no stub): Tagger._classify_py's keyword scores in C."""

    def classify(self, text: str, /) -> Any:
        """TagResult's fields as a tuple, None (no pillar), NotImplemented (not ASCII: the Python
        path), or a list of the tokens it has not seen (learn them, then ask again). Any: the
        caller tells them apart by class in the hot loop, which mypy cannot narrow."""


__all__ = [
    "STEMMERS",
    "RuleProblem",
    "RulesError",
    "Suggestion",
    "TagResult",
    "Tagger",
    "check_rules",
    "key_terms",
    "suggest_keywords",
]

# Letter/digit runs in any script. Lower-casing first keeps it to one regex call.
_TOKEN_RE = re.compile(r"[^\W_]+")
# bytes.translate table for ASCII text: letters lower-cased, digits kept, everything else a
# space, so .split() gives exactly _TOKEN_RE.findall(text.lower()), at the same offsets.
_ASCII_WORDS = bytes(ord(chr(i).lower()) if chr(i).isalnum() else 32 for i in range(128)) + bytes(range(128, 256))
_REPEATS_RE = re.compile(r"(.)\1{2,}")
_PILLAR_INDEX = {p: i for i, p in enumerate(PILLARS)}
_N = len(PILLARS)
# Pillar scores (weights in thousandths) are summed packed in one integer, _BITS per pillar.
_BITS = 40
_MAX = (1 << _BITS) - 1
_PILLAR_MASK = (1 << _N) - 1
# the pillar fields of a packed score
_PILLAR_FIELDS = (1 << (_BITS * _N)) - 1
# mask of pillars -> their indices, in PILLARS order
_PILLAR_BITS = tuple(tuple(i for i in range(_N) if m >> i & 1) for m in range(1 << _N))
_RESERVED_TABLES = ("meta", "normalize", "stopwords", "places", "contexts")
_CONTEXT_KEYS = ("note", "when", "unless", "add", "scale")
# [[contexts]]: every word group (``when`` groups and ``unless``) is one bit of a 64-bit mask.
_MAX_CUE_GROUPS = 64
_PLACES_KEYS = (
    "label_id",
    "label_en",
    "names",
    "context",
    "weight",
    "context_weight",
    "weights",
    "visitor_topics",
    "switch_weight",
    "exclude",
)
#: The branding sub-topic the [places] section becomes.
PLACES_SUBTOPIC = "places"
_SUBTOPIC_KEYS = ("label_id", "label_en", "keywords", "phrases", "weights", "exclude")
_DEFAULT_WEIGHT = {"keywords": 1.0, "phrases": 1.5}
# A cache of canonical tokens per Tagger; cleared when it grows past this (long-tail words).
_CACHE_LIMIT = 200_000

STEMMERS = ("affix", "sastrawi", "none")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class TagResult:
    pillar: str | None  # one of PILLARS or None
    subtopic: str | None  # key within the pillar, e.g. "transport"
    score: float
    matched: tuple[str, ...]  # terms as written in the text that decided the pillar
    secondary: tuple[str, ...]  # other pillars that scored > 0, best first

    def to_dict(self) -> dict[str, Any]:
        return {
            "pillar": self.pillar,
            "subtopic": self.subtopic,
            "score": self.score,
            "matched": list(self.matched),
            "secondary": list(self.secondary),
        }


NO_PILLAR = TagResult(None, None, 0.0, (), ())


def _result_maker() -> Callable[[str, str, float, tuple[str, ...], tuple[str, ...]], TagResult]:
    # TagResult(...) of a frozen dataclass goes through object.__setattr__ per field; the
    # hot path sets the slots directly (same object, same fields, ~2x cheaper).
    new = TagResult.__new__
    sp, ss, sc, sm, se = (
        TagResult.__dict__[f].__set__ for f in ("pillar", "subtopic", "score", "matched", "secondary")
    )

    def make(
        pillar: str, subtopic: str, score: float, matched: tuple[str, ...], secondary: tuple[str, ...]
    ) -> TagResult:
        r = new(TagResult)
        sp(r, pillar)
        ss(r, subtopic)
        sc(r, score)
        sm(r, matched)
        se(r, secondary)
        return r

    return make


_new_result = _result_maker()


@dataclass(frozen=True, slots=True)
class RuleProblem:
    line: int
    message: str
    # Fatal problems stop Tagger.from_path; the others (a term under two pillars with the
    # same weight) still load, decided by the fixed tie-break, but `rules check` fails.
    fatal: bool = True

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class RulesError(Exception):
    """The rules file cannot be used; the message lists every problem with its line."""

    def __init__(self, path: str, problems: list[RuleProblem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class Suggestion:
    pillar: str
    term: str
    count: int  # corrected submissions moved to `pillar` that contain the term
    score: float


# --------------------------------------------------------------------------- stemming


# particles and possessives (Indonesian), -e/-ne/-ane/-en (Javanese), English endings
_SUFFIXES = ("nya", "lah", "kah", "pun", "ku", "mu", "ne", "e", "s", "es", "ing", "ed", "ly", "ies")
# derivational suffixes, stripped after those
_SECOND_SUFFIXES = ("kan", "an", "i", "nya")


def _affix_candidates(word: str) -> Iterator[str]:
    """Possible roots of an Indonesian / Javanese / English word, least stripping first.

    Not a full stemmer: candidates are only accepted when they are words of the rules
    vocabulary, so over-generation is harmless and the rules stay readable roots.
    """
    suffix_forms = [word]
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            base = word[: -len(suf)]
            suffix_forms.append(base)
            if suf == "ies":
                suffix_forms.append(base + "y")
            if suf in ("ing", "ed") and len(base) > 3 and base[-1] == base[-2]:
                suffix_forms.append(base[:-1])  # "dropped" -> "drop"
            if suf in ("ing", "ed"):
                suffix_forms.append(base + "e")  # "closing" -> "close"
    more = []
    for form in suffix_forms:
        for suf in _SECOND_SUFFIXES:
            if form.endswith(suf) and len(form) - len(suf) >= 3:
                more.append(form[: -len(suf)])
    suffix_forms += more
    for form in suffix_forms:
        yield form
    for form in suffix_forms:
        yield from _strip_prefixes(form, 2)


# prefix -> what the root may start with after it (nasal assimilation: men+tulis -> menulis)
_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("meny", ("s",)),
    ("peny", ("s",)),
    ("meng", ("", "k")),
    ("peng", ("", "k")),
    ("mem", ("", "p")),
    ("pem", ("", "p")),
    ("men", ("", "t")),
    ("pen", ("", "t")),
    ("diper", ("",)),
    ("memper", ("",)),
    ("per", ("",)),
    ("ber", ("",)),
    ("ter", ("",)),
    ("me", ("",)),
    ("pe", ("",)),
    ("be", ("",)),
    ("di", ("",)),
    ("ke", ("",)),
    ("se", ("",)),
    ("ka", ("",)),
    # Javanese active-voice nasal: ngurus -> urus, nyapu -> sapu, mbuang -> buang
    ("ng", ("", "k")),
    ("ny", ("s", "c")),
    ("m", ("", "p")),
    ("n", ("t",)),
)


def _strip_prefixes(word: str, depth: int) -> Iterator[str]:
    if depth == 0:
        return
    for prefix, restores in _PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= 3:
            rest = word[len(prefix) :]
            for r in restores:
                yield r + rest
                yield from _strip_prefixes(r + rest, depth - 1)


class _SastrawiStem:
    """Sastrawi (dictionary-based Indonesian stemmer). Only for measuring the choice."""

    def __init__(self) -> None:
        from Sastrawi.Stemmer.StemmerFactory import StemmerFactory  # dev dependency

        self._stem = StemmerFactory().create_stemmer().stem

    def __call__(self, word: str) -> str:
        return self._stem(word) or word


# --------------------------------------------------------------------------- rules model


@dataclass(slots=True)
class _Term:
    pillar: str
    subtopic: str
    text: str  # as written in the rules file
    canon: str  # canonical token string, e.g. "jalan lubang"
    weight: float
    exclude: bool
    line: int


@dataclass(slots=True)
class _Subtopic:
    pillar: str
    key: str
    label_id: str
    label_en: str
    line: int
    terms: list[_Term] = field(default_factory=list)


@dataclass(slots=True)
class _Rules:
    normalize: dict[str, str]
    stopwords: frozenset[str]
    subtopics: list[_Subtopic]
    problems: list[RuleProblem]
    # [places]: sub-topics ("pillar", "key") whose problems, met at a listed place, are
    # about the place and its visitors (branding). Empty: no place switch.
    visitor_topics: frozenset[tuple[str, str]] = frozenset()
    # place terms weighing at least this make the switch; lighter ones only score
    switch_weight: float = 2.0
    # [[contexts]]: co-occurrence rules, in file order
    contexts: list[_Context] = field(default_factory=list)


@dataclass(slots=True)
class _Context:
    """One [[contexts]] rule: when a word of every ``when`` group is in the message and no
    ``unless`` word is, ``add`` adds weights to sub-topics and ``scale`` lowers sub-topics'
    scores (a factor < 1; of several rules that lower one sub-topic, the lowest factor)."""

    line: int
    when: list[list[str]]
    unless: list[str]
    add: list[tuple[str, str, float]]
    scale: list[tuple[str, str, float]]


class _LineIndex:
    """Line numbers of tables, keys and string values (tomllib gives none for values).

    Scans the text the way a person reads it: the current [table], the current key (also
    across multi-line arrays), and every quoted string or bare inline-table key on a line.
    """

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
    # [[contexts]]: the n-th table of an array is "contexts#n"
    _ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([^\[\]]+?)\s*\]\]\s*(?:#.*)?$")
    _KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)\s*=")
    _STRING = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'([^']*)'")
    _INLINE_KEY = re.compile(r"[{,]\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.tables: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.values: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        table, key, depth = "", "", 0
        arrays: Counter[str] = Counter()
        for n, raw in enumerate(text.splitlines(), 1):
            line = self._strip_comment(raw)
            if depth == 0:
                m = self._ARRAY_HEADER.match(line)
                if m:
                    name = m.group(1).strip().strip("\"'")
                    table = f"{name}#{arrays[name]}"
                    arrays[name] += 1
                    self.tables.setdefault(table, n)
                    continue
                m = self._HEADER.match(line)
                if m:
                    table = ".".join(p.strip().strip("\"'") for p in m.group(1).split("."))
                    self.tables.setdefault(table, n)
                    continue
                m = self._KEY.match(line)
                if m:
                    key = m.group(1).strip("\"'")
                    self.keys.setdefault((table, key), n)
                    line = line[m.end() :]
            for m in self._INLINE_KEY.finditer(line):
                self.values[(table, key, m.group(1).strip("\"'"))].append(n)
            for m in self._STRING.finditer(line):
                value = m.group(1) if m.group(1) is not None else m.group(2)
                self.values[(table, key, value)].append(n)
            depth += line.count("[") + line.count("{") - line.count("]") - line.count("}")
            depth = max(depth, 0)

    @classmethod
    def _strip_comment(cls, line: str) -> str:
        out, quote = [], ""
        for ch in line:
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                break
            out.append(ch)
        return "".join(out)

    def value_line(self, table: str, key: str, value: str, nth: int = 0) -> int:
        lines = self.values.get((table, key, value))
        if lines:
            return lines[min(nth, len(lines) - 1)]
        return self.keys.get((table, key), self.tables.get(table, 1))


_TOML_ERR_LINE = re.compile(r"line (\d+)")


_ESCAPES_RE = re.compile(r"\\[nrt]")


def _unescape(text: str) -> str:
    """Literal escape sequences ("\\n" as two characters) that exports of real complaints
    carry instead of line breaks: two spaces each, so "\\nMohon" is the word "mohon" (not
    "nmohon") and every other character keeps its offset for the matched words."""
    return _ESCAPES_RE.sub("  ", text)


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def _parse_rules(text: str) -> _Rules:
    """Read a rules file into a model plus the list of its problems (never raises)."""
    problems: list[RuleProblem] = []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_ERR_LINE.search(str(exc))
        return _Rules({}, frozenset(), [], [RuleProblem(int(m.group(1)) if m else 1, f"TOML syntax: {exc}")])
    lines = _LineIndex(text)

    normalize: dict[str, str] = {}
    raw_norm = data.get("normalize", {})
    if not isinstance(raw_norm, dict):
        problems.append(RuleProblem(lines.tables.get("normalize", 1), "[normalize] must be a table"))
        raw_norm = {}
    for src, dst in raw_norm.items():
        src_t, dst_t = _tokens(str(src)), _tokens(str(dst)) if isinstance(dst, str) else []
        if len(src_t) != 1 or len(dst_t) != 1:
            problems.append(
                RuleProblem(
                    lines.keys.get(("normalize", str(src)), lines.tables.get("normalize", 1)),
                    f"normalize: {src!r} = {dst!r} must map one word to one word",
                )
            )
            continue
        normalize[src_t[0]] = dst_t[0]

    stop_raw = data.get("stopwords", {}).get("words", []) if isinstance(data.get("stopwords"), dict) else []
    if not isinstance(stop_raw, list):
        problems.append(RuleProblem(lines.tables.get("stopwords", 1), "[stopwords] words must be a list"))
        stop_raw = []
    stopwords = frozenset(t for w in stop_raw if isinstance(w, str) for t in _tokens(w))

    subtopics: list[_Subtopic] = []
    for top, body in data.items():
        if top in _RESERVED_TABLES:
            continue
        if top not in _PILLAR_INDEX:
            problems.append(
                RuleProblem(
                    lines.tables.get(top) or _first_table_line(lines, top),
                    f"unknown pillar {top!r} (expected one of {', '.join(PILLARS)})",
                )
            )
            continue
        if not isinstance(body, dict) or not body:
            problems.append(RuleProblem(lines.tables.get(top, 1), f"pillar {top!r} has no sub-topics"))
            continue
        for key, sub in body.items():
            table = f"{top}.{key}"
            tline = lines.tables.get(table, lines.tables.get(top, 1))
            if not isinstance(sub, dict):
                problems.append(RuleProblem(tline, f"{table} must be a table of keywords and phrases"))
                continue
            for unknown in sorted(set(sub) - set(_SUBTOPIC_KEYS)):
                problems.append(
                    RuleProblem(lines.keys.get((table, unknown), tline), f"{table}: unknown setting {unknown!r}")
                )
            st = _Subtopic(top, key, str(sub.get("label_id", key)), str(sub.get("label_en", key)), tline)
            weights = sub.get("weights", {})
            if not isinstance(weights, dict):
                problems.append(
                    RuleProblem(lines.keys.get((table, "weights"), tline), f"{table}: weights must be a table")
                )
                weights = {}
            listed: set[str] = set()
            for kind in ("keywords", "phrases", "exclude"):
                values = sub.get(kind, [])
                if not isinstance(values, list):
                    problems.append(RuleProblem(lines.keys.get((table, kind), tline), f"{table}.{kind} must be a list"))
                    continue
                seen_here: Counter[str] = Counter()
                for value in values:
                    if not isinstance(value, str) or not _tokens(value):
                        problems.append(
                            RuleProblem(
                                lines.keys.get((table, kind), tline), f"{table}.{kind}: {value!r} is not a word"
                            )
                        )
                        continue
                    line = lines.value_line(table, kind, value, seen_here[value])
                    seen_here[value] += 1
                    w = 0.0 if kind == "exclude" else weights.get(value, _DEFAULT_WEIGHT[kind])
                    if kind != "exclude" and (not isinstance(w, (int, float)) or isinstance(w, bool) or not w > 0):
                        problems.append(
                            RuleProblem(
                                lines.value_line(table, "weights", value),
                                f"{table}: weight of {value!r} must be a number > 0",
                            )
                        )
                        w = _DEFAULT_WEIGHT.get(kind, 1.0)
                    listed.add(value)
                    st.terms.append(_Term(top, key, value, "", float(w), kind == "exclude", line))
            for wkey in weights:
                if wkey not in listed:
                    problems.append(
                        RuleProblem(
                            lines.value_line(table, "weights", wkey),
                            f"{table}: weight given for {wkey!r}, which is not among its keywords or phrases",
                        )
                    )
            if not any(not t.exclude for t in st.terms):
                problems.append(RuleProblem(tline, f"sub-topic {table} is empty (no keywords or phrases)"))
            subtopics.append(st)
    visitor: frozenset[tuple[str, str]] = frozenset()
    switch = 2.0
    if "places" in data:
        visitor = _parse_places(data["places"], lines, subtopics, problems)
        raw_switch = data["places"].get("switch_weight", 2.0) if isinstance(data["places"], dict) else 2.0
        if isinstance(raw_switch, (int, float)) and not isinstance(raw_switch, bool) and raw_switch > 0:
            switch = float(raw_switch)
        else:
            problems.append(
                RuleProblem(
                    lines.keys.get(("places", "switch_weight"), 1), "places: switch_weight must be a number > 0"
                )
            )
    contexts = _parse_contexts(data.get("contexts", []), lines, subtopics, problems)
    return _Rules(normalize, stopwords, subtopics, problems, visitor, switch, contexts)


def _parse_contexts(
    body: Any, lines: _LineIndex, subtopics: list[_Subtopic], problems: list[RuleProblem]
) -> list[_Context]:
    """[[contexts]]: plain co-occurrence rules an official can read.

    ``when`` is a list of words (one group: any of them) or a list of groups (a word of every
    group); ``unless`` lists words that stop the rule; ``add = { "pillar.sub-topic" = 2 }``
    adds a weight as one more term would; ``scale = { "pillar.sub-topic" = 0.5 }`` lowers a
    sub-topic's score (0 < factor < 1). A word counts when it is in the message as a word of
    its own or inside a longer term that scores (not inside an exclusion). A context word
    that is not a keyword or phrase of the rules must be a single word.
    """
    if not isinstance(body, list):
        problems.append(RuleProblem(lines.tables.get("contexts", 1), "contexts must be written [[contexts]]"))
        return []
    known = {(x.pillar, x.key) for x in subtopics}
    term_texts = {" ".join(_tokens(t.text)) for x in subtopics for t in x.terms if not t.exclude}
    out: list[_Context] = []
    groups = 0
    for n, raw in enumerate(body):
        table = f"contexts#{n}"
        tline = lines.tables.get(table, 1)
        context = _parse_context(raw, table, tline, lines, known, term_texts, problems)
        if context is None:
            continue
        groups += len(context.when) + bool(context.unless)
        if groups > _MAX_CUE_GROUPS:
            problems.append(
                RuleProblem(
                    tline, f"contexts (line {tline}): more than {_MAX_CUE_GROUPS} word groups in all [[contexts]]"
                )
            )
            break
        out.append(context)
    return out


def _parse_context(
    raw: Any,
    table: str,
    tline: int,
    lines: _LineIndex,
    known: set[tuple[str, str]],
    term_texts: set[str],
    problems: list[RuleProblem],
) -> _Context | None:
    """One [[contexts]] table, or None (its problems listed)."""
    where = f"contexts (line {tline})"
    if not isinstance(raw, dict):
        problems.append(RuleProblem(tline, f"{where}: each [[contexts]] must be a table"))
        return None
    for unknown in sorted(set(raw) - set(_CONTEXT_KEYS)):
        problems.append(RuleProblem(lines.keys.get((table, unknown), tline), f"{where}: unknown setting {unknown!r}"))
    bad = len(problems)

    def words(value: Any, what: str) -> list[str]:
        kline = lines.keys.get((table, what), tline)
        if not isinstance(value, list) or not value:
            problems.append(RuleProblem(kline, f"{where}: {what} must be a non-empty list of words"))
            return []
        got = []
        for w in value:
            toks = _tokens(w) if isinstance(w, str) else []
            if not toks:
                problems.append(RuleProblem(kline, f"{where}: {what}: {w!r} is not a word"))
            elif len(toks) > 1 and " ".join(toks) not in term_texts:
                problems.append(
                    RuleProblem(
                        lines.value_line(table, what, w),
                        f"{where}: {what}: {w!r} is not a keyword or phrase of the rules "
                        "(a context phrase must be one; a single word may be any word)",
                    )
                )
            else:
                got.append(w)
        return got

    def targets(what: str, low: float, high: float) -> list[tuple[str, str, float]]:
        value = raw.get(what, {})
        kline = lines.keys.get((table, what), tline)
        if not isinstance(value, dict):
            problems.append(RuleProblem(kline, f"{where}: {what} must be a table of pillar.sub-topic = number"))
            return []
        got = []
        for target, w in value.items():
            pillar, _, key = str(target).partition(".")
            if (pillar, key) not in known:
                problems.append(
                    RuleProblem(kline, f"{where}: {what}: {target!r} is not a sub-topic (write pillar.sub-topic)")
                )
            elif not isinstance(w, (int, float)) or isinstance(w, bool) or not low < w < high:
                problems.append(
                    RuleProblem(kline, f"{where}: {what}: {target!r} must be a number above {low:g} and below {high:g}")
                )
            else:
                got.append((pillar, key, float(w)))
        return got

    raw_when = raw.get("when")
    if isinstance(raw_when, list) and raw_when and all(isinstance(g, list) for g in raw_when):
        when = [words(g, "when") for g in raw_when]
    else:
        when = [words(raw_when, "when")]
    unless = words(raw["unless"], "unless") if "unless" in raw else []
    add = targets("add", 0, 1e6)
    scale = targets("scale", 0, 1)
    if "add" not in raw and "scale" not in raw:
        problems.append(RuleProblem(tline, f"{where}: says neither add nor scale"))
    if len(problems) > bad:
        return None
    return _Context(tline, when, unless, add, scale)


def _parse_places(
    body: Any, lines: _LineIndex, subtopics: list[_Subtopic], problems: list[RuleProblem]
) -> frozenset[tuple[str, str]]:
    """[places]: the regency's tourist, heritage and iconic places.

    ``names`` (a place's own name, weight ``weight``) and ``context`` (words that make any
    spot a visitor's place: "objek wisata", "peziarah"; weight ``context_weight``) count
    for branding like keywords, in the sub-topic branding.places. ``visitor_topics`` lists
    sub-topics ("society.public-order") whose problems, when the message also names a
    place, are about what visitors meet there: such a message goes to branding (PILLARS.md
    tie-break 7), and the same complaint without a place keeps its usual pillar. Only place
    terms weighing at least ``switch_weight`` (2) make that switch: a light one (the
    mountain's name in a village address, the town square) only adds its weight.
    """
    tline = lines.tables.get("places", 1)
    if not isinstance(body, dict):
        problems.append(RuleProblem(tline, "[places] must be a table"))
        return frozenset()
    for unknown in sorted(set(body) - set(_PLACES_KEYS)):
        problems.append(RuleProblem(lines.keys.get(("places", unknown), tline), f"places: unknown setting {unknown!r}"))
    weights = body.get("weights", {})
    if not isinstance(weights, dict):
        problems.append(RuleProblem(lines.keys.get(("places", "weights"), tline), "places: weights must be a table"))
        weights = {}
    st = _Subtopic(
        "branding",
        PLACES_SUBTOPIC,
        str(body.get("label_id", "Tempat wisata dan ikon daerah")),
        str(body.get("label_en", "Tourist and iconic places")),
        tline,
    )
    listed = set()
    for kind, default_key, default in (("names", "weight", 3.0), ("context", "context_weight", 1.5)):
        base = body.get(default_key, default)
        if not isinstance(base, (int, float)) or isinstance(base, bool) or not base > 0:
            problems.append(
                RuleProblem(
                    lines.keys.get(("places", default_key), tline), f"places: {default_key} must be a number > 0"
                )
            )
            base = default
        values = body.get(kind, [])
        if not isinstance(values, list):
            problems.append(RuleProblem(lines.keys.get(("places", kind), tline), f"places.{kind} must be a list"))
            continue
        seen: Counter[str] = Counter()
        for value in values:
            if not isinstance(value, str) or not _tokens(value):
                problems.append(
                    RuleProblem(lines.keys.get(("places", kind), tline), f"places.{kind}: {value!r} is not a word")
                )
                continue
            line = lines.value_line("places", kind, value, seen[value])
            seen[value] += 1
            w = weights.get(value, base)
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not w > 0:
                problems.append(
                    RuleProblem(
                        lines.value_line("places", "weights", value),
                        f"places: weight of {value!r} must be a number > 0",
                    )
                )
                w = base
            listed.add(value)
            st.terms.append(_Term("branding", PLACES_SUBTOPIC, value, "", float(w), False, line))
    excl = body.get("exclude", [])
    if not isinstance(excl, list):
        problems.append(RuleProblem(lines.keys.get(("places", "exclude"), tline), "places.exclude must be a list"))
        excl = []
    for value in excl:  # "jalan lawu": a street named after the place, not the place
        if not isinstance(value, str) or not _tokens(value):
            problems.append(
                RuleProblem(lines.keys.get(("places", "exclude"), tline), f"places.exclude: {value!r} is not a word")
            )
            continue
        st.terms.append(
            _Term("branding", PLACES_SUBTOPIC, value, "", 0.0, True, lines.value_line("places", "exclude", value))
        )
    for wkey in weights:
        if wkey not in listed:
            problems.append(
                RuleProblem(
                    lines.value_line("places", "weights", wkey),
                    f"places: weight given for {wkey!r}, which is not among its names or context",
                )
            )
    if not any(not t.exclude for t in st.terms):
        problems.append(RuleProblem(tline, "[places] lists no names or context words"))
        return frozenset()
    if any(x.pillar == "branding" and x.key == PLACES_SUBTOPIC for x in subtopics):
        problems.append(RuleProblem(tline, f"[places] and [branding.{PLACES_SUBTOPIC}] cannot both be given"))
        return frozenset()
    subtopics.append(st)
    known = {(x.pillar, x.key) for x in subtopics}
    visitor = set()
    raw = body.get("visitor_topics", [])
    if not isinstance(raw, list):
        problems.append(
            RuleProblem(lines.keys.get(("places", "visitor_topics"), tline), "places.visitor_topics must be a list")
        )
        raw = []
    for value in raw:
        pillar, _, key = str(value).partition(".")
        line = lines.value_line("places", "visitor_topics", str(value))
        if (pillar, key) not in known or pillar == "branding":
            problems.append(
                RuleProblem(
                    line,
                    f"places.visitor_topics: {value!r} is not a sub-topic of another pillar (write pillar.sub-topic)",
                )
            )
            continue
        visitor.add((pillar, key))
    return frozenset(visitor)


def _copy_subtopic(st: _Subtopic) -> _Subtopic:
    return _Subtopic(
        st.pillar,
        st.key,
        st.label_id,
        st.label_en,
        st.line,
        [_Term(t.pillar, t.subtopic, t.text, "", t.weight, t.exclude, t.line) for t in st.terms],
    )


def _first_table_line(lines: _LineIndex, top: str) -> int:
    found = [n for t, n in lines.tables.items() if t == top or t.startswith(top + ".")]
    return min(found) if found else 1


def _duplicate_problems(subtopics: list[_Subtopic]) -> list[RuleProblem]:
    """A term under two pillars with the same weight: the tagger cannot tell them apart."""
    first: dict[str, _Term] = {}
    problems = []
    terms = sorted((t for st in subtopics for t in st.terms if not t.exclude), key=lambda t: t.line)
    for term in terms:
        other = first.get(term.canon)
        if other is None:
            first[term.canon] = term
        elif other.pillar != term.pillar and other.weight == term.weight:
            problems.append(
                RuleProblem(
                    term.line,
                    f"{term.text!r} in {term.pillar}.{term.subtopic} is also in {other.pillar}.{other.subtopic} "
                    f"(line {other.line}) with the same weight {term.weight:g}: remove one or give them different weights",
                    fatal=False,
                )
            )
    return problems


def _read_rules_text(path: str | os.PathLike[str] | None) -> tuple[str, str]:
    if path is None:
        ref = resources.files("handlers").joinpath("rules/pillars.toml")
        return ref.read_text(encoding="utf-8"), "handlers/rules/pillars.toml"
    return Path(path).read_text(encoding="utf-8"), str(path)


# --------------------------------------------------------------------------- tagger


class Tagger:
    """Keyword rules compiled into one Aho-Corasick automaton. Thread-safe for reading."""

    def __init__(self, rules: _Rules, *, stemmer: str = "affix", compiled: bool = True) -> None:
        if stemmer not in STEMMERS:
            raise ValueError(f"stemmer must be one of {STEMMERS}")
        self._normalize = rules.normalize
        self.stopwords = rules.stopwords
        self._subtopics = {(st.pillar, st.key): st for st in rules.subtopics}
        self._build_place_tagger(rules, stemmer, compiled)
        self._build_vocabulary(rules, stemmer, compiled)
        keys, values = self._build_keys(rules)
        self._build_core(keys, values, compiled)

    def _build_place_tagger(self, rules: _Rules, stemmer: str, compiled: bool) -> None:
        # [places]: a small tagger of the place terms alone, asked only when a message's
        # winning sub-topic is a visitor topic and branding scored too (rare, ~1 in 50).
        self._visitor = rules.visitor_topics
        self._place_tagger: Tagger | None = None
        places = self._subtopics.get(("branding", PLACES_SUBTOPIC))
        if self._visitor and places is not None:
            strong = _copy_subtopic(places)
            strong.terms = [t for t in strong.terms if t.exclude or t.weight >= rules.switch_weight]
            if any(not t.exclude for t in strong.terms):
                self._place_tagger = Tagger(
                    _Rules(rules.normalize, rules.stopwords, [strong], []), stemmer=stemmer, compiled=compiled
                )

    def _build_vocabulary(self, rules: _Rules, stemmer: str, compiled: bool) -> None:
        """The rules' words, each term's canonical form, and the affix search for new words."""
        self._cache: dict[str, str] = {}
        self._sastrawi = _SastrawiStem() if stemmer == "sastrawi" else None
        self.stemmer = stemmer
        raw_vocab = {tok for st in rules.subtopics for t in st.terms for tok in _tokens(t.text)}
        raw_vocab |= {tok for c in rules.contexts for g in (*c.when, c.unless) for w in g for tok in _tokens(w)}
        raw_vocab = {self._normalize.get(t, t) for t in raw_vocab}
        if self._sastrawi is not None:
            raw_vocab |= {self._sastrawi(t) for t in raw_vocab}
        self._vocab = frozenset(raw_vocab)
        # The affix search of a word seen the first time, in C (same candidates, same
        # order): the strings a candidate may be, each with the rules word it stands for.
        self._affixes: _CompiledAffixes | None = None
        if compiled and _tagcore is not None and stemmer == "affix":
            norm = self._normalize
            accepted = {c: norm.get(c, c) for c in (*self._vocab, *norm) if norm.get(c, c) in self._vocab}
            self._affixes = _tagcore.Affixes(accepted, _PREFIXES, _SUFFIXES, _SECOND_SUFFIXES)
        for st in rules.subtopics:
            for t in st.terms:
                t.canon = " ".join(self.canonical(tok) for tok in _tokens(t.text))
        self.duplicate_problems = _duplicate_problems(rules.subtopics)
        self.terms = frozenset(t.canon for st in rules.subtopics for t in st.terms if not t.exclude)

    def _build_keys(self, rules: _Rules) -> tuple[list[str], dict[str, list[Any]]]:
        """Every canonical key with its packed weights, in the Aho-Corasick automaton the
        pure-Python path walks; returns the keys (by term id) and their values."""
        # Sub-topics are numbered in sorted order so nothing depends on file order.
        sub_keys = sorted(self._subtopics, key=lambda k: (_PILLAR_INDEX[k[0]], k[1]))
        self._sub_keys = sub_keys
        self._sub_pillar = tuple(_PILLAR_INDEX[k[0]] for k in sub_keys)
        sub_index = {k: i for i, k in enumerate(sub_keys)}
        # canonical term -> {(sub index, is exclusion): weight in thousandths}. Integer
        # weights make sums exact, so a tie is a tie whatever order terms are added in.
        entries: dict[str, dict[tuple[int, bool], int]] = defaultdict(dict)
        for st in rules.subtopics:
            for t in st.terms:
                k = (sub_index[(t.pillar, t.subtopic)], t.exclude)
                w = round(t.weight * 1000)
                if w >= entries[t.canon].get(k, 0):  # listed twice in one sub-topic: counts once
                    entries[t.canon][k] = w
        # [[contexts]]: each word group is a bit; a context word that is no term becomes a
        # key that scores nothing (one word: it hides nothing), so a message finds it too.
        cue_bits: dict[str, int] = defaultdict(int)
        contexts = []
        bit = 0
        for c in rules.contexts:
            need = forbid = 0
            for g in (*c.when, c.unless):
                if not g:
                    continue
                for word in g:
                    canon = " ".join(self.canonical(tok) for tok in _tokens(word))
                    cue_bits[canon] |= 1 << bit
                    entries.setdefault(canon, {})
                if g is c.unless:
                    forbid |= 1 << bit
                else:
                    need |= 1 << bit
                bit += 1
            add = tuple(sorted((_PILLAR_INDEX[p], sub_index[(p, k)], round(w * 1000)) for p, k, w in c.add))
            scale = tuple(sorted((_PILLAR_INDEX[p], sub_index[(p, k)], round(f * 1000)) for p, k, f in c.scale))
            contexts.append((need, forbid, add, scale))
        # One automaton value per canonical key (a _Key), holding everything the hot loop
        # needs, built from [tid, length, words, inner, packed, mask, terms]:
        #   0 term id, 1 key length, 2 words,
        #   3 the matches hidden inside it: ((end offset back from its own end, _Key), ...),
        #   4 its weight per pillar and per sub-topic, packed in one integer (_BITS bits
        #     a field: pillars first, then sub-topics), so a message's scores are one sum,
        #   5 bit mask of the pillars (bits 0-5) and sub-topics (bits 6-) it scores for,
        #   6 ((pillar, sub-topic, weight), ...).
        # An exclusion cancels its sub-topic's terms inside its span; inside a multi-word key
        # everything shorter is hidden anyway, so all that is left to cancel is the key's own
        # terms, decided here once rather than per message.
        keys = sorted(entries)
        values: dict[str, list[Any]] = {}
        for tid, canon in enumerate(keys):
            ents = entries[canon]
            excls = {sub for (sub, ex) in ents if ex}
            terms = tuple(
                sorted((self._sub_pillar[sub], sub, w) for (sub, ex), w in ents.items() if not ex and sub not in excls)
            )
            packed = mask = 0
            for p, sub, w in terms:
                # field p: the pillar's score; field _N + sub: the sub-topic's score
                packed += (w << (_BITS * p)) + (w << (_BITS * (_N + sub)))
                mask |= (1 << p) | (1 << (_N + sub))
            key = f" {canon} "
            values[key] = [tid, len(key), canon.count(" ") + 1, (), packed, mask, terms, cue_bits.get(canon, 0)]
        automaton = ahocorasick.Automaton()
        for key, value in values.items():
            automaton.add_word(key, value[0])
        if len(automaton):
            automaton.make_automaton()
            for key, value in values.items():
                if value[2] > 1:  # what a multi-word key hides is known in advance
                    last = len(key) - 1
                    value[3] = tuple(sorted((last - e, tid) for e, tid in automaton.iter(key) if tid != value[0]))
            if cue_bits:  # a context word inside a longer term that scores counts too
                by_tid = {value[0]: value for value in values.values()}
                for value in values.values():
                    if value[6]:
                        for _, tid in value[3]:
                            value[7] |= by_tid[tid][7]
            objs = {value[0]: _Key(*value) for value in values.values()}
            for obj in objs.values():
                obj.inner = tuple((r, objs[tid]) for r, tid in obj.inner)
            automaton = ahocorasick.Automaton()
            for key, value in values.items():
                automaton.add_word(key, objs[value[0]])
            automaton.make_automaton()
        self._key_canon = keys  # term id -> canonical term
        self._key_cues = [values[f" {canon} "][7] for canon in keys]
        self._context_rules = contexts
        # Python path: each rule as (need, forbid, a pseudo key holding its added terms or
        # None, the pillars it adds to as a mask, ((packed field, pillar field, factor), ...))
        self._contexts_py = []
        for need, forbid, add, scale in contexts:
            packed = mask = 0
            for p, sub, w in add:
                packed += (w << (_BITS * p)) + (w << (_BITS * (_N + sub)))
                mask |= (1 << p) | (1 << (_N + sub))
            pseudo = _Key(-1, 0, 0, (), packed, mask, add, 0) if add else None
            self._contexts_py.append(
                (need, forbid, pseudo, mask & _PILLAR_MASK, tuple((_N + sub, p, f) for p, sub, f in scale))
            )
        self._ready = len(automaton) > 0
        self._automaton = automaton
        self._iter = automaton.iter
        # bit mask of each pillar's sub-topics (in the packed layout above)
        self._pillar_subs = tuple(
            sum(1 << (_N + i) for i, sp in enumerate(self._sub_pillar) if sp == p) for p in range(_N)
        )
        # packed field indices of each pillar's sub-topics, in key order
        self._pillar_sub_fields = tuple(
            tuple(_N + i for i, sp in enumerate(self._sub_pillar) if sp == p) for p in range(_N)
        )
        self._cache_get = self._cache.__getitem__  # the cache dict is only ever cleared, never replaced

        return keys, values

    def _build_core(self, keys: list[str], values: dict[str, list[Any]], compiled: bool) -> None:
        # The compiled core walks a trie of the keys word by word. Its tokens are looked up
        # in self._ids (token -> id of its canonical word among the keys' words, -1 for any
        # other word), which this class fills the first time a token is seen.
        self._ids: dict[str, int] = {}
        self._core: _CompiledCore | None = None
        if compiled and _tagcore is not None and self._ready:
            words = sorted({w for canon in keys for w in canon.split()})
            self._word_id = {w: i for i, w in enumerate(words)}
            edges: dict[tuple[int, int], int] = {}
            key_at = [-1]
            for tid, canon in enumerate(keys):
                state = 0
                for word in canon.split():
                    nxt = edges.get((state, self._word_id[word]))
                    if nxt is None:
                        nxt = edges[(state, self._word_id[word])] = len(key_at)
                        key_at.append(-1)
                    state = nxt
                key_at[state] = tid
            self._core = _tagcore.Core(
                self._ids,
                len(words),
                [(a, w, b) for (a, w), b in edges.items()],
                key_at,
                [values[f" {canon} "][6] for canon in keys],
                PILLARS,
                tuple(k for _, k in self._sub_keys),
                self._key_cues,
                self._context_rules,
            )
            self._core_classify = self._core.classify

    # ---- construction

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str] | None = None, *, stemmer: str = "affix", compiled: bool = True
    ) -> Tagger:
        """Load a rules file; None means the packaged handlers/rules/pillars.toml."""
        text, name = _read_rules_text(path)
        return cls.from_text(text, name=name, stemmer=stemmer, compiled=compiled)

    @classmethod
    def from_text(cls, text: str, *, name: str = "<rules>", stemmer: str = "affix", compiled: bool = True) -> Tagger:
        """compiled=False keeps to the pure-Python path (the reference the core is tested against)."""
        rules = _parse_rules(text)
        fatal = [p for p in rules.problems if p.fatal]
        if fatal:
            raise RulesError(name, fatal)
        return cls(rules, stemmer=stemmer, compiled=compiled)

    @property
    def compiled(self) -> bool:
        """True when classify runs in the compiled core."""
        return self._core is not None

    # ---- text processing

    def canonical(self, token: str) -> str:
        """The form a (lower-case) token is matched under. Cached per token."""
        got = self._cache.get(token)
        if got is not None:
            return got
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        result = self._canonical(token)
        self._cache[token] = result
        return result

    def _canonical(self, token: str) -> str:
        norm, vocab = self._normalize, self._vocab
        t = norm.get(token, token)
        if t in vocab or t in self.stopwords:
            return t
        if t.isdigit():
            return "0"  # "2 kali", "50rb": numbers are all alike, except those in the rules
        if _REPEATS_RE.search(t):
            t = _REPEATS_RE.sub(r"\1", t)
            t = norm.get(t, t)
            if t in vocab:
                return t
        if len(t) > 3 and t[-1] == "2" and t[:-1].isalpha():  # "beda2" = "beda-beda"
            t = norm.get(t[:-1], t[:-1])
            if t in vocab or t in self.stopwords:  # "sampai2" is "sampai", not "sampah"
                return t
        if self._sastrawi is not None:
            s = self._sastrawi(t)
            return norm.get(s, s)
        if self.stemmer == "none":
            return t
        if self._affixes is not None:
            found = self._affixes.first(t)
            if found is not NotImplemented:  # NotImplemented: not ASCII, or very long
                return t if found is None else found
        for cand in _affix_candidates(t):
            cand = norm.get(cand, cand)
            if cand in vocab:
                return cand
        return t

    def forget_words(self) -> None:
        """Empty the per-token caches (for measuring first sight of every word)."""
        self._cache.clear()
        self._ids.clear()

    def key_terms(self, text: str) -> frozenset[str]:
        if "\\" in text:
            text = _unescape(text)
        out = set()
        for tok in _tokens(text):
            c = self.canonical(tok)
            if c not in self.stopwords and len(c) > 2 and not c.isdigit() and c != "0":
                out.add(c)
        return frozenset(out)

    # ---- classification

    def classify(self, text: str) -> TagResult:
        """Primary pillar, sub-topic, score, the words that decided it, other pillars."""
        if "\\" in text:
            text = _unescape(text)
        r = self._classify(text)
        if r.secondary and (r.pillar, r.subtopic) in self._visitor and "branding" in r.secondary:
            return self._at_place(text, r)
        return r

    def _at_place(self, text: str, r: TagResult) -> TagResult:
        """A visitor topic's problem (beggars, rubbish, parking...) at a listed place: branding.

        The place's words come first among the words shown, then the problem's."""
        assert r.pillar is not None  # classify asks only for a visitor topic's result
        p = self._place_tagger._classify(text) if self._place_tagger is not None else NO_PILLAR
        if p.pillar is None:
            return r
        matched = p.matched + tuple(m for m in r.matched if m not in p.matched)
        secondary = tuple(x for x in (r.pillar, *r.secondary) if x != "branding")
        return _new_result("branding", PLACES_SUBTOPIC, round(r.score + p.score, 3), matched, secondary)

    def _classify(self, text: str) -> TagResult:
        """The keyword scores alone (compiled core, else the Python reference)."""
        if self._core is not None:
            r = self._core_classify(text)
            while r.__class__ is list:  # words seen for the first time: learn, then again
                self._learn(r)
                r = self._core_classify(text)
            if r is None:
                return NO_PILLAR
            if r is not NotImplemented:  # NotImplemented: non-ASCII text, the Python path
                return _new_result(*r)
        return self._classify_py(text)

    def term_hits(self, text: str) -> list[tuple[str, tuple[tuple[str, str, float], ...]]]:
        """The distinct rule terms a message scores with, after nested matches are hidden:
        [(canonical term, ((pillar, sub-topic, weight), ...)), ...] in text order.

        What classify adds up (before the place switch); used to fit weights."""
        if not self._ready:
            return []
        if "\\" in text:
            text = _unescape(text)
        low = text.lower()
        toks = _TOKEN_RE.findall(low)
        if not toks:
            return []
        s = " " + " ".join([self.canonical(t) for t in toks]) + " "
        found = list(self._iter(s))
        if len(found) > 1:
            hidden = {(e - r, k) for e, v in found for r, k in v.inner}
            found = [f for f in found if f not in hidden]
        out = []
        for v in dict.fromkeys(map(_second, found)):
            if v.terms:
                out.append(
                    (
                        self._key_canon[v.tid],
                        tuple((PILLARS[p], self._sub_keys[sub][1], w / 1000) for p, sub, w in v.terms),
                    )
                )
        return out

    def _learn(self, tokens: list[str]) -> None:
        """Canonical form and word id of tokens the compiled core has not seen."""
        ids, cache = self._ids, self._cache
        if len(ids) + len(tokens) > _CACHE_LIMIT:
            ids.clear()
        if len(cache) + len(tokens) > _CACHE_LIMIT:
            cache.clear()
        word_id, canonical = self._word_id.get, self._canonical
        for tok in tokens:
            c = cache.get(tok)
            if c is None:
                c = cache[tok] = canonical(tok)
            ids[tok] = word_id(c, -1)

    def _classify_py(self, text: str) -> TagResult:
        """The reference implementation; classify gives the same result in C."""
        # 1. Tokens. ASCII text (nearly every message) is lower-cased and split in C by one
        #    bytes.translate; the result equals _TOKEN_RE.findall(text.lower()).
        ascii_text = text.isascii()
        if ascii_text:
            low = text.encode().translate(_ASCII_WORDS).decode()
            toks = low.split()
        else:
            low = text.lower()
            toks = _TOKEN_RE.findall(low)
        if not toks or not self._ready:
            return NO_PILLAR
        # 2. Canonical string; with every token seen before it is built in C.
        try:
            s = " " + " ".join(map(self._cache_get, toks)) + " "
        except KeyError:
            s = " " + " ".join([self.canonical(t) for t in toks]) + " "
        found = list(self._iter(s))
        if not found:
            return NO_PILLAR

        # 3. Multi-word matches hide the matches inside them ("sampah" in "bank sampah",
        #    "kali" in the exclusion "dua kali"); which ones is precomputed per key.
        #    What is left is in text order: matches come by end offset, and of two matches
        #    that are not nested the one ending first also starts first.
        #    A hidden match is the very (end, key) pair of found, key objects hash by
        #    identity, so the filter runs in C.
        if len(found) == 1:
            v = found[0][1]
            total = v.packed
            mask = v.mask
            distinct: Iterable[_Key] = (v,)
        else:
            inners = list(map(_inner_of, map(_second, found)))
            if any(inners):
                hidden = {(e - r, k) for e, v in compress(found, inners) for r, k in v.inner}
                found = list(filterfalse(hidden.__contains__, found))
            # 4. Pillar scores: each distinct term once (a term repeated in the text counts
            #    once; one _Key object per key). One integer sum gives every pillar's and
            #    sub-topic's score; integer weights (thousandths) keep ties exact whatever
            #    the order of addition.
            distinct = dict.fromkeys(map(_second, found))
            total = sum(map(_packed_of, distinct))
            mask = reduce(or_, map(_mask_of, distinct))
        added: list[tuple[int, int]] = []  # rules that added weight: (word groups, pillars)
        if self._contexts_py:
            cues = reduce(or_, map(_cues_of, distinct))
            if cues:
                distinct, total, mask, added = self._apply_contexts(cues, distinct, total, mask)
        pillars = mask & _PILLAR_MASK
        if not pillars:
            return NO_PILLAR
        if not pillars & (pillars - 1):  # one pillar scored
            win = pillars.bit_length() - 1
            secondary: tuple[str, ...] = ()
        else:
            ptotal = total & _PILLAR_FIELDS
            # (-score, pillar index), or (-score, -strongest term, pillar index) on a tie
            ranked: list[tuple[int, ...]] = [(-((ptotal >> (_BITS * i)) & _MAX), i) for i in _PILLAR_BITS[pillars]]
            ranked.sort()
            if len(set(map(_first, ranked))) < len(ranked):  # equal scores: strongest term decides
                ranked = sorted([(r[0], -_top(distinct, r[1], 0), r[1]) for r in ranked])
            win = ranked[0][-1]
            secondary = tuple(map(PILLARS.__getitem__, map(_last, ranked[1:])))

        # 5. Sub-topic within the winning pillar: score, then strongest term, then key
        #    (sub-topic indices are in key order within a pillar).
        subs = mask & self._pillar_subs[win]
        if not subs & (subs - 1):
            best_sub = subs.bit_length() - 1 - _N
        else:
            scored = [(-((total >> (_BITS * i)) & _MAX), i) for i in self._pillar_sub_fields[win] if subs >> i & 1]
            scored.sort()
            high = scored[0][0]
            if scored[1][0] != high:
                best_sub = scored[0][1] - _N
            else:  # equal scores: strongest term, then key
                best_sub = min([(-_top(distinct, i, 1), i) for sc, i in scored if sc == high])[1] - _N

        # 6. The words that decided it, as the resident wrote them, in text order.
        #    s is " w0 w1 ... ", so the number of spaces before a match's end is the index
        #    of its last word + 1. In ASCII text low has the tokens at their places in text
        #    and spaces elsewhere, so a token that is the first of its kind is found as
        #    " tok " directly (the usual case); otherwise _surface works out the offsets.
        bit = 1 << win
        # a context rule's words are shown with the winner's when it added to the winner
        show = reduce(or_, [need for need, pm in added if pm & bit], 0) if added else 0
        count = s.count
        if ascii_text:
            find = (" " + low + " ").find
            index = toks.index
            out: list[str] | None  # None: every word was found directly, matched is set
            out = []
            for e, v in found:
                if v.mask & bit or v.cues & show:
                    b = count(" ", 0, e) - 1
                    tb = toks[b]
                    if index(tb) != b:
                        break
                    if v.words == 1:
                        i = find(" " + tb + " ")
                        out.append(text[i : i + len(tb)])
                    else:
                        ta = toks[b - v.words + 1]
                        if index(ta) != b - v.words + 1:
                            break
                        out.append(text[find(" " + ta + " ") : find(" " + tb + " ") + len(tb)])
            else:
                matched = tuple(dict.fromkeys(out)) if len(out) > 1 else tuple(out)
                out = None
            if out is not None:  # a repeated token: work out the offsets
                matched = _surface(
                    text,
                    low,
                    toks,
                    [((b := count(" ", 0, e) - 1) - v.words + 1, b) for e, v in found if v.mask & bit or v.cues & show],
                )
        else:
            words = [((b := count(" ", 0, e) - 1) - v.words + 1, b) for e, v in found if v.mask & bit or v.cues & show]
            if len(low) != len(text):  # lower() changed the length: show the words lower-cased
                matched = tuple(dict.fromkeys([" ".join(toks[a : b + 1]) for a, b in words]))
            else:
                matched = _surface(text, low, toks, words)
        return _new_result(
            PILLARS[win],
            self._sub_keys[best_sub][1],
            ((total >> (_BITS * win)) & _MAX) / 1000,
            matched,
            secondary,
        )

    def _apply_contexts(
        self, cues: int, distinct: Iterable[_Key], total: int, mask: int
    ) -> tuple[list[_Key], int, int, list[tuple[int, int]]]:
        """[[contexts]] rules whose words are in the message: their added weights join the
        distinct terms (as one more term each); then each lowered sub-topic's score (and its
        pillar's) is cut to factor x score (the lowest factor of the rules that fired, in
        thousandths, floor, at least 0.001). Returns the terms, sums, and the (word groups,
        pillars added to) of the rules that added weight, for the words shown."""
        keys = list(distinct)
        added: list[tuple[int, int]] = []
        factors: dict[tuple[int, int], int] = {}
        for need, forbid, pseudo, pillars, scale in self._contexts_py:
            if cues & need != need or cues & forbid:
                continue
            if pseudo is not None:
                keys.append(pseudo)
                total += pseudo.packed
                mask |= pseudo.mask
                added.append((need, pillars))
            for field_, p, f in scale:
                if f < factors.get((field_, p), 1001):
                    factors[(field_, p)] = f
        for (field_, p), f in factors.items():
            score = (total >> (_BITS * field_)) & _MAX
            if score:
                cut = score - max(1, score * f // 1000)
                total -= (cut << (_BITS * p)) + (cut << (_BITS * field_))
        return keys, total, mask, added

    # ---- labels

    def subtopic_label(self, pillar: str, subtopic: str, language: str) -> str:
        st = self._subtopics.get((pillar, subtopic))
        if st is None:
            return subtopic
        label = st.label_en if language.lower().startswith("en") else st.label_id
        return label or subtopic

    def subtopics(self) -> list[tuple[str, str]]:
        return list(self._sub_keys)


class _Key:
    """One automaton key; hashed by identity (one object per key).

    inner is built holding term ids, which Tagger.__init__ then replaces by the key objects."""

    __slots__ = ("cues", "inner", "length", "mask", "packed", "terms", "tid", "words")

    def __init__(
        self,
        tid: int,
        length: int,
        words: int,
        inner: tuple[tuple[int, _Key], ...],
        packed: int,
        mask: int,
        terms: tuple[tuple[int, int, int], ...],
        cues: int = 0,
    ) -> None:
        self.tid, self.length, self.words, self.inner = tid, length, words, inner
        self.packed, self.mask, self.terms = packed, mask, terms
        self.cues = cues  # bits of the [[contexts]] word groups it stands for


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_last = operator.itemgetter(-1)
_inner_of = operator.attrgetter("inner")
_packed_of = operator.attrgetter("packed")
_mask_of = operator.attrgetter("mask")
_cues_of = operator.attrgetter("cues")
or_ = operator.or_


def _top(distinct: Iterable[_Key], index: int, sub: int) -> int:
    """Weight of the strongest term of a pillar (sub=0) or a packed sub-topic field (sub=1).

    Only needed to rank several pillars or sub-topics with scores to compare."""
    if sub:
        index -= _N
        return max(w for v in distinct for _, st, w in v.terms if st == index)
    return max(w for v in distinct for p, _, w in v.terms if p == index)


def _surface(text: str, low: str, toks: list[str], words: list[tuple[int, int]]) -> tuple[str, ...]:
    """The matched terms as the resident wrote them ("Jl. Raya"), in text order, each once.

    ``words`` are (first, last) token indices of the shown matches, in text order; lower()
    kept the length of text, so a token is at the same offsets in low and in text.
    """
    if len(words) == 1:
        ((a, b),) = words
        if a == b and text.isascii():
            tok = toks[a]
            if toks.index(tok) == a:
                # low has the tokens at their places in text and spaces elsewhere
                i = (" " + low + " ").find(" " + tok + " ")
                return (text[i : i + len(tok)],)
    elif text.isascii():
        # a token that is the first of its kind is found as " tok " directly (the usual case)
        padded = " " + low + " "
        index, find = toks.index, padded.find
        out = []
        for a, b in words:
            ta = toks[a]
            if index(ta) != a:
                break
            i = find(" " + ta + " ")
            if a == b:
                out.append(text[i : i + len(ta)])
            else:
                tb = toks[b]
                if index(tb) != b:
                    break
                out.append(text[i : find(" " + tb + " ") + len(tb)])
        else:
            return tuple(dict.fromkeys(out))
    # Character offsets of the tokens up to the last one needed. Between two tokens
    # there are only non-word characters, so find() lands on the token itself.
    offsets, pos = [], 0
    find = low.find
    for tok in toks[: words[-1][1] + 1]:
        pos = find(tok, pos)
        offsets.append(pos)
        pos += len(tok)
    return tuple(dict.fromkeys([text[offsets[a] : offsets[b] + len(toks[b])] for a, b in words]))


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=1)
def _packaged_tagger() -> Tagger:
    # The packaged rules are read-only data: loading them once per process is safe.
    return Tagger.from_path(None)


def key_terms(text: str) -> frozenset[str]:
    """Normalized, stemmed content words minus stopwords, for finding similar submissions."""
    return _packaged_tagger().key_terms(text)


def check_rules(path: str | os.PathLike[str] | None) -> list[RuleProblem]:
    """Every problem in a rules file, with line numbers, sorted by line."""
    try:
        text, _ = _read_rules_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        return [RuleProblem(0, f"cannot read rules file: {exc}")]
    rules = _parse_rules(text)
    problems = list(rules.problems)
    if not any(p.fatal for p in problems):
        problems += Tagger(rules).duplicate_problems
    return sorted(problems, key=lambda p: (p.line, p.message))


def suggest_keywords(
    corrections: Iterable[tuple[str, str]],
    others: Iterable[tuple[str, str]],
    tagger: Tagger,
    limit: int = 20,
    *,
    min_count: int = 2,
) -> list[Suggestion]:
    """Candidate keywords from corrected submissions, for an official to review.

    A term is suggested for pillar P when it occurs in several submissions moved to P and
    rarely in submissions of other pillars (corrected or not): score = count in P x
    log((1 + documents outside P) / (1 + documents outside P with the term)), a tf-idf
    over documents. Terms the rules already contain are left out.
    """
    docs: list[tuple[frozenset[str], str, bool]] = []
    for text, pillar in corrections:
        if pillar in _PILLAR_INDEX:
            docs.append((tagger.key_terms(text), pillar, True))
    for text, pillar in others:
        if pillar in _PILLAR_INDEX:
            docs.append((tagger.key_terms(text), pillar, False))
    in_pillar: dict[str, Counter[str]] = defaultdict(Counter)
    any_pillar: dict[str, Counter[str]] = defaultdict(Counter)
    per_pillar_docs: Counter[str] = Counter()
    for terms, pillar, corrected in docs:
        per_pillar_docs[pillar] += 1
        for t in terms:
            any_pillar[t][pillar] += 1
            if corrected:
                in_pillar[pillar][t] += 1
    total = len(docs)
    out = []
    for pillar, counts in in_pillar.items():
        outside_docs = total - per_pillar_docs[pillar]
        for term, count in counts.items():
            if count < min_count or term in tagger.terms:
                continue
            outside = sum(any_pillar[term].values()) - any_pillar[term][pillar]
            score = count * math.log((1 + outside_docs) / (1 + outside))
            if score > 0:
                out.append(Suggestion(pillar, term, count, round(score, 3)))
    out.sort(key=lambda s: (-s.score, -s.count, _PILLAR_INDEX[s.pillar], s.term))
    return out[:limit]
