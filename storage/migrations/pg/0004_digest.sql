-- PostgreSQL twin of storage/migrations/0004_digest.sql: the same tables, columns, keys and indexes
-- (tests/test_postgres_schema.py compares them); only the types differ (see storage/dialect.py).

-- Weekly digest: who got which week's digest, and the index its aggregates read.

-- One row per (period, recipient), claimed before sending and marked after, so a restart,
-- a second process or a repeated trigger never sends the same week twice to anyone.
-- recipient: "telegram:-100123", "email:tim@magetan.go.id", "whatsapp:628123456789".
-- state: sending (claimed; a claim older than the lease is a crashed sender and may be
-- taken over), sent, failed (retries exhausted; the next trigger or start-up tries again).
CREATE TABLE digest_deliveries (
    period_start TEXT NOT NULL,
    period_end   TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    claimed_at   TEXT NOT NULL,
    sent_at      TEXT,
    PRIMARY KEY (period_start, recipient)
);

-- The weekly totals (pillar x kind x area x sub-topic x status, this week and last) come
-- from one walk of this covering index in GROUP BY order: no sort, no table access. A
-- created_at-first index looks natural but makes SQLite sort every row of the fortnight
-- (about 300,000 at 1,000,000 submissions: 2-5 s); walking all entries in group order and
-- skipping those outside the fortnight costs about 0.2 s (bench/bench_digest.py).
CREATE INDEX submissions_digest ON submissions
    (hidden, pillar, kind, area, subtopic, status, created_at);

-- Most-supported ideas and quote candidates: per pillar and kind, walk supports downwards
-- and stop after a dozen rows of the week, instead of ranking the whole week.
CREATE INDEX submissions_top ON submissions (hidden, pillar, kind, supports, created_at);

-- Untagged submissions waiting for an official: few rows, so a small partial index makes
-- "how many, and which are oldest" instant however large the table grows.
CREATE INDEX submissions_untagged ON submissions (created_at, status, pillar, hidden)
    WHERE pillar IS NULL AND hidden = 0;

-- Status movement of the week: per status a range of this index, submission ids included,
-- so counting distinct submissions never reads the table (0001's status_history_created
-- lacks submission_id: 60,000 table reads a week at 1,000,000 submissions, ~0.5 s).
CREATE INDEX status_history_movement ON status_history (to_status, created_at, submission_id);

-- Hidden submissions that changed status since a given time: their moves are taken out of
-- the movement counts. A submission moved in the period changed status at or after its
-- start, so this tiny partial index finds the few candidates.
CREATE INDEX submissions_hidden_changed ON submissions (status_changed_at) WHERE hidden = 1;
