"""Which language a resident writes in: langdetect, restricted to the catalogues we have.

langdetect's module-level `detect()` loads all 55 profiles (0.5 s at first call, ~3.3 ms
a call after) and is right only ~60% of the time on 1-3 Indonesian words. A factory of
our own with just the profiles we have texts for is ~4x faster and far more often right
on short text; it is seeded for repeatability, and warmed at start-up so the first
resident does not pay the profile loading.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING

from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

if TYPE_CHECKING:
    from handlers.i18n import Catalog

log = logging.getLogger(__name__)

# Below this many words detection is a coin toss (PLATFORMS.md): use the hint instead.
MIN_WORDS = 4
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
_ANY_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
# Not language: anything with a digit ("K7Q-4MX", "50rb", "RT05", plates) and tracking
# codes typed in capitals ("ABC-DEF"). Left in, "status K7Q-4MX selesai" counted as four
# words and langdetect took the code's letters for English now and then.
_NOT_WORDS = re.compile(r"\S*\d\S*|\b[A-Z]{3}-[A-Z]{3}\b")


# A clear majority of one language's function words decides without langdetect.
CLEAR_VOTES = 2
CLEAR_MARGIN = 3


class LanguageDetector:
    def __init__(
        self, languages: tuple[str, ...], default: str, function_words: dict[str, frozenset[str]] | None = None
    ):
        self.default = default
        self.languages = languages
        # Most residents' messages are plainly Indonesian or plainly English: counting
        # function words settles those in microseconds; langdetect (~0.8 ms) only sees
        # the mixed and the unusual ones (bench: a third of a description's CPU before).
        self.function_words = {
            lang: words for lang, words in (function_words or {}).items() if lang in languages and words
        }
        self._factory = DetectorFactory()
        self._factory.set_seed(0)
        profiles = []
        for lang in languages:
            path = os.path.join(PROFILES_DIRECTORY, lang)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    profiles.append(fh.read())
            else:
                # e.g. Javanese: langdetect has no profile; residents choose it with /bahasa.
                log.info("langdetect has no profile for %r; it is only chosen by hand", lang)
        self._enabled = len(profiles) >= 2
        if self._enabled:
            self._factory.load_json_profile(profiles)

    def warm_up(self) -> None:
        self.detect("Jalan di depan rumah saya rusak parah sejak bulan lalu")

    def is_substantive(self, text: str | None) -> bool:
        return bool(text) and len(_WORD.findall(text or "")) >= MIN_WORDS

    def detect(self, text: str | None, hint: str | None = None) -> str:
        """The language of `text`, or the hint / default when the text is too short to tell."""
        fallback = hint if hint in self.languages else self.default
        text = _NOT_WORDS.sub(" ", text or "")
        if not self.is_substantive(text):
            return fallback
        clear = self.clear_case(text)
        if clear is not None:
            return clear
        if not self._enabled:
            return fallback
        try:
            detector = self._factory.create()
            # lower-cased: langdetect takes an ALL-CAPS Indonesian complaint for English
            detector.append(text.lower())
            found = detector.detect()
        except LangDetectException:
            return fallback
        return found if found in self.languages else fallback

    def clear_case(self, text: str) -> str | None:
        """The language whose function words clearly dominate `text`, else None."""
        if len(self.function_words) < 2:
            return None
        words = _ANY_WORD.findall(text.lower())
        votes = sorted(
            ((sum(1 for w in words if w in fw), lang) for lang, fw in self.function_words.items()),
            reverse=True,
        )
        (best, lang), (second, _) = votes[0], votes[1]
        # Unmixed (no word of the other language), or mixed but overwhelmingly one.
        if best >= CLEAR_VOTES and (second == 0 or best >= CLEAR_MARGIN * second):
            return lang
        return None

    @classmethod
    def for_catalog(cls, catalog: Catalog) -> LanguageDetector:
        words = {
            lang: frozenset(catalog.text(lang, "language.function_words").split(","))
            for lang in catalog.languages
            if "language.function_words" in catalog.keys(lang)
        }
        return cls(catalog.languages, catalog.default, words)


def language_hint(code: str | None) -> str | None:
    """Platform codes like 'en-US', 'id', 'pt-br' -> 'en', 'id', 'pt'."""
    if not code:
        return None
    return code.replace("_", "-").split("-")[0].lower() or None
