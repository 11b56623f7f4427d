-- What a key's requests meet while the shared rate limiter (Redis,
-- limits.backend = "redis") is unreachable: 'open' admits, 'closed'
-- refuses; NULL follows limits.on_unreachable.
ALTER TABLE api_keys ADD COLUMN on_unreachable TEXT;
