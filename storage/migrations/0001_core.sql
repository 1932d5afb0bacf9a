-- Core schema: residents, their conversations, submissions and what happens to them.
-- Timestamps are ISO 8601 UTC text of fixed width ("2026-11-28T15:43:22.123456+00:00"),
-- so they sort and range-compare as strings and read as dates in any SQLite shell.

-- A row exists only once the resident has consented (UU PDP): the row *is* the consent record.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    channel         TEXT NOT NULL,              -- telegram | whatsapp | terminal
    platform_id     TEXT NOT NULL,              -- the platform's user id (wa_id, Telegram user id)
    chat_id         TEXT NOT NULL,              -- where replies and notifications go
    display_name    TEXT,
    language        TEXT NOT NULL,
    language_source TEXT NOT NULL DEFAULT 'hint', -- hint | detected | chosen: only 'hint' is re-detected
    consent_version TEXT NOT NULL,
    consent_at      TEXT NOT NULL,
    last_inbound_at TEXT,                       -- WhatsApp 24-hour window
    created_at      TEXT NOT NULL,
    UNIQUE (channel, platform_id)
);

-- Where each resident is in the guided conversation. Survives restarts by design.
CREATE TABLE conversations (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    step       TEXT NOT NULL,
    draft      TEXT NOT NULL DEFAULT '{}',      -- JSON of the submission being written
    updated_at TEXT NOT NULL
);

CREATE TABLE submissions (
    id                INTEGER PRIMARY KEY,
    code              TEXT NOT NULL UNIQUE,      -- 6 characters, no dash
    user_id           INTEGER REFERENCES users(id) ON DELETE SET NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('report', 'idea')),
    pillar            TEXT,                      -- NULL: the tagger found none; needs triage
    subtopic          TEXT,
    auto_pillar       TEXT,                      -- what the tagger said, for measuring it
    matched           TEXT NOT NULL DEFAULT '[]',-- JSON list of the terms that decided it
    text              TEXT NOT NULL,
    language          TEXT NOT NULL,
    area              TEXT,
    latitude          REAL,
    longitude         REAL,
    photo_ref         TEXT,                      -- platform file id / media id
    anonymous         INTEGER NOT NULL DEFAULT 0,
    submitter_name    TEXT,                      -- NULL when anonymous
    channel           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'new',
    status_note       TEXT,
    hidden            INTEGER NOT NULL DEFAULT 0,
    supports          INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    status_changed_at TEXT NOT NULL
);
-- Date-range reports (digest, exports) lead with created_at; the covering column lets a
-- weekly GROUP BY pillar never touch the table (see PLATFORMS.md on the planner's choice).
CREATE INDEX submissions_created_pillar ON submissions (created_at, pillar);
CREATE INDEX submissions_user ON submissions (user_id, created_at);
CREATE INDEX submissions_status ON submissions (status, status_changed_at);
CREATE INDEX submissions_similar ON submissions (pillar, area, created_at);

CREATE TABLE status_history (
    id            INTEGER PRIMARY KEY,
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    from_status   TEXT,
    to_status     TEXT NOT NULL,
    note          TEXT,
    actor         TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX status_history_created ON status_history (created_at, to_status);
CREATE INDEX status_history_submission ON status_history (submission_id);

-- Every pillar change by a resident or an official: the raw material for `rules suggest`.
CREATE TABLE pillar_corrections (
    id            INTEGER PRIMARY KEY,
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    from_pillar   TEXT,
    to_pillar     TEXT NOT NULL,
    actor_role    TEXT NOT NULL CHECK (actor_role IN ('resident', 'official')),
    created_at    TEXT NOT NULL
);

CREATE TABLE supports (
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (submission_id, user_id)
) WITHOUT ROWID;

-- Every inbound platform message, claimed in the same transaction as its effect, so a
-- repeated delivery (Telegram retry, WhatsApp at-least-once) has no second effect.
-- payload holds the raw body only between "accepted" and "handled" (WhatsApp webhook).
CREATE TABLE inbound (
    channel     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    payload     TEXT,
    received_at TEXT NOT NULL,
    handled_at  TEXT,
    PRIMARY KEY (channel, message_id)
) WITHOUT ROWID;
CREATE INDEX inbound_pending ON inbound (handled_at) WHERE handled_at IS NULL;

-- Durable outbox: notifications to residents are written in the same transaction as the
-- change that causes them and sent by a worker, so they are never lost nor duplicated.
CREATE TABLE outbox (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER REFERENCES users(id) ON DELETE CASCADE,
    channel             TEXT NOT NULL,
    chat_id             TEXT NOT NULL,
    purpose             TEXT NOT NULL,          -- status_change | official_reply | supported_status | ...
    payload             TEXT NOT NULL,          -- JSON: the rendered reply
    state               TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'dropped')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     TEXT NOT NULL,
    last_error          TEXT,
    platform_message_id TEXT,
    created_at          TEXT NOT NULL,
    sent_at             TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

-- Who did what, when, with before and after. Never holds residents' personal data.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    before     TEXT,
    after      TEXT,
    created_at TEXT NOT NULL
);
