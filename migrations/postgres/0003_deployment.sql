-- Which of a model's deployments (its provider, or another host, key or
-- region serving the same model) took the attempt; NULL in older rows.
ALTER TABLE attempts ADD COLUMN deployment TEXT;
