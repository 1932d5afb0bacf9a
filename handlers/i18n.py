"""Message catalogues: every user-facing sentence lives in handlers/locales/<lang>.toml.

Adding a language (Javanese is the likely next one) is adding a file: the set of
languages the bot speaks is the set of catalogues found, and a key missing from a
catalogue falls back to the default language rather than failing in front of a resident.
"""

from __future__ import annotations

import logging
import tomllib
from importlib import resources
from pathlib import Path
from string import Formatter
from typing import Any

log = logging.getLogger(__name__)


class Catalog:
    def __init__(self, texts: dict[str, dict[str, str]], default: str):
        if default not in texts:
            raise ValueError(f"no catalogue for the default language {default!r}")
        self._texts = texts
        self.default = default

    @classmethod
    def load(cls, default: str = "id", folder: Path | None = None) -> Catalog:
        texts: dict[str, dict[str, str]] = {}
        entries = list(folder.iterdir()) if folder else list(resources.files("handlers.locales").iterdir())
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.endswith(".toml"):
                data = tomllib.loads(entry.read_text(encoding="utf-8"))
                texts[entry.name.removesuffix(".toml")] = _flatten(data)
        return cls(texts, default)

    @property
    def languages(self) -> tuple[str, ...]:
        # Default first, then alphabetical: stable for menus and language detection.
        return (self.default, *sorted(k for k in self._texts if k != self.default))

    def supports(self, language: str | None) -> bool:
        return bool(language) and language in self._texts

    def text(self, language: str, key: str, /, **params: object) -> str:
        table = self._texts.get(language) or self._texts[self.default]
        template = table.get(key)
        if template is None:
            template = self._texts[self.default].get(key)
            if template is None:
                log.error("missing catalogue key %r", key)
                return key
        try:
            return template.format(**params) if params else template
        except (KeyError, IndexError, ValueError):
            log.error("catalogue key %r (%s) does not fit its parameters", key, language)
            return template

    def placeholders(self, language: str, key: str) -> set[str]:
        template = self._texts[language].get(key, "")
        return {name for _, name, _, _ in Formatter().parse(template) if name}

    def keys(self, language: str) -> set[str]:
        return set(self._texts[language])

    def aliases(self, key: str) -> set[str]:
        """All languages' values of a key, lower-cased: e.g. the words for a command."""
        words: set[str] = set()
        for table in self._texts.values():
            for word in table.get(key, "").split(","):
                if word.strip():
                    words.add(word.strip().lower())
        return words


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, full + "."))
        else:
            flat[full] = str(value)
    return flat
