//! What the rules layer adds to the log: shadow calls (written off the
//! request path, through the read pool like keys) and the per-decision view
//! `switchyard report ab` aggregates.

use sqlx::Row;

use super::{SqliteStore, StoreError};

/// One shadow call: a rule mirrored a completion to `model`; never returned.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShadowRow {
    pub decision_id: String,
    pub rule: String,
    pub tenant: String,
    pub key_id: Option<String>,
    pub model: String,
    pub provider: String,
    /// `ok`, `error` or `timeout`.
    pub outcome: &'static str,
    pub error: Option<String>,
    pub started_at_ms: i64,
    pub latency_ms: u32,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub cost_usd: Option<f64>,
    /// The shadow's answer, only with `server.store_prompts`.
    pub content: Option<String>,
}

/// One decision of an A/B split, with its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitOutcome {
    pub rule: String,
    pub arm: String,
    pub probability: f64,
    /// The model that answered (or was chosen, for Route).
    pub model: String,
    /// Mean over the decision's feedback sources; none without feedback.
    pub reward: Option<f64>,
    /// Summed over its attempts; none when nothing was called.
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<i64>,
}

impl SqliteStore {
    pub async fn insert_shadow(&self, s: &ShadowRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO shadows (decision_id, rule, tenant, key_id, model, provider,
               outcome, error, started_at_ms, latency_ms, prompt_tokens, completion_tokens,
               cost_usd, content)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.decision_id)
        .bind(&s.rule)
        .bind(&s.tenant)
        .bind(&s.key_id)
        .bind(&s.model)
        .bind(&s.provider)
        .bind(s.outcome)
        .bind(&s.error)
        .bind(s.started_at_ms)
        .bind(s.latency_ms)
        .bind(s.prompt_tokens)
        .bind(s.completion_tokens)
        .bind(s.cost_usd)
        .bind(&s.content)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every shadow call made for decisions at or after `since_ms`.
    pub async fn shadows(&self, since_ms: i64) -> Result<Vec<ShadowRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT decision_id, rule, tenant, key_id, model, provider, outcome, error,
                    started_at_ms, latency_ms, prompt_tokens, completion_tokens, cost_usd, content
             FROM shadows WHERE started_at_ms >= ? ORDER BY started_at_ms",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ShadowRow {
                decision_id: r.get("decision_id"),
                rule: r.get("rule"),
                tenant: r.get("tenant"),
                key_id: r.get("key_id"),
                model: r.get("model"),
                provider: r.get("provider"),
                outcome: match r.get::<&str, _>("outcome") {
                    "ok" => "ok",
                    "timeout" => "timeout",
                    _ => "error",
                },
                error: r.get("error"),
                started_at_ms: r.get("started_at_ms"),
                latency_ms: r.get("latency_ms"),
                prompt_tokens: r.get("prompt_tokens"),
                completion_tokens: r.get("completion_tokens"),
                cost_usd: r.get("cost_usd"),
                content: r.get("content"),
            })
            .collect())
    }

    /// The decisions of every A/B split made at or after `since_ms`.
    pub async fn split_outcomes(&self, since_ms: i64) -> Result<Vec<SplitOutcome>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.ab_rule, d.ab_arm, d.ab_probability,
                    COALESCE(d.served_model, d.model) AS model,
                    (SELECT AVG(reward) FROM feedback f WHERE f.decision_id = d.id) AS reward,
                    (SELECT SUM(cost_usd) FROM attempts a WHERE a.decision_id = d.id) AS cost,
                    (SELECT SUM(latency_ms) FROM attempts a WHERE a.decision_id = d.id) AS latency
             FROM decisions d
             WHERE d.ab_rule IS NOT NULL AND d.created_at_ms >= ?
             ORDER BY d.ab_rule, d.ab_arm",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SplitOutcome {
                rule: r.get("ab_rule"),
                arm: r.get("ab_arm"),
                probability: r.get("ab_probability"),
                model: r.get("model"),
                reward: r.get("reward"),
                cost_usd: r.get("cost"),
                latency_ms: r.get("latency"),
            })
            .collect())
    }
}
