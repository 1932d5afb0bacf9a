-- PostgreSQL twin of storage/migrations/0008_webdesk.sql: the same tables, columns, keys and indexes
-- (tests/test_postgres_schema.py compares them); only the types differ (see storage/dialect.py).

-- The web desk (issue 19): one-time sign-in links and the sessions they open.
-- Only hashes of the secrets are kept: a copy of the database (a backup) opens no session.

CREATE TABLE desk_login_tokens (
    token_hash TEXT PRIMARY KEY,           -- sha256 of the link's token, hex
    official   TEXT NOT NULL,              -- an OFFICIALS entry, e.g. telegram:123456
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT                        -- set once: a link opens one session only
);
CREATE INDEX desk_login_tokens_expiry ON desk_login_tokens (expires_at);

CREATE TABLE desk_sessions (
    id_hash      TEXT PRIMARY KEY,         -- sha256 of the session id in the signed cookie
    official     TEXT NOT NULL,
    csrf         TEXT NOT NULL,            -- the token every form of this session carries
    language     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,            -- idle expiry counts from here
    ended_at     TEXT                      -- sign-out, idle expiry, or removal from OFFICIALS
);
CREATE INDEX desk_sessions_official ON desk_sessions (official) WHERE ended_at IS NULL;

-- The desk's list filters on status and reads newest first; the public page counts the
-- visible submissions by status. submissions_status (status, status_changed_at) serves
-- "recently resolved"; this one serves the desk's default order within a status.
CREATE INDEX submissions_desk_status ON submissions (status, created_at);
