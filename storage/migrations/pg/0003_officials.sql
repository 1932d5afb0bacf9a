-- PostgreSQL twin of storage/migrations/0003_officials.sql: the same tables, columns, keys and indexes
-- (tests/test_postgres_schema.py compares them); only the types differ (see storage/dialect.py).

-- Officials' workflow and the outbox worker.

-- The agency a submission was forwarded to (status 'forwarded'), and why it was hidden.
ALTER TABLE submissions ADD COLUMN forwarded_to TEXT;
ALTER TABLE submissions ADD COLUMN hidden_reason TEXT;

-- Set while a worker is sending the row, cleared when the outcome is written. A row still
-- claimed at start-up was being sent when the process died: it is sent again (it may
-- or may not have reached the resident; a duplicate is better than a lost notification).
ALTER TABLE outbox ADD COLUMN claimed_at TEXT;

-- WhatsApp 24-hour window: the row stays 'pending' with the resident's last_inbound_at as
-- it was when the window was found closed ('' when they never wrote). It is released when
-- users.last_inbound_at moves past that value, i.e. when the resident writes again.
ALTER TABLE outbox ADD COLUMN window_wait TEXT;

-- The worker's questions, each answered from a small index however long the history:
-- "the oldest pending row of every chat" (per-chat order) and "who waits for a window".
CREATE INDEX outbox_pending_chat ON outbox (channel, chat_id, id)
    WHERE state = 'pending' AND window_wait IS NULL;
CREATE INDEX outbox_window_wait ON outbox (user_id) WHERE window_wait IS NOT NULL;

-- Officials' triage list: status 'new' and not hidden, oldest first.
CREATE INDEX submissions_triage ON submissions (created_at) WHERE status = 'new' AND hidden = 0;
