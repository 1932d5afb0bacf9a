"""Transitional: the old name of the storage API, re-exported from the modules that now own
each table (users, inbound, submissions, audit, erasure). New code imports those modules."""

from __future__ import annotations

from storage.audit import audit
from storage.erasure import erase_user
from storage.inbound import claim_inbound, keep_replies, owed_replies, purge_inbound, replies_delivered
from storage.outbox import enqueue_notification
from storage.submissions import (
    Submission,
    add_support,
    count_submissions_since,
    get_submission,
    insert_submission,
    recent_submissions_of,
    similar_candidates,
)
from storage.users import (
    Conversation,
    User,
    create_user,
    get_user,
    get_user_and_conversation,
    save_conversation,
    set_language,
    submitter_names,
    touch_user,
)

__all__ = [
    "Conversation",
    "Submission",
    "User",
    "add_support",
    "audit",
    "claim_inbound",
    "count_submissions_since",
    "create_user",
    "enqueue_notification",
    "erase_user",
    "get_submission",
    "get_user",
    "get_user_and_conversation",
    "insert_submission",
    "keep_replies",
    "owed_replies",
    "purge_inbound",
    "recent_submissions_of",
    "replies_delivered",
    "save_conversation",
    "set_language",
    "similar_candidates",
    "submitter_names",
    "touch_user",
]
