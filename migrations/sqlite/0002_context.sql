-- The exact context vector the policy decided on (little-endian f32), so the
-- bandit's state can be rebuilt from the log and any policy evaluated offline.
ALTER TABLE decisions ADD COLUMN context BLOB;
