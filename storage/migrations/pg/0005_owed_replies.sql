-- PostgreSQL twin of storage/migrations/0005_owed_replies.sql: the same tables, columns, keys and indexes
-- (tests/test_postgres_schema.py compares them); only the types differ (see storage/dialect.py).

-- The answers to a handled message, kept in its claim row (same transaction as the effect)
-- until the channel has sent them: a crash between saving and answering, or a send that
-- failed, is answered again when the message comes again (Telegram) or by the sweep
-- (WhatsApp). JSON: {"chat": chat id, "replies": [Reply.to_json(), ...]}; NULL once sent.
ALTER TABLE inbound ADD COLUMN replies TEXT;
