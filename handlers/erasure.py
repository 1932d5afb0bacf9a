"""What `/hapus` must leave behind: nothing that names the resident.

Erasing the user row is not enough (UU PDP: delete or anonymise on request). Their number and
name are also quoted in the audit log (an official's reply "Pak Budi, hubungi 0812..."), in
status notes, in kept submissions' own text, and in copies of outgoing messages. The core
builds a scrubber from everything that identifies the resident and storage applies it to
every row that can quote them, inside the erasure's transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from handlers.privacy import redact

ERASED = "[dihapus]"
_DIGITS = re.compile(r"\D+")
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)


def _phone_pattern(digits: str) -> str | None:
    """Any written form of an Indonesian number: 62812..., +62 812-..., 0812 ..., 812 ..."""
    national = digits
    for prefix in ("62", "0"):
        if national.startswith(prefix):
            national = national[len(prefix) :]
            break
    if len(national) < 7:
        return None
    body = r"[\s.\-]?".join(re.escape(d) for d in national)
    return rf"(?:\+?62|0)?[\s.\-]?{body}"


def scrubber(identities: Iterable[str | None]) -> Callable[[str], str]:
    """A function that removes each identity (numbers in any spelling, names and each of
    their words) from a text, then masks whatever else looks personal (redact)."""
    patterns: list[str] = []
    for value in identities:
        if not value:
            continue
        digits = _DIGITS.sub("", value)
        if len(digits) >= 7 and len(digits) >= len(value.strip()) - 4:
            phone = _phone_pattern(digits)
            if phone:
                patterns.append(phone)
            patterns.append(re.escape(digits))
            continue
        patterns.append(re.escape(value.strip()))
        patterns.extend(rf"\b{re.escape(word)}\b" for word in _WORD.findall(value))
    if not patterns:
        return redact
    # Longest first, so a whole name goes before one of its words.
    combined = re.compile("|".join(sorted(set(patterns), key=len, reverse=True)), re.IGNORECASE)

    def scrub(text: str) -> str:
        return redact(combined.sub(ERASED, text)) if text else text

    return scrub
