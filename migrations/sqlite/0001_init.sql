-- The decision log: one row per routing decision, one per provider attempt,
-- one per (decision, feedback source), and the policy versions that decided.
-- Times are Unix milliseconds.

CREATE TABLE decisions (
    id              TEXT PRIMARY KEY,          -- UUIDv7, time-ordered
    created_at_ms   INTEGER NOT NULL,
    tenant          TEXT NOT NULL,
    rpc             TEXT NOT NULL,             -- route | complete | complete_stream
    model           TEXT NOT NULL,             -- chosen (or pinned) model
    provider        TEXT NOT NULL,
    served_model    TEXT,                      -- model whose answer was returned, after fallbacks
    pinned          INTEGER NOT NULL,
    propensity      REAL NOT NULL,             -- P(model | context) under the logging policy
    explored        INTEGER NOT NULL,
    policy_version  TEXT NOT NULL,
    cost_weight     REAL NOT NULL,
    max_cost_usd    REAL,
    prompt_tokens   INTEGER NOT NULL,
    output_tokens   INTEGER NOT NULL,          -- expected output tokens used for costs
    message_count   INTEGER NOT NULL,
    features        BLOB,                      -- classifier features, little-endian f32
    intent          TEXT,
    candidates      TEXT NOT NULL,             -- JSON: every catalog model's numbers
    metadata        TEXT NOT NULL,             -- JSON object from the request
    prompt          TEXT                       -- only when server.store_prompts
);
CREATE INDEX decisions_created ON decisions (created_at_ms);
CREATE INDEX decisions_tenant ON decisions (tenant, created_at_ms);

CREATE TABLE attempts (
    decision_id       TEXT NOT NULL REFERENCES decisions (id),
    seq               INTEGER NOT NULL,        -- 0-based order within the decision
    model             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    outcome           TEXT NOT NULL,           -- ok | error | timeout | cancelled
    error             TEXT,
    http_status       INTEGER,
    started_at_ms     INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    usage_estimated   INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL,
    PRIMARY KEY (decision_id, seq)
);

CREATE TABLE feedback (
    decision_id    TEXT NOT NULL REFERENCES decisions (id),
    source         TEXT NOT NULL,
    reward         REAL NOT NULL CHECK (reward >= 0.0 AND reward <= 1.0),
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (decision_id, source)
);

CREATE TABLE policy_versions (
    version        TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    params         TEXT NOT NULL,              -- JSON
    active         INTEGER NOT NULL DEFAULT 0
);
