-- Offline-trained policies made current by `switchyard promote`. The newest
-- row is the current policy; the service polls this table and swaps it in
-- without a restart. The policy file's JSON is copied in whole, so serving
-- never depends on the directory the candidate was evaluated from.
CREATE TABLE policy_promotions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    version         TEXT NOT NULL,             -- the policy file's version id
    promoted_at_ms  INTEGER NOT NULL,
    forced          INTEGER NOT NULL,          -- promoted with --force despite the rule
    estimate        REAL,                      -- candidate's estimate of the objective
    lower_bound     REAL,                      -- its lower confidence bound
    baseline        REAL,                      -- the current policy's estimate it beat
    report          TEXT NOT NULL,             -- JSON: the full evaluation
    policy          TEXT NOT NULL              -- JSON: policy.json as promoted
);
