-- Similar submissions are looked up by area across pillars (an official's re-tag must not hide
-- the obvious duplicate): an index that leads with the area.
CREATE INDEX submissions_area ON submissions (area, created_at);
