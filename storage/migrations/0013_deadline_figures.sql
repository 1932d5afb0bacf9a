-- Issue 17, the digest's and exports' deadline figures as indexed reads. What a submission's
-- clocks start from and when it was answered, kept on the row by every status change and
-- closure answer in storage (storage/desk.py set_status, storage/deadlines.py), instead of
-- being looked up in status_history and closures for every open submission at each read.
-- Due dates are still not stored: they follow from these starts and the working-day
-- calendar (handlers/deadlines.py), so a new HOLIDAYS_EXTRA or deadline setting applies to
-- every submission at once; the reads turn "due before today" into "started before a
-- threshold" (storage/deadlines.py overdue_figures).

-- forwarded_at: the latest forwarding (the agency_answer clock); reopened_at: the latest
-- "Belum" (the resolution clock restarts); first_response_at: when the status first left
-- "new"; resolved_at: the latest move to resolved or in_masterplan. The *_s columns are
-- the seconds from submission to those moments, for the medians (no date arithmetic at
-- read time, which the two engines spell differently). closure: the latest question's
-- outcome (confirmed, disputed, unconfirmed, waiting); rating: its 1-5 rating.
ALTER TABLE submissions ADD COLUMN forwarded_at TEXT;
ALTER TABLE submissions ADD COLUMN reopened_at TEXT;
ALTER TABLE submissions ADD COLUMN first_response_at TEXT;
ALTER TABLE submissions ADD COLUMN first_response_s INTEGER;
ALTER TABLE submissions ADD COLUMN resolved_at TEXT;
ALTER TABLE submissions ADD COLUMN resolution_s INTEGER;
ALTER TABLE submissions ADD COLUMN closure TEXT;
ALTER TABLE submissions ADD COLUMN rating INTEGER;

-- The resident's optional photo of the fix, sent with their answer (a platform file id or
-- "wa:<media id>", as submissions.photo_ref; deleted with the submission).
ALTER TABLE closures ADD COLUMN photo_ref TEXT;

-- Backfill from the history the figures were computed from until now.
UPDATE submissions SET
    forwarded_at = (SELECT max(h.created_at) FROM status_history h
                    WHERE h.submission_id = submissions.id AND h.to_status = 'forwarded'),
    reopened_at = (SELECT max(c.answered_at) FROM closures c
                   WHERE c.submission_id = submissions.id AND c.outcome = 'disputed'),
    first_response_at = (SELECT min(h.created_at) FROM status_history h
                         WHERE h.submission_id = submissions.id AND h.to_status <> 'new'
                           AND h.from_status IS NOT h.to_status),
    resolved_at = (SELECT max(h.created_at) FROM status_history h
                   WHERE h.submission_id = submissions.id AND h.to_status IN ('resolved', 'in_masterplan')),
    closure = (SELECT coalesce(c.outcome, 'waiting') FROM closures c
               WHERE c.submission_id = submissions.id AND coalesce(c.outcome, '') <> 'superseded'
               ORDER BY c.id DESC LIMIT 1),
    rating = (SELECT c.rating FROM closures c
              WHERE c.submission_id = submissions.id AND coalesce(c.outcome, '') <> 'superseded'
              ORDER BY c.id DESC LIMIT 1);
UPDATE submissions SET
    first_response_s = CAST(round((julianday(first_response_at) - julianday(created_at)) * 86400) AS INTEGER),
    resolution_s = CAST(round((julianday(resolved_at) - julianday(created_at)) * 86400) AS INTEGER);

-- Overdue as of a day: open submissions by status and clock start (created_at, or
-- reopened_at when later), covering the pillar and agency they are counted by. Each index
-- also holds the columns of its own WHERE (hidden, status): SQLite reads a partial index
-- as covering only when every column the query names is in it.
CREATE INDEX submissions_overdue ON submissions (status, created_at, reopened_at, pillar, forwarded_to, hidden)
    WHERE hidden = 0;
-- The agency_answer clock of forwarded submissions.
CREATE INDEX submissions_agency_due
    ON submissions (forwarded_at, created_at, reopened_at, pillar, forwarded_to, status, hidden)
    WHERE status = 'forwarded' AND hidden = 0;
-- The medians of a period: first responses and resolutions made in it.
CREATE INDEX submissions_first_response ON submissions (first_response_at, first_response_s, hidden)
    WHERE hidden = 0;
CREATE INDEX submissions_resolved ON submissions (resolved_at, resolution_s, hidden) WHERE hidden = 0;
-- Closure outcomes answered in a period.
CREATE INDEX closures_answered ON closures (answered_at, outcome);
