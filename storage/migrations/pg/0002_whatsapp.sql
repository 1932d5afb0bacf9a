-- PostgreSQL twin of storage/migrations/0002_whatsapp.sql: the same tables, columns, keys and indexes
-- (tests/test_postgres_schema.py compares them); only the types differ (see storage/dialect.py).

-- WhatsApp: every message the bot sent, so Meta's `statuses` webhooks (sent, delivered,
-- read, failed) can be recorded against it. Statuses arrive at least once and in any
-- order; the code only moves a message forward (sent < delivered < read; failed is final).
CREATE TABLE whatsapp_messages (
    wamid        TEXT PRIMARY KEY,             -- Meta's id of the outgoing message
    -- The resident it went to, when it is one: erasing them erases this trail too (UU PDP).
    -- NULL for numbers that are not residents (officials receiving the digest).
    user_id      BIGINT REFERENCES users(id) ON DELETE CASCADE,
    chat_id      TEXT NOT NULL,                -- the recipient's wa_id
    purpose      TEXT NOT NULL,                -- reply | status_change | official_reply | digest | ...
    kind         TEXT NOT NULL,                -- text | interactive | template | location | image
    status       TEXT NOT NULL DEFAULT 'accepted'
                 CHECK (status IN ('accepted', 'sent', 'delivered', 'read', 'failed')),
    error        TEXT,                         -- JSON of Meta's errors[] when failed
    created_at   TEXT NOT NULL,
    sent_at      TEXT,
    delivered_at TEXT,
    read_at      TEXT,
    failed_at    TEXT,
    updated_at   TEXT NOT NULL
);
CREATE INDEX whatsapp_messages_user ON whatsapp_messages (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX whatsapp_messages_chat ON whatsapp_messages (chat_id, created_at);
