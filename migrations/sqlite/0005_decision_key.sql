-- The API key a decision was made under (auth.mode = "keys"; NULL without),
-- so spend is counted per key, day and month from the log itself: budgets
-- are rebuilt from it at start, and survive a restart and kill -9 as the
-- attempts' costs do.
ALTER TABLE decisions ADD COLUMN key_id TEXT;
CREATE INDEX decisions_key ON decisions (key_id, created_at_ms);
