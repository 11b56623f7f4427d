-- The rules layer ([[routes]], profiles, A/B splits, shadows). A decision
-- records the rules that matched (JSON array, in order), the profile in
-- force, and its A/B arm with that arm's probability. A decision a rule
-- pinned is logged pinned = 1 (propensity 1, policy_version "rule:<name>",
-- "profile:<name>" or "ab:<rule>"), so off-policy evaluation skips it.
ALTER TABLE decisions ADD COLUMN rules TEXT;
ALTER TABLE decisions ADD COLUMN profile TEXT;
ALTER TABLE decisions ADD COLUMN ab_rule TEXT;
ALTER TABLE decisions ADD COLUMN ab_arm TEXT;            -- variant | control
ALTER TABLE decisions ADD COLUMN ab_probability REAL;    -- P(arm): the share, or 1 - share
CREATE INDEX decisions_ab ON decisions (ab_rule, ab_arm) WHERE ab_rule IS NOT NULL;

-- Shadow calls: a share of a rule's completions mirrored to another model.
-- Never returned to a client; their spend is counted here, apart from the
-- decisions' attempts (and so from every key's budget).
CREATE TABLE shadows (
    decision_id       TEXT NOT NULL,
    rule              TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    key_id            TEXT,
    model             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    outcome           TEXT NOT NULL,           -- ok | error | timeout
    error             TEXT,
    started_at_ms     INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_usd          REAL,
    content           TEXT,                    -- only when server.store_prompts
    PRIMARY KEY (decision_id, model)
);
CREATE INDEX shadows_started ON shadows (started_at_ms);
