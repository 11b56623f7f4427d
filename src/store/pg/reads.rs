//! PostgreSQL's side of every read (and of the rare writes that go through
//! the pool rather than the writer: keys, tenants, promotions, shadows,
//! policy versions), in its own SQL dialect and types. Each method matches
//! the SQLite backend's of the same name; the conformance suite runs both.

use sqlx::{PgPool, Row};

use super::super::offline::{LoggedDecision, Promotion, PromotionRow};
use super::super::rules::{ShadowRow, SplitOutcome};
use super::super::{FailedAttempt, KeyRow, Observation, SpendRow, StoreError, StoredDecision};
use super::PgStore;

/// One observation of the shared log, as every replica's learner reads it.
#[derive(Debug, Clone)]
pub struct LearnEvent {
    pub seq: i64,
    pub at_ms: i64,
    /// `feedback` or `failure`.
    pub kind: String,
    pub arm: String,
    pub context: Vec<u8>,
    pub reward: Option<f64>,
    pub previous: Option<f64>,
}

fn u32_of(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

/// Records `version` as serving. Replicas each publish their own versions,
/// so "active" is the newest recorded one: one upsert, with no update of
/// other rows for replicas' transactions to contend on.
pub(super) async fn policy_version(
    pool: &PgPool,
    version: &str,
    kind: &str,
    params: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO policy_versions (version, kind, created_at_ms, params, active)
         VALUES ($1, $2, $3, $4, TRUE)
         ON CONFLICT (version) DO UPDATE
           SET created_at_ms = GREATEST(policy_versions.created_at_ms, excluded.created_at_ms)",
    )
    .bind(version)
    .bind(kind)
    .bind(at_ms)
    .bind(params)
    .execute(pool)
    .await?;
    Ok(())
}

impl PgStore {
    pub async fn decision(&self, id: &str) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(
            "SELECT d.id, d.tenant, d.model, d.served_model, d.propensity, d.policy_version,
                    d.features, d.intent,
                    (SELECT COUNT(*) FROM attempts a WHERE a.decision_id = d.id) AS attempts
             FROM decisions d WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredDecision {
            id: r.get("id"),
            tenant: r.get("tenant"),
            model: r.get("model"),
            served_model: r.get("served_model"),
            propensity: r.get("propensity"),
            policy_version: r.get("policy_version"),
            attempts: r.get("attempts"),
            features: r.get("features"),
            intent: r.get("intent"),
        }))
    }

    pub async fn feedback(&self, decision_id: &str) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, reward FROM feedback WHERE decision_id = $1 ORDER BY source",
        )
        .bind(decision_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn observations_after(&self, after_ms: i64) -> Result<Vec<Observation>, StoreError> {
        let rows = sqlx::query(
            "SELECT CASE WHEN d.rpc = 'route' THEN d.model ELSE d.served_model END AS arm,
                    d.context, f.reward
             FROM feedback f JOIN decisions d ON d.id = f.decision_id
             WHERE d.context IS NOT NULL AND f.created_at_ms > $1
             ORDER BY d.created_at_ms, d.id, f.source",
        )
        .bind(after_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Observation {
                    arm: r.get::<Option<String>, _>("arm")?,
                    context: r.get("context"),
                    reward: r.get("reward"),
                })
            })
            .collect())
    }

    pub async fn failed_attempts(&self) -> Result<Vec<FailedAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.decision_id, a.model, d.context, a.http_status
             FROM attempts a JOIN decisions d ON d.id = a.decision_id
             WHERE d.context IS NOT NULL
               AND a.outcome IN ('error', 'timeout')
               AND a.model IS DISTINCT FROM COALESCE(d.served_model, '')
             ORDER BY a.decision_id, a.model",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| FailedAttempt {
                decision_id: r.get("decision_id"),
                model: r.get("model"),
                context: r.get("context"),
                http_status: r
                    .get::<Option<i64>, _>("http_status")
                    .and_then(|s| u16::try_from(s).ok()),
            })
            .collect())
    }

    pub async fn active_policy(&self) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT version, params FROM policy_versions WHERE active
             ORDER BY created_at_ms DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub async fn completion_token_sums(
        &self,
    ) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.model, COALESCE(d.intent, '') AS intent,
                    CAST(SUM(a.completion_tokens) AS BIGINT) AS s, COUNT(*) AS n
             FROM attempts a JOIN decisions d ON d.id = a.decision_id
             WHERE a.outcome = 'ok' AND a.completion_tokens IS NOT NULL
             GROUP BY a.model, d.intent",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let s: i64 = r.get("s");
                let n: i64 = r.get("n");
                (
                    r.get("model"),
                    r.get("intent"),
                    s.max(0) as u64,
                    n.max(0) as u64,
                )
            })
            .collect())
    }

    pub async fn feedback_watermark(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(created_at_ms), 0) FROM feedback")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    pub async fn logged_decisions(
        &self,
        since_ms: i64,
        through_ms: i64,
    ) -> Result<Vec<LoggedDecision>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.created_at_ms, d.rpc, d.model, d.served_model, d.pinned,
                    d.propensity, d.cost_weight, d.context, d.candidates, d.metadata, d.features,
                    (SELECT COALESCE(json_agg(f.reward), '[]'::json)::text FROM feedback f
                      WHERE f.decision_id = d.id AND f.created_at_ms <= $2) AS rewards,
                    (SELECT SUM(a.cost_usd) FROM attempts a WHERE a.decision_id = d.id) AS cost
             FROM decisions d
             WHERE d.created_at_ms >= $1
               AND EXISTS (SELECT 1 FROM feedback f
                            WHERE f.decision_id = d.id AND f.created_at_ms <= $2)
             ORDER BY d.created_at_ms, d.id",
        )
        .bind(since_ms)
        .bind(through_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let rewards: String = r.get("rewards");
                Ok(LoggedDecision {
                    id: r.get("id"),
                    created_at_ms: r.get("created_at_ms"),
                    rpc: r.get("rpc"),
                    model: r.get("model"),
                    served_model: r.get("served_model"),
                    pinned: r.get("pinned"),
                    propensity: r.get("propensity"),
                    cost_weight: r.get("cost_weight"),
                    context: r.get("context"),
                    candidates: r.get("candidates"),
                    metadata: r.get("metadata"),
                    features: r.get("features"),
                    rewards: serde_json::from_str(&rewards)
                        .map_err(|e| StoreError::Db(sqlx::Error::Decode(Box::new(e))))?,
                    cost_usd: r.get("cost"),
                })
            })
            .collect()
    }

    pub async fn record_promotion(&self, p: PromotionRow) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO policy_promotions
               (version, promoted_at_ms, forced, estimate, lower_bound, baseline, report, policy)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&p.version)
        .bind(p.at_ms)
        .bind(p.forced)
        .bind(p.estimate)
        .bind(p.lower_bound)
        .bind(p.baseline)
        .bind(&p.report)
        .bind(&p.policy)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get(0))
    }

    pub async fn latest_promotion_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM policy_promotions")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    pub async fn current_promotion(&self) -> Result<Option<Promotion>, StoreError> {
        let row = sqlx::query(
            "SELECT id, version, policy FROM policy_promotions ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Promotion {
            id: r.get(0),
            version: r.get(1),
            policy: r.get(2),
        }))
    }

    /// The newest observation's number (0 for none): where a learner that
    /// has folded in the whole log so far starts following.
    pub async fn learn_cursor(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT n FROM learn_seq")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    /// Up to `limit` observations after `cursor`, in order.
    pub async fn learn_events(
        &self,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<LearnEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, kind, arm, context, reward, previous FROM learn_events
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| LearnEvent {
                seq: r.get(0),
                at_ms: r.get(1),
                kind: r.get(2),
                arm: r.get(3),
                context: r.get(4),
                reward: r.get(5),
                previous: r.get(6),
            })
            .collect())
    }

    /// (id, day, usd) of `ids` since `since_day` (YYYY-MM-DD), from the
    /// counters every replica adds to.
    pub async fn key_spend(
        &self,
        ids: &[String],
        since_day: &str,
    ) -> Result<Vec<(String, String, f64)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, day, usd FROM key_spend WHERE id = ANY($1) AND day >= $2")
                .bind(ids)
                .bind(since_day)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    pub async fn insert_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, hash, tenant, created_at_ms, name, tier, models, rpm, tpm,
               budget_day_usd, budget_month_usd, on_unreachable, updated_at_ms, revoked_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&k.id)
        .bind(&k.hash)
        .bind(&k.tenant)
        .bind(k.created_at_ms)
        .bind(&k.name)
        .bind(&k.tier)
        .bind(models(&k.models))
        .bind(k.rpm.map(i64::from))
        .bind(k.tpm.map(i64::from))
        .bind(k.budget_day_usd)
        .bind(k.budget_month_usd)
        .bind(&k.on_unreachable)
        .bind(k.updated_at_ms)
        .bind(k.revoked_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn update_key(&self, k: &KeyRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET name = $1, tier = $2, models = $3, rpm = $4, tpm = $5,
               budget_day_usd = $6, budget_month_usd = $7, on_unreachable = $8,
               updated_at_ms = $9, revoked_at_ms = $10
             WHERE id = $11",
        )
        .bind(&k.name)
        .bind(&k.tier)
        .bind(models(&k.models))
        .bind(k.rpm.map(i64::from))
        .bind(k.tpm.map(i64::from))
        .bind(k.budget_day_usd)
        .bind(k.budget_month_usd)
        .bind(&k.on_unreachable)
        .bind(k.updated_at_ms)
        .bind(k.revoked_at_ms)
        .bind(&k.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, hash, tenant, name, tier, models, rpm, tpm, budget_day_usd,
               budget_month_usd, on_unreachable, created_at_ms, updated_at_ms, revoked_at_ms
             FROM api_keys ORDER BY created_at_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| KeyRow {
                id: r.get("id"),
                hash: r.get("hash"),
                tenant: r.get("tenant"),
                name: r.get("name"),
                tier: r.get("tier"),
                models: serde_json::from_str(r.get::<&str, _>("models")).unwrap_or_default(),
                rpm: u32_of(r.get("rpm")),
                tpm: u32_of(r.get("tpm")),
                budget_day_usd: r.get("budget_day_usd"),
                budget_month_usd: r.get("budget_month_usd"),
                on_unreachable: r.get("on_unreachable"),
                created_at_ms: r.get("created_at_ms"),
                updated_at_ms: r.get("updated_at_ms"),
                revoked_at_ms: r.get("revoked_at_ms"),
            })
            .collect())
    }

    pub async fn upsert_tenant(&self, t: &KeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenants (tenant, tier, models, rpm, tpm, budget_day_usd,
               budget_month_usd, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant) DO UPDATE SET tier = excluded.tier, models = excluded.models,
               rpm = excluded.rpm, tpm = excluded.tpm, budget_day_usd = excluded.budget_day_usd,
               budget_month_usd = excluded.budget_month_usd, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&t.tenant)
        .bind(&t.tier)
        .bind(models(&t.models))
        .bind(t.rpm.map(i64::from))
        .bind(t.tpm.map(i64::from))
        .bind(t.budget_day_usd)
        .bind(t.budget_month_usd)
        .bind(t.created_at_ms)
        .bind(t.updated_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn tenants(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, tier, models, rpm, tpm, budget_day_usd, budget_month_usd,
               created_at_ms, updated_at_ms
             FROM tenants ORDER BY tenant",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let tenant: String = r.get("tenant");
                KeyRow {
                    tier: r.get("tier"),
                    models: serde_json::from_str(r.get::<&str, _>("models")).unwrap_or_default(),
                    rpm: u32_of(r.get("rpm")),
                    tpm: u32_of(r.get("tpm")),
                    budget_day_usd: r.get("budget_day_usd"),
                    budget_month_usd: r.get("budget_month_usd"),
                    updated_at_ms: r.get("updated_at_ms"),
                    ..KeyRow::new(
                        KeyRow::tenant_id(&tenant),
                        String::new(),
                        tenant,
                        r.get("created_at_ms"),
                    )
                }
            })
            .collect())
    }

    pub async fn spend(&self, since_ms: i64) -> Result<Vec<SpendRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT to_char(to_timestamp(started_at_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')
                      AS day, tenant, key_id, model, shadow,
                    SUM(cost_usd) AS usd, COUNT(*) AS calls
             FROM (SELECT a.started_at_ms, d.tenant, d.key_id, a.model, FALSE AS shadow, a.cost_usd
                   FROM attempts a JOIN decisions d ON d.id = a.decision_id
                   WHERE a.started_at_ms >= $1 AND a.cost_usd > 0
                   UNION ALL
                   SELECT started_at_ms, tenant, key_id, model, TRUE, cost_usd
                   FROM shadows WHERE started_at_ms >= $1 AND cost_usd > 0) AS calls
             GROUP BY day, tenant, key_id, model, shadow
             ORDER BY day, tenant, key_id, shadow, model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SpendRow {
                day: r.get("day"),
                tenant: r.get("tenant"),
                key_id: r.get("key_id"),
                model: r.get("model"),
                usd: r.get("usd"),
                calls: r.get("calls"),
                shadow: r.get("shadow"),
            })
            .collect())
    }

    pub async fn insert_shadow(&self, s: &ShadowRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO shadows (decision_id, rule, tenant, key_id, model, provider,
               outcome, error, started_at_ms, latency_ms, prompt_tokens, completion_tokens,
               cost_usd, content)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (decision_id, model) DO UPDATE SET rule = excluded.rule,
               tenant = excluded.tenant, key_id = excluded.key_id, provider = excluded.provider,
               outcome = excluded.outcome, error = excluded.error,
               started_at_ms = excluded.started_at_ms, latency_ms = excluded.latency_ms,
               prompt_tokens = excluded.prompt_tokens,
               completion_tokens = excluded.completion_tokens, cost_usd = excluded.cost_usd,
               content = excluded.content",
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
        .bind(i64::from(s.latency_ms))
        .bind(s.prompt_tokens.map(i64::from))
        .bind(s.completion_tokens.map(i64::from))
        .bind(s.cost_usd)
        .bind(&s.content)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn shadows(&self, since_ms: i64) -> Result<Vec<ShadowRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT decision_id, rule, tenant, key_id, model, provider, outcome, error,
                    started_at_ms, latency_ms, prompt_tokens, completion_tokens, cost_usd, content
             FROM shadows WHERE started_at_ms >= $1 ORDER BY started_at_ms",
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
                latency_ms: u32_of(r.get("latency_ms")).unwrap_or(u32::MAX),
                prompt_tokens: u32_of(r.get("prompt_tokens")),
                completion_tokens: u32_of(r.get("completion_tokens")),
                cost_usd: r.get("cost_usd"),
                content: r.get("content"),
            })
            .collect())
    }

    pub async fn split_outcomes(&self, since_ms: i64) -> Result<Vec<SplitOutcome>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.ab_rule, d.ab_arm, d.ab_probability,
                    COALESCE(d.served_model, d.model) AS model,
                    (SELECT AVG(reward) FROM feedback f WHERE f.decision_id = d.id) AS reward,
                    (SELECT SUM(cost_usd) FROM attempts a WHERE a.decision_id = d.id) AS cost,
                    (SELECT CAST(SUM(latency_ms) AS BIGINT) FROM attempts a
                      WHERE a.decision_id = d.id) AS latency
             FROM decisions d
             WHERE d.ab_rule IS NOT NULL AND d.created_at_ms >= $1
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

fn models(m: &[String]) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "[]".into())
}
