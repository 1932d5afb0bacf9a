-- Several instances on one database (issue 16).
--
-- rate_slots: send pacing shared by every instance (storage/ratelimits.py). One row per
-- paced key; taking a slot moves next_at on by the key's interval in one atomic
-- INSERT ... ON CONFLICT DO UPDATE ... RETURNING, so instances sending at once queue behind
-- each other at the platform's rate instead of each sending at it.
CREATE TABLE rate_slots (
    key     TEXT PRIMARY KEY,       -- what is paced: "telegram", "telegram:chat:42", "whatsapp:<number id>"
    next_at DOUBLE PRECISION NOT NULL -- seconds since the epoch (the server's clock): when the next send may start
);

-- The outbox wakes every instance's worker when a row is queued: NOTIFY is delivered on
-- commit, so a listener never looks before the rows are visible, and a transaction that
-- rolls back wakes nobody. One notification per statement (and PostgreSQL folds equal
-- ones within a transaction). The channel names the schema: two bots in one database,
-- each in its own schema, wake only their own workers (storage/wakeups.py listens).
CREATE FUNCTION outbox_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('suarawarga_outbox_' || current_schema(), '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_queued AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_queued();

-- Which instance claimed an outbox row (storage/outbox.py): a claim whose instance is gone
-- (PostgreSQL: its presence lock is free) is released by another one at once, while the
-- rows a live instance is sending stay its own.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
