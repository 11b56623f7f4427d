-- The decision log on PostgreSQL: the SQLite schema (migrations/sqlite/)
-- as it stands after its migrations, in PostgreSQL's types, for replicas
-- that share one database. Times are Unix milliseconds.

CREATE TABLE decisions (
    id              TEXT PRIMARY KEY,          -- UUIDv7, time-ordered
    created_at_ms   BIGINT NOT NULL,
    tenant          TEXT NOT NULL,
    rpc             TEXT NOT NULL,             -- route | complete | complete_stream
    model           TEXT NOT NULL,
    provider        TEXT NOT NULL,
    served_model    TEXT,
    pinned          BOOLEAN NOT NULL,
    propensity      DOUBLE PRECISION NOT NULL,
    explored        BOOLEAN NOT NULL,
    policy_version  TEXT NOT NULL,
    cost_weight     DOUBLE PRECISION NOT NULL,
    max_cost_usd    DOUBLE PRECISION,
    prompt_tokens   BIGINT NOT NULL,
    output_tokens   BIGINT NOT NULL,
    message_count   BIGINT NOT NULL,
    features        BYTEA,
    intent          TEXT,
    candidates      TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    prompt          TEXT,
    context         BYTEA,
    key_id          TEXT,
    rules           TEXT,
    profile         TEXT,
    ab_rule         TEXT,
    ab_arm          TEXT,
    ab_probability  DOUBLE PRECISION
);
CREATE INDEX decisions_created ON decisions (created_at_ms);
CREATE INDEX decisions_tenant ON decisions (tenant, created_at_ms);
CREATE INDEX decisions_key ON decisions (key_id, created_at_ms);
CREATE INDEX decisions_ab ON decisions (ab_rule, ab_arm) WHERE ab_rule IS NOT NULL;

CREATE TABLE attempts (
    decision_id       TEXT NOT NULL REFERENCES decisions (id),
    seq               BIGINT NOT NULL,
    model             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    outcome           TEXT NOT NULL,           -- ok | error | timeout | cancelled
    error             TEXT,
    http_status       BIGINT,
    started_at_ms     BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    usage_estimated   BOOLEAN NOT NULL DEFAULT FALSE,
    cost_usd          DOUBLE PRECISION,
    PRIMARY KEY (decision_id, seq)
);
CREATE INDEX attempts_started ON attempts (started_at_ms);

CREATE TABLE feedback (
    decision_id    TEXT NOT NULL REFERENCES decisions (id),
    source         TEXT NOT NULL,
    reward         DOUBLE PRECISION NOT NULL CHECK (reward >= 0.0 AND reward <= 1.0),
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (decision_id, source)
);
CREATE INDEX feedback_created ON feedback (created_at_ms);

-- Every replica records the versions it serves; the newest is the active
-- one (active stays TRUE: replicas do not contend on clearing it).
CREATE TABLE policy_versions (
    version        TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    params         TEXT NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE policy_promotions (
    id              BIGSERIAL PRIMARY KEY,
    version         TEXT NOT NULL,
    promoted_at_ms  BIGINT NOT NULL,
    forced          BOOLEAN NOT NULL,
    estimate        DOUBLE PRECISION,
    lower_bound     DOUBLE PRECISION,
    baseline        DOUBLE PRECISION,
    report          TEXT NOT NULL,
    policy          TEXT NOT NULL
);

CREATE TABLE api_keys (
    id                TEXT PRIMARY KEY,
    hash              TEXT NOT NULL UNIQUE,
    tenant            TEXT NOT NULL,
    name              TEXT NOT NULL DEFAULT '',
    tier              TEXT NOT NULL DEFAULT '',
    models            TEXT NOT NULL DEFAULT '[]',
    rpm               BIGINT,
    tpm               BIGINT,
    budget_day_usd    DOUBLE PRECISION,
    budget_month_usd  DOUBLE PRECISION,
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL,
    revoked_at_ms     BIGINT,
    on_unreachable    TEXT
);

CREATE TABLE tenants (
    tenant            TEXT PRIMARY KEY,
    tier              TEXT NOT NULL DEFAULT '',
    models            TEXT NOT NULL DEFAULT '[]',
    rpm               BIGINT,
    tpm               BIGINT,
    budget_day_usd    DOUBLE PRECISION,
    budget_month_usd  DOUBLE PRECISION,
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL
);

CREATE TABLE shadows (
    decision_id       TEXT NOT NULL,
    rule              TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    key_id            TEXT,
    model             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    error             TEXT,
    started_at_ms     BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    cost_usd          DOUBLE PRECISION,
    content           TEXT,
    PRIMARY KEY (decision_id, model)
);
CREATE INDEX shadows_started ON shadows (started_at_ms);

-- What replicas share beyond the log itself.
--
-- learn_events: every observation the bandit learns from, in one order all
-- replicas follow (seq). A transaction that writes events first locks the
-- one row of learn_seq and commits holding it, so seq order is commit order:
-- a replica that has read up to seq N has missed nothing below it.
-- kind 'feedback' adds reward (or replaces previous with it); 'failure' is a
-- model that failed a decision through its provider's fault (reward NULL:
-- the reader's dispatch.policy.failure_reward).
CREATE TABLE learn_seq (n BIGINT NOT NULL);
INSERT INTO learn_seq (n) VALUES (0);
CREATE TABLE learn_events (
    seq          BIGINT PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    kind         TEXT NOT NULL,              -- feedback | failure
    decision_id  TEXT NOT NULL,
    arm          TEXT NOT NULL,
    context      BYTEA NOT NULL,
    reward       DOUBLE PRECISION,
    previous     DOUBLE PRECISION
);

-- Spend per API key (and per tenant, as "tenant:<name>") and UTC day, added
-- to in the transaction that logs the attempts: budgets are checked against
-- it by every replica.
CREATE TABLE key_spend (
    id    TEXT NOT NULL,
    day   TEXT NOT NULL,                     -- YYYY-MM-DD, UTC
    usd   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (id, day)
);
