-- API keys (auth.mode = "keys"). The secret is never stored: only its
-- SHA-256, looked up on every request. A key belongs to a tenant; its
-- limits and budgets are optional (NULL: none). Revoked keys stay, so the
-- log's tenants and a revoked key's refusals keep their meaning.
CREATE TABLE api_keys (
    id                TEXT PRIMARY KEY,          -- public id: "key_" + 16 hex
    hash              TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the secret
    tenant            TEXT NOT NULL,
    name              TEXT NOT NULL DEFAULT '',
    tier              TEXT NOT NULL DEFAULT '',
    models            TEXT NOT NULL DEFAULT '[]', -- JSON array of allowed models; empty: all
    rpm               INTEGER,                   -- requests per minute
    tpm               INTEGER,                   -- tokens per minute
    budget_day_usd    REAL,
    budget_month_usd  REAL,
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    revoked_at_ms     INTEGER
);
