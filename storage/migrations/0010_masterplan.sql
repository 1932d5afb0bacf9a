-- Issue 18: the masterplan's outline and the submissions traced to its sections.
-- A section keeps its id across reloads of the outline (matched by number, then by
-- title when it was renumbered), so links survive renames; a section dropped from the
-- file is retired, not deleted, so what was linked to it stays traceable.
CREATE TABLE masterplan_sections (
    id         INTEGER PRIMARY KEY,
    number     TEXT NOT NULL UNIQUE,      -- as the drafters write it: "4.2"
    title      TEXT NOT NULL,
    pillar     TEXT,
    programme  TEXT,
    area       TEXT,                      -- a kecamatan, when the section is about one
    position   INTEGER NOT NULL,          -- order in the last outline file
    retired_at TEXT,                      -- no longer in the outline
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One section per submission: where it went in the plan, who linked it and when (the
-- digest lists the week's new links by linked_at).
CREATE TABLE masterplan_links (
    submission_id INTEGER PRIMARY KEY REFERENCES submissions(id) ON DELETE CASCADE,
    section_id    INTEGER NOT NULL REFERENCES masterplan_sections(id),
    linked_by     TEXT NOT NULL,
    linked_at     TEXT NOT NULL
);
CREATE INDEX masterplan_links_section ON masterplan_links (section_id);
CREATE INDEX masterplan_links_linked_at ON masterplan_links (linked_at);
