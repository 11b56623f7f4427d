-- The console's range queries over attempts (spend, errors and latency per
-- model and day) read them by start time, as PostgreSQL's schema already does.
CREATE INDEX attempts_started ON attempts (started_at_ms);
