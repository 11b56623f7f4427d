//! Reads for offline training and evaluation, and the promotion pointer the
//! service polls. Kept apart from the request path's queries.

use sqlx::Row;

use super::{Observation, SqliteStore, StoreError};

/// One decision with its feedback and attempts joined, as training and
/// off-policy evaluation consume it.
#[derive(Debug, Clone)]
pub struct LoggedDecision {
    pub id: String,
    pub created_at_ms: i64,
    pub rpc: String,
    /// The model the policy chose (or that was pinned).
    pub model: String,
    /// The model whose answer was returned, after fallbacks (Complete only).
    pub served_model: Option<String>,
    pub pinned: bool,
    pub propensity: f64,
    pub cost_weight: f64,
    /// Little-endian f32 context vector.
    pub context: Option<Vec<u8>>,
    /// JSON array of every catalog model's numbers at decision time.
    pub candidates: String,
    pub metadata: String,
    /// Little-endian f16 embedding.
    pub features: Option<Vec<u8>>,
    /// One reward per feedback source.
    pub rewards: Vec<f64>,
    /// Sum of the attempts' costs; `None` when nothing was dispatched (Route).
    pub cost_usd: Option<f64>,
}

/// A promoted policy as the service reads it.
#[derive(Debug, Clone)]
pub struct Promotion {
    pub id: i64,
    pub version: String,
    pub policy: String,
}

/// What `promote` records.
#[derive(Debug, Clone)]
pub struct PromotionRow {
    pub version: String,
    pub at_ms: i64,
    pub forced: bool,
    pub estimate: Option<f64>,
    pub lower_bound: Option<f64>,
    pub baseline: Option<f64>,
    pub report: String,
    pub policy: String,
}

impl SqliteStore {
    /// The newest feedback time in the log (0 when there is none): the
    /// watermark a trained policy covers.
    pub async fn feedback_watermark(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(created_at_ms), 0) AS m FROM feedback")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get("m"))
    }

    /// Decisions made at or after `since_ms` that have feedback created at or
    /// before `through_ms`, in decision order.
    pub async fn logged_decisions(
        &self,
        since_ms: i64,
        through_ms: i64,
    ) -> Result<Vec<LoggedDecision>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.created_at_ms, d.rpc, d.model, d.served_model, d.pinned,
                    d.propensity, d.cost_weight, d.context, d.candidates, d.metadata, d.features,
                    (SELECT json_group_array(f.reward) FROM feedback f
                      WHERE f.decision_id = d.id AND f.created_at_ms <= ?2) AS rewards,
                    (SELECT SUM(a.cost_usd) FROM attempts a WHERE a.decision_id = d.id) AS cost
             FROM decisions d
             WHERE d.created_at_ms >= ?1
               AND EXISTS (SELECT 1 FROM feedback f
                            WHERE f.decision_id = d.id AND f.created_at_ms <= ?2)
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

    /// Rewards recorded after `after_ms` (by first recording time), as
    /// [`Store::observations`]: what a promoted policy has not seen.
    pub async fn observations_after(&self, after_ms: i64) -> Result<Vec<Observation>, StoreError> {
        let rows = sqlx::query(
            "SELECT CASE WHEN d.rpc = 'route' THEN d.model ELSE d.served_model END AS arm,
                    d.context, f.reward
             FROM feedback f JOIN decisions d ON d.id = f.decision_id
             WHERE d.context IS NOT NULL AND f.created_at_ms > ?
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

    /// Makes a policy current. Rare and operator-driven, so it writes through
    /// the read pool (SQLite serialises it against the writer task with the
    /// busy timeout) rather than through the request path's group commit.
    pub async fn record_promotion(&self, p: PromotionRow) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO policy_promotions
               (version, promoted_at_ms, forced, estimate, lower_bound, baseline, report, policy)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        Ok(row.get("id"))
    }

    /// The id of the newest promotion (0 for none): cheap enough to poll.
    pub async fn latest_promotion_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM policy_promotions")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get("id"))
    }

    /// The current (newest) promoted policy, if any.
    pub async fn current_promotion(&self) -> Result<Option<Promotion>, StoreError> {
        let row = sqlx::query(
            "SELECT id, version, policy FROM policy_promotions ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Promotion {
            id: r.get("id"),
            version: r.get("version"),
            policy: r.get("policy"),
        }))
    }
}
