-- Issue 18: consultations. The team asks residents who raised a topic a question (a draft
-- paragraph to react to, a choice of 2-5 options, or an open question) and sends them the
-- result when it closes. Only residents who agreed to be contacted again are asked.

-- Asked once per resident (after their first submission); `agreed` NULL while unanswered,
-- 0 after "tidak" or "berhenti"/"stop", 1 after "ya". Goes with the user row (erasure).
CREATE TABLE consult_contact (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    agreed     INTEGER,
    asked_at   TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE consultations (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('paragraph', 'choice', 'open')),
    question   TEXT NOT NULL,
    paragraph  TEXT,                          -- the draft text to react to (kind paragraph)
    options    TEXT NOT NULL DEFAULT '[]',    -- JSON list of 2-5 labels (kind choice)
    audience   TEXT NOT NULL DEFAULT '{}',    -- JSON {"pillar"|"subtopic"|"section": ..., "areas": [...]}
    state      TEXT NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'sent', 'closed')),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at    TEXT,
    closed_at  TEXT
);

-- Who was asked, fixed at sending: their kecamatan and how they are in the audience
-- (raised the topic or supported it) for results by kecamatan and kind of participant,
-- whether the question went out (queued) or could not (no_window: WhatsApp outside the
-- 24-hour window with no approved template), their one answer (the latest counts) and
-- when the result was queued to them (once).
CREATE TABLE consultation_recipients (
    consultation_id INTEGER NOT NULL REFERENCES consultations(id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    area            TEXT,
    role            TEXT NOT NULL CHECK (role IN ('raised', 'supported')),
    delivery        TEXT NOT NULL CHECK (delivery IN ('queued', 'no_window')),
    choice          INTEGER,
    answer          TEXT,
    answer_masked   TEXT,
    answers         INTEGER NOT NULL DEFAULT 0,   -- how many times they answered (changes + 1)
    answered_at     TEXT,
    result_sent_at  TEXT,
    PRIMARY KEY (consultation_id, user_id)
);
CREATE INDEX consultation_recipients_user ON consultation_recipients (user_id);
