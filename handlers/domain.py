"""Domain vocabulary shared by every layer: pillars, kinds, statuses, tracking codes.

Pure values only: no I/O, no clock, no randomness of its own (callers pass them in).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import StrEnum

from storage.vocabulary import KINDS, PILLARS
from storage.vocabulary import STATUSES as _STORED_STATUSES

__all__ = ["CODE_ALPHABET", "CODE_LENGTH", "KINDS", "PILLARS", "STATUSES", "Status", "TrackingCode"]


class Status(StrEnum):
    NEW = "new"
    REVIEWED = "reviewed"
    FORWARDED = "forwarded"
    IN_MASTERPLAN = "in_masterplan"
    RESOLVED = "resolved"
    REJECTED = "rejected"


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
assert STATUSES == _STORED_STATUSES, "Status and storage.vocabulary.STATUSES disagree"

# Tracking codes: 6 characters without look-alikes (no 0/O, 1/I/L), shown as XXX-XXX.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 6
_CODE_INPUT = re.compile(r"^\s*#?([0-9A-Za-z]{3})[\s\-_]?([0-9A-Za-z]{3})\s*$")


@dataclass(frozen=True, slots=True)
class TrackingCode:
    """A submission's public identifier. Stored without the dash, shown with it."""

    value: str

    def __str__(self) -> str:
        return f"{self.value[:3]}-{self.value[3:]}"

    @classmethod
    def generate(cls, rng: random.Random) -> TrackingCode:
        # rng is a SystemRandom in production (codes must not be guessable) and a
        # seeded Random in tests.
        return cls("".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH)))

    @classmethod
    def parse(cls, raw: str) -> TrackingCode | None:
        """Read a code as a person types it: any case, with or without the dash."""
        m = _CODE_INPUT.match(raw or "")
        if not m:
            return None
        value = (m.group(1) + m.group(2)).upper()
        if any(ch not in CODE_ALPHABET for ch in value):
            return None
        return cls(value)
