-- A submission's text as exports and public pages show it (personal data masked), stored at
-- saving with the version of the masking rules that made it: exports of a million rows reuse
-- it instead of masking every row again (~7 µs a row), and mask afresh when the rules changed
-- (masked_with differs) or for rows saved before this migration (NULL).
ALTER TABLE submissions ADD COLUMN text_masked TEXT;
ALTER TABLE submissions ADD COLUMN masked_with TEXT;
