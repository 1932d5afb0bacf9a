-- Issue 17: response deadlines, reminders and escalations, answer templates, closure the
-- resident confirms. Due dates are not stored: they follow from the submission, its status
-- history and its closures (handlers/deadlines.py), so a changed setting or holiday list
-- applies to every open submission at once. What is stored is what was sent, so nothing
-- is sent twice across restarts.

-- One row per reminder or escalation item ever queued. A reminder is once per stage
-- instance (day = its due date); an escalation once per stage instance and working day
-- (day = the local date it was escalated). started_at names the stage instance: a second
-- forwarding or a reopening starts a new one.
CREATE TABLE deadline_notices (
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    stage         TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('reminder', 'escalation')),
    day           TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (submission_id, stage, started_at, kind, day)
) WITHOUT ROWID;
CREATE INDEX deadline_notices_day ON deadline_notices (kind, day);

-- Every time an official marks a submission resolved, the resident is asked whether it
-- is. outcome NULL: waiting for the answer; 'unconfirmed': no answer within
-- CLOSURE_CONFIRM_DAYS. note holds the resident's own words when they say it is not done
-- (deleted with the submission).
CREATE TABLE closures (
    id            INTEGER PRIMARY KEY,
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    resolved_at   TEXT NOT NULL,
    resolved_by   TEXT NOT NULL,
    outcome       TEXT CHECK (outcome IN ('confirmed', 'disputed', 'unconfirmed', 'superseded')),
    answered_at   TEXT,
    rating        INTEGER CHECK (rating BETWEEN 1 AND 5),
    note          TEXT,
    UNIQUE (submission_id, resolved_at)
);
CREATE INDEX closures_waiting ON closures (resolved_at) WHERE outcome IS NULL;

-- Officials' reusable answers (/templat), in Indonesian and optionally English.
CREATE TABLE answer_templates (
    name       TEXT PRIMARY KEY,          -- lower-case, as typed after '#'
    text_id    TEXT NOT NULL,
    text_en    TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
