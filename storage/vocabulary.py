"""The values the schema stores in its text columns: pillar keys, kinds, statuses.

Storage queries by them (the digest's per-pillar reads); the core names, orders and renders
them (handlers/domain.py takes these and adds the Status enum and tracking codes)."""

from __future__ import annotations

# The six dimensions of the national smart-city movement (../shared/PILLARS.md).
# Order matters: it is the order residents see in menus and officials in reports.
PILLARS: tuple[str, ...] = ("governance", "branding", "economy", "living", "society", "environment")

KINDS: tuple[str, ...] = ("report", "idea")

STATUSES: tuple[str, ...] = ("new", "reviewed", "forwarded", "in_masterplan", "resolved", "rejected")
