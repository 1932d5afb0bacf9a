"""The clock every layer above storage reads. Passed in as a callable wherever time
matters to a test (the core, the workers), so tests set it; this is the real one."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
