"""Transitional: the old name of the desk and outbox SQL, re-exported from storage.desk and
storage.outbox. New code imports those modules."""

from __future__ import annotations

from storage.desk import (
    Case,
    HistoryEntry,
    Recipient,
    get_case,
    recipient,
    set_hidden,
    set_pillar,
    set_status,
    stats,
    status_history,
    supporters,
    triage_page,
)
from storage.outbox import (
    OutboxRow,
    claim,
    counts_by_state,
    due_heads,
    enqueue,
    forget_delivered,
    mark_failed,
    mark_sent,
    next_attempt_at,
    pending_for_chat,
    release_claims,
    release_window_waiters,
    reschedule,
    wait_for_window,
)

__all__ = [
    "Case",
    "HistoryEntry",
    "OutboxRow",
    "Recipient",
    "claim",
    "counts_by_state",
    "due_heads",
    "enqueue",
    "forget_delivered",
    "get_case",
    "mark_failed",
    "mark_sent",
    "next_attempt_at",
    "pending_for_chat",
    "recipient",
    "release_claims",
    "release_window_waiters",
    "reschedule",
    "set_hidden",
    "set_pillar",
    "set_status",
    "stats",
    "status_history",
    "supporters",
    "triage_page",
    "wait_for_window",
]
