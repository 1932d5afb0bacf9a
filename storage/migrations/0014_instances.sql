-- Several instances on one database (issue 16): send pacing shared through the database.
-- On SQLite there is one process, which paces in memory (storage/ratelimits.py); the table
-- exists so both engines have the same schema (and `db copy` moves it like any other).
CREATE TABLE rate_slots (
    key     TEXT PRIMARY KEY,       -- what is paced: "telegram", "telegram:chat:42", "whatsapp:<number id>"
    next_at REAL NOT NULL           -- seconds since the epoch: when the next send may start
);

-- Which instance claimed an outbox row (storage/outbox.py): a claim whose instance is gone
-- (PostgreSQL: its presence lock is free) is released by another one at once, while the
-- rows a live instance is sending stay its own.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
