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

from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

log = logging.getLogger(__name__)

# Below this many words detection is a coin toss (PLATFORMS.md): use the hint instead.
MIN_WORDS = 4
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


class LanguageDetector:
    def __init__(self, languages: tuple[str, ...], default: str):
        self.default = default
        self.languages = languages
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
        if not self._enabled or not self.is_substantive(text):
            return fallback
        try:
            detector = self._factory.create()
            detector.append(text or "")
            found = detector.detect()
        except LangDetectException:
            return fallback
        return found if found in self.languages else fallback


def language_hint(code: str | None) -> str | None:
    """Platform codes like 'en-US', 'id', 'pt-br' -> 'en', 'id', 'pt'."""
    if not code:
        return None
    return code.replace("_", "-").split("-")[0].lower() or None
