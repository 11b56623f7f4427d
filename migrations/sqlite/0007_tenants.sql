-- Tenant-wide settings (auth.mode = "keys"): what every key of the tenant
-- is held to beside its own settings. Allowed models intersect with a
-- key's; rate limits and budgets count all the tenant's keys together; the
-- tier is a key's when the key has none. NULL: no limit.
CREATE TABLE tenants (
    tenant            TEXT PRIMARY KEY,
    tier              TEXT NOT NULL DEFAULT '',
    models            TEXT NOT NULL DEFAULT '[]',
    rpm               INTEGER,
    tpm               INTEGER,
    budget_day_usd    REAL,
    budget_month_usd  REAL,
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL
);
