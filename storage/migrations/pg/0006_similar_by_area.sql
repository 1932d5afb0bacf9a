-- PostgreSQL twin of storage/migrations/0006_similar_by_area.sql: the same tables, columns, keys and indexes
-- (tests/test_postgres_schema.py compares them); only the types differ (see storage/dialect.py).

-- Similar submissions are looked up by area across pillars (an official's re-tag must not hide
-- the obvious duplicate): an index that leads with the area.
CREATE INDEX submissions_area ON submissions (area, created_at);
