-- PostgreSQL twin of storage/migrations/0007_digest_week.sql: the same tables, columns, keys and indexes
-- (tests/test_postgres_schema.py compares them); only the types differ (see storage/dialect.py).

-- Weekly digest whose cost follows the week's own rows, not the history (issue 20).

-- The weekly totals read the fortnight as one range of this covering index, then group
-- it (a sort of the fortnight's entries only). 0004's submissions_digest, led by hidden,
-- made SQLite walk every visible submission ever stored to find the fortnight's (~0.2 s
-- at 1,000,000, growing with the history); this replaces it, so inserts pay for one
-- index as before.
CREATE INDEX submissions_week ON submissions
    (created_at, hidden, pillar, kind, area, subtopic, status, supports);
DROP INDEX IF EXISTS submissions_digest;

-- Supports gained in the period (the week's most-supported idea, even when submitted
-- earlier): a range of this index, instead of a scan of every support ever given.
CREATE INDEX supports_created ON supports (created_at, submission_id);
