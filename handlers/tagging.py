"""Pillar tagging: which chapter of the smart-city masterplan should answer a message.

Pure: ``Tagger.classify(text) -> TagResult`` depends only on the text and the rules file
(handlers/rules/pillars.toml, or a regency's own file through RULES_PATH). The rules are
data an official can edit; this module only knows how to read and apply them.

How a message is tagged
-----------------------
1. Tokens: the text is lower-cased and split into letter/digit runs ("jl." -> "jl").
2. Canonical form of each token (cached per token, so a message costs dict look-ups):
   everyday spellings from ``[normalize]`` ("jln" -> "jalan", "uwuh" -> "sampah"), repeated
   letters squeezed ("gelappp"), "beda2" -> "beda", then affix stripping *guided by the rule
   vocabulary*: "kebanjiran" -> "banjir", "perizinan" -> "izin", "dalane" -> "dalan",
   "flooding" -> "flood". A token is only stripped when the result is a word of the rules,
   so "jalan" never becomes "jal" and unknown words are left alone.
3. One Aho-Corasick pass (pyahocorasick, in C) over " tok tok tok " finds every keyword,
   phrase and exclusion at token boundaries, whatever the number of rules.
4. A match inside a longer match is dropped ("sampah" inside "bank sampah", "polisi" inside
   "polisi tidur"); an exclusion cancels its own sub-topic's terms inside it ("kali" inside
   "dua kali").
5. Each distinct term adds its weight to its sub-topic (and once to its pillar).

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
"""

from __future__ import annotations

import functools
import math
import os
import re
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator

import ahocorasick

from handlers.domain import PILLARS

__all__ = [
    "TagResult",
    "Tagger",
    "RulesError",
    "RuleProblem",
    "Suggestion",
    "check_rules",
    "key_terms",
    "suggest_keywords",
    "STEMMERS",
]

# Letter/digit runs in any script. Lower-casing first keeps it to one regex call.
_TOKEN_RE = re.compile(r"[^\W_]+")
_REPEATS_RE = re.compile(r"(.)\1{2,}")
_PILLAR_INDEX = {p: i for i, p in enumerate(PILLARS)}
_N = len(PILLARS)
_RESERVED_TABLES = ("meta", "normalize", "stopwords")
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


def _affix_candidates(word: str) -> Iterator[str]:
    """Possible roots of an Indonesian / Javanese / English word, least stripping first.

    Not a full stemmer: candidates are only accepted when they are words of the rules
    vocabulary, so over-generation is harmless and the rules stay readable roots.
    """
    suffix_forms = [word]
    # particles and possessives (Indonesian), -e/-ne/-ane/-en (Javanese), English endings
    for suf in ("nya", "lah", "kah", "pun", "ku", "mu", "ne", "e", "s", "es", "ing", "ed", "ly", "ies"):
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
        for suf in ("kan", "an", "i", "nya"):
            if form.endswith(suf) and len(form) - len(suf) >= 3:
                more.append(form[: -len(suf)])
    suffix_forms += more
    for form in suffix_forms:
        yield form
    for form in suffix_forms:
        for stem in _strip_prefixes(form, 2):
            yield stem


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


class _LineIndex:
    """Line numbers of tables, keys and string values (tomllib gives none for values).

    Scans the text the way a person reads it: the current [table], the current key (also
    across multi-line arrays), and every quoted string or bare inline-table key on a line.
    """

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
    _KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)\s*=")
    _STRING = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'([^']*)'")
    _INLINE_KEY = re.compile(r"[{,]\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.tables: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.values: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        table, key, depth = "", "", 0
        for n, raw in enumerate(text.splitlines(), 1):
            line = self._strip_comment(raw)
            if depth == 0:
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
                problems.append(RuleProblem(lines.keys.get((table, "weights"), tline), f"{table}: weights must be a table"))
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
                            RuleProblem(lines.keys.get((table, kind), tline), f"{table}.{kind}: {value!r} is not a word")
                        )
                        continue
                    line = lines.value_line(table, kind, value, seen_here[value])
                    seen_here[value] += 1
                    w = 0.0 if kind == "exclude" else weights.get(value, _DEFAULT_WEIGHT[kind])
                    if kind != "exclude" and (not isinstance(w, (int, float)) or isinstance(w, bool) or not w > 0):
                        problems.append(RuleProblem(lines.value_line(table, "weights", value), f"{table}: weight of {value!r} must be a number > 0"))
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
    return _Rules(normalize, stopwords, subtopics, problems)


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

    def __init__(self, rules: _Rules, *, stemmer: str = "affix") -> None:
        if stemmer not in STEMMERS:
            raise ValueError(f"stemmer must be one of {STEMMERS}")
        self._normalize = rules.normalize
        self.stopwords = rules.stopwords
        self._subtopics = {(st.pillar, st.key): st for st in rules.subtopics}
        self._cache: dict[str, str] = {}
        self._sastrawi = _SastrawiStem() if stemmer == "sastrawi" else None
        self.stemmer = stemmer
        raw_vocab = {tok for st in rules.subtopics for t in st.terms for tok in _tokens(t.text)}
        raw_vocab = {self._normalize.get(t, t) for t in raw_vocab}
        if self._sastrawi is not None:
            raw_vocab |= {self._sastrawi(t) for t in raw_vocab}
        self._vocab = frozenset(raw_vocab)
        for st in rules.subtopics:
            for t in st.terms:
                t.canon = " ".join(self.canonical(tok) for tok in _tokens(t.text))
        self.duplicate_problems = _duplicate_problems(rules.subtopics)
        self.terms = frozenset(t.canon for st in rules.subtopics for t in st.terms if not t.exclude)

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
        automaton = ahocorasick.Automaton()
        for tid, canon in enumerate(sorted(entries)):
            ents = entries[canon]
            terms = tuple(sorted((self._sub_pillar[sub], sub, w) for (sub, ex), w in ents.items() if not ex))
            excls = tuple(sorted(sub for (sub, ex) in ents if ex))
            key = f" {canon} "
            automaton.add_word(key, (tid, len(key), " " in canon, terms, excls))
        self._ready = len(automaton) > 0
        if self._ready:
            automaton.make_automaton()
        self._automaton = automaton

    # ---- construction

    @classmethod
    def from_path(cls, path: str | os.PathLike[str] | None = None, *, stemmer: str = "affix") -> "Tagger":
        """Load a rules file; None means the packaged handlers/rules/pillars.toml."""
        text, name = _read_rules_text(path)
        return cls.from_text(text, name=name, stemmer=stemmer)

    @classmethod
    def from_text(cls, text: str, *, name: str = "<rules>", stemmer: str = "affix") -> "Tagger":
        rules = _parse_rules(text)
        fatal = [p for p in rules.problems if p.fatal]
        if fatal:
            raise RulesError(name, fatal)
        return cls(rules, stemmer=stemmer)

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
            if t in vocab:
                return t
        if self._sastrawi is not None:
            s = self._sastrawi(t)
            return norm.get(s, s)
        if self.stemmer == "none":
            return t
        for cand in _affix_candidates(t):
            cand = norm.get(cand, cand)
            if cand in vocab:
                return cand
        return t

    def key_terms(self, text: str) -> frozenset[str]:
        out = set()
        for tok in _tokens(text):
            c = self.canonical(tok)
            if c not in self.stopwords and len(c) > 2 and not c.isdigit() and c != "0":
                out.add(c)
        return frozenset(out)

    # ---- classification

    def classify(self, text: str) -> TagResult:
        low = text.lower()
        toks = _TOKEN_RE.findall(low)
        if not toks:
            return NO_PILLAR
        try:  # all tokens seen before: the whole canonical string is built in C
            s = " " + " ".join(map(self._cache.__getitem__, toks)) + " "
        except KeyError:
            s = " " + " ".join([self.canonical(t) for t in toks]) + " "
        found = list(self._automaton.iter(s)) if self._ready else []
        if not found:
            return NO_PILLAR

        # Multi-word matches hide the matches inside them ("sampah" in "bank sampah");
        # exclusion phrases cancel their own sub-topic's terms inside them ("dua kali").
        wide = [(e - pl[1] + 1, e) for e, pl in found if pl[2]]
        excluded = [(sub, e - pl[1] + 1, e) for e, pl in found if pl[4] for sub in pl[4]]
        score = [0] * _N
        top = [0] * _N
        subs: dict[int, tuple[int, int]] = {}  # sub index -> (score, strongest term)
        hits: list[tuple[int, int, int]] = []  # (pillar, start, end) of every counted match
        seen = set()
        for end, (tid, klen, _, terms, _) in found:
            if not terms:
                continue
            start = end - klen + 1
            if wide and any(a <= start and end <= b and b - a > end - start for a, b in wide):
                continue
            first = tid not in seen  # a term repeated in the text counts once
            seen.add(tid)
            for p, sub, w in terms:
                if excluded and any(x == sub and a <= start and end <= b for x, a, b in excluded):
                    continue
                hits.append((p, start, end))
                if first:
                    score[p] += w
                    if w > top[p]:
                        top[p] = w
                    old = subs.get(sub)
                    subs[sub] = (w, w) if old is None else (old[0] + w, w if w > old[1] else old[1])
        ranked = sorted([(-score[i], -top[i], i) for i in range(_N) if score[i]])
        if not ranked:
            return NO_PILLAR
        win = ranked[0][2]
        sub_keys, sub_pillar = self._sub_keys, self._sub_pillar
        best_sub = min([(-v[0], -v[1], sub_keys[i][1], i) for i, v in subs.items() if sub_pillar[i] == win])[3]
        return TagResult(
            PILLARS[win],
            sub_keys[best_sub][1],
            score[win] / 1000,
            self._surface(text, low, toks, s, [(a, b) for p, a, b in hits if p == win]),
            tuple([PILLARS[r[2]] for r in ranked[1:]]),
        )

    @staticmethod
    def _surface(text: str, low: str, toks: list[str], s: str, spans: list[tuple[int, int]]) -> tuple[str, ...]:
        """The matched terms as the resident wrote them ("Jl. Raya"), in text order, each once."""
        words = sorted({(s.count(" ", 0, a + 1) - 1, s.count(" ", 0, b) - 1) for a, b in spans})
        # Character offsets of the tokens up to the last one needed. Between two tokens
        # there are only non-word characters, so find() lands on the token itself.
        offsets, pos = [], 0
        for tok in toks[: max(b for _, b in words) + 1]:
            pos = low.find(tok, pos)
            offsets.append(pos)
            pos += len(tok)
        same = len(low) == len(text)  # lower() kept the length: offsets are valid in text
        out: list[str] = []
        for a, b in words:
            if same:
                term = text[offsets[a] : offsets[b] + len(toks[b])]
            else:
                term = " ".join(toks[a : b + 1])
            if term not in out:
                out.append(term)
        return tuple(out)

    # ---- labels

    def subtopic_label(self, pillar: str, subtopic: str, language: str) -> str:
        st = self._subtopics.get((pillar, subtopic))
        if st is None:
            return subtopic
        label = st.label_en if language.lower().startswith("en") else st.label_id
        return label or subtopic

    def subtopics(self) -> list[tuple[str, str]]:
        return list(self._sub_keys)


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

