//! What the operator console and its admin API read from the log: totals,
//! time series and latency histograms over a time range, a filtered search of
//! decisions, one decision with its attempts and feedback, and the promotion
//! history. Everything is aggregated here, in SQL over indexed ranges, so a
//! page costs a few small result sets however long the log is.
//!
//! Each statement is written once, in SQL both backends accept (`$n`
//! parameters, `CAST`s where SQLite's integers are PostgreSQL's booleans or
//! numerics), and run on whichever pool holds the log.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// Runs `$body` with `$pool` bound to the backend's read pool (the body is
/// compiled once per backend).
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                let $pool = &s.pool;
                $body
            }
            Store::Postgres(s) => {
                let $pool = &s.pool;
                $body
            }
        }
    };
}

/// The rows of `$sql`, whose `$1` and `$2` are the range's ends, each read
/// by `$row`.
macro_rules! over_range {
    ($store:expr, $sql:expr, $range:expr, |$r:ident| $row:expr) => {
        on_pool!($store, |pool| {
            let rows = sqlx::query($sql)
                .bind($range.from_ms)
                .bind($range.to_ms)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(|$r| $row).collect())
        })
    };
}

/// `[from_ms, to_ms)`, in Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Decisions and their outcome per chosen model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelDecisions {
    pub model: String,
    pub requests: i64,
    /// Completions no attempt answered.
    pub failed: i64,
    /// Requests the response cache answered with this model's answer.
    pub cached: i64,
    /// What those answers cost when first given: what the cache saved.
    pub saved_usd: f64,
}

/// Provider attempts per (UTC day, tenant, key, model): calls, errors, spend.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptGroup {
    pub day: i64,
    pub tenant: String,
    pub key_id: Option<String>,
    pub model: String,
    pub attempts: i64,
    pub errors: i64,
    pub usd: f64,
}

/// One bucket of a per-model time series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    pub t_ms: i64,
    pub model: String,
    pub n: i64,
    /// Sum of rewards (reward series) or 0 (routing series).
    pub sum: f64,
}

/// How many successful attempts of `model` took `latency_ms`.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyCount {
    pub model: String,
    pub latency_ms: i64,
    pub n: i64,
}

/// A search of the log; empty strings and `None` match everything.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub range: Option<Range>,
    pub tenant: String,
    /// Chosen or served.
    pub model: String,
    /// A rule that matched (by name).
    pub rule: String,
    pub policy_version: String,
    pub has_feedback: Option<bool>,
    /// Only decisions older than this id (the previous page's last).
    pub before: String,
    pub limit: i64,
}

/// One line of the decisions explorer.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionLine {
    pub id: String,
    pub created_at_ms: i64,
    pub tenant: String,
    pub rpc: String,
    pub model: String,
    pub served_model: Option<String>,
    pub policy_version: String,
    pub rules: Option<serde_json::Value>,
    pub intent: Option<String>,
    pub explored: bool,
    pub propensity: f64,
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<i64>,
    pub reward: Option<f64>,
}

/// Everything the log holds of one decision but its vectors.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionDetail {
    #[serde(flatten)]
    pub line: DecisionLine,
    pub key_id: Option<String>,
    pub provider: String,
    pub pinned: bool,
    pub cost_weight: f64,
    pub max_cost_usd: Option<f64>,
    pub prompt_tokens: i64,
    pub output_tokens: i64,
    pub message_count: i64,
    pub candidates: serde_json::Value,
    pub metadata: serde_json::Value,
    pub profile: Option<String>,
    pub ab_rule: Option<String>,
    pub ab_arm: Option<String>,
    pub ab_probability: Option<f64>,
    /// Only when the server stores prompts.
    pub prompt: Option<String>,
    /// The decision whose answer the response cache served again.
    pub cached_from: Option<String>,
    pub attempts: Vec<AttemptLine>,
    pub feedback: Vec<FeedbackLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptLine {
    pub seq: i64,
    pub model: String,
    pub provider: String,
    pub outcome: String,
    pub error: Option<String>,
    pub http_status: Option<i64>,
    pub started_at_ms: i64,
    pub latency_ms: i64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub usage_estimated: bool,
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeedbackLine {
    pub source: String,
    pub reward: f64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One row of the promotion history (newest first: the first is current).
#[derive(Debug, Clone, Serialize)]
pub struct PromotionLine {
    pub id: i64,
    pub version: String,
    pub promoted_at_ms: i64,
    pub forced: bool,
    pub estimate: Option<f64>,
    pub lower_bound: Option<f64>,
    pub baseline: Option<f64>,
    /// The evaluation as `promote` recorded it.
    #[serde(skip)]
    pub report: String,
}

const DECISIONS_BY_MODEL: &str = "SELECT model, COUNT(*) AS n,
        CAST(SUM(CASE WHEN rpc <> 'route' AND served_model IS NULL THEN 1 ELSE 0 END) AS BIGINT)
            AS failed,
        CAST(SUM(CASE WHEN cached_from IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS cached,
        CAST(COALESCE(SUM(CASE WHEN cached_from IS NULL THEN 0 ELSE
            (SELECT COALESCE(SUM(a.cost_usd), 0) FROM attempts a
             WHERE a.decision_id = decisions.cached_from) END), 0) AS DOUBLE PRECISION)
            AS saved_usd
     FROM decisions WHERE created_at_ms >= $1 AND created_at_ms < $2
     GROUP BY model ORDER BY model";

const ATTEMPT_GROUPS: &str = "SELECT a.started_at_ms / 86400000 AS day, d.tenant, d.key_id,
        a.model, COUNT(*) AS n,
        CAST(SUM(CASE WHEN a.outcome = 'ok' THEN 0 ELSE 1 END) AS BIGINT) AS errors,
        CAST(COALESCE(SUM(a.cost_usd), 0) AS DOUBLE PRECISION) AS usd
     FROM attempts a JOIN decisions d ON d.id = a.decision_id
     WHERE a.started_at_ms >= $1 AND a.started_at_ms < $2
     GROUP BY day, d.tenant, d.key_id, a.model
     ORDER BY day, d.tenant, d.key_id, a.model";

const ROUTING_SERIES: &str = "SELECT (created_at_ms / $3) * $3 AS t, model, COUNT(*) AS n
     FROM decisions WHERE created_at_ms >= $1 AND created_at_ms < $2
     GROUP BY t, model ORDER BY t, model";

/// Rewards are credited to the model that answered, at the decision's time.
const REWARD_SERIES: &str = "SELECT (d.created_at_ms / $3) * $3 AS t,
        COALESCE(d.served_model, d.model) AS m, COUNT(*) AS n,
        CAST(SUM(f.reward) AS DOUBLE PRECISION) AS s
     FROM feedback f JOIN decisions d ON d.id = f.decision_id
     WHERE d.created_at_ms >= $1 AND d.created_at_ms < $2
     GROUP BY t, m ORDER BY t, m";

const LATENCIES: &str = "SELECT model, latency_ms, COUNT(*) AS n FROM attempts
     WHERE started_at_ms >= $1 AND started_at_ms < $2 AND outcome = 'ok'
     GROUP BY model, latency_ms ORDER BY model, latency_ms";

/// The explorer's columns; costs, latency and reward are per decision.
/// (Macros, not consts: `concat!` builds the statements as `&'static str`,
/// which is all sqlx takes.)
macro_rules! line_columns {
    () => {
        "d.id, d.created_at_ms, d.tenant, d.rpc, d.model, d.served_model,
        d.policy_version, d.rules, d.intent, CAST(d.explored AS INTEGER) AS explored, d.propensity,
        (SELECT CAST(SUM(a.cost_usd) AS DOUBLE PRECISION) FROM attempts a
            WHERE a.decision_id = d.id) AS cost_usd,
        (SELECT CAST(SUM(a.latency_ms) AS BIGINT) FROM attempts a
            WHERE a.decision_id = d.id) AS latency_ms,
        (SELECT CAST(AVG(f.reward) AS DOUBLE PRECISION) FROM feedback f
            WHERE f.decision_id = d.id) AS reward"
    };
}

/// Rules are stored as a JSON array of names, so `"name"` (quotes included)
/// matches exactly one rule.
macro_rules! search_where {
    () => {
        "d.created_at_ms >= $1 AND d.created_at_ms < $2
       AND ($3 = '' OR d.tenant = $3)
       AND ($4 = '' OR d.model = $4 OR d.served_model = $4)
       AND ($5 = '' OR d.rules LIKE $5 ESCAPE '\\')
       AND ($6 = '' OR d.policy_version = $6)
       AND ($7 < 0 OR (CASE WHEN EXISTS (SELECT 1 FROM feedback f WHERE f.decision_id = d.id)
                            THEN 1 ELSE 0 END) = $7)
       AND ($8 = '' OR d.id < $8)"
    };
}

const SEARCH: &str = concat!(
    "SELECT ",
    line_columns!(),
    " FROM decisions d WHERE ",
    search_where!(),
    " ORDER BY d.id DESC LIMIT $9"
);

const DETAIL: &str = concat!(
    "SELECT ",
    line_columns!(),
    ", d.key_id, d.provider, CAST(d.pinned AS INTEGER) AS pinned,
        d.cost_weight, d.max_cost_usd, d.prompt_tokens, d.output_tokens, d.message_count,
        d.candidates, d.metadata, d.profile, d.ab_rule, d.ab_arm, d.ab_probability, d.prompt,
        d.cached_from
     FROM decisions d WHERE d.id = $1"
);

const ATTEMPTS_OF: &str = "SELECT seq, model, provider, outcome, error,
        CAST(http_status AS BIGINT) AS http_status, started_at_ms, latency_ms,
        CAST(prompt_tokens AS BIGINT) AS prompt_tokens,
        CAST(completion_tokens AS BIGINT) AS completion_tokens,
        CAST(usage_estimated AS INTEGER) AS usage_estimated, cost_usd
     FROM attempts WHERE decision_id = $1 ORDER BY seq";

const FEEDBACK_OF: &str = "SELECT source, reward, created_at_ms, updated_at_ms
     FROM feedback WHERE decision_id = $1 ORDER BY source";

const PROMOTIONS: &str = "SELECT id, version, promoted_at_ms, CAST(forced AS INTEGER) AS forced,
        estimate, lower_bound, baseline, report
     FROM policy_promotions ORDER BY id DESC LIMIT $1";

const PROMOTION_POLICY: &str =
    "SELECT version, promoted_at_ms, CAST(forced AS INTEGER) AS forced, estimate,
        lower_bound, baseline, report, policy
     FROM policy_promotions WHERE id = $1";

fn json_or_null(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

/// Reads one explorer line from a row carrying `line_columns!()` (a macro:
/// the row's type is each backend's own).
macro_rules! decision_line {
    ($r:expr) => {{
        let r = $r;
        DecisionLine {
            id: r.get("id"),
            created_at_ms: r.get("created_at_ms"),
            tenant: r.get("tenant"),
            rpc: r.get("rpc"),
            model: r.get("model"),
            served_model: r.get("served_model"),
            policy_version: r.get("policy_version"),
            rules: json_or_null(r.get("rules")),
            intent: r.get("intent"),
            explored: r.get::<i32, _>("explored") != 0,
            propensity: r.get("propensity"),
            cost_usd: r.get("cost_usd"),
            latency_ms: r.get("latency_ms"),
            reward: r.get("reward"),
        }
    }};
}

impl Store {
    /// Decisions per chosen model made in `range`.
    pub async fn decisions_by_model(
        &self,
        range: Range,
    ) -> Result<Vec<ModelDecisions>, StoreError> {
        over_range!(self, DECISIONS_BY_MODEL, range, |r| ModelDecisions {
            model: r.get("model"),
            requests: r.get("n"),
            failed: r.get("failed"),
            cached: r.get("cached"),
            saved_usd: r.get("saved_usd"),
        })
    }

    /// Attempts started in `range`, grouped by UTC day, tenant, key and model.
    pub async fn attempt_groups(&self, range: Range) -> Result<Vec<AttemptGroup>, StoreError> {
        over_range!(self, ATTEMPT_GROUPS, range, |r| AttemptGroup {
            day: r.get("day"),
            tenant: r.get("tenant"),
            key_id: r.get("key_id"),
            model: r.get("model"),
            attempts: r.get("n"),
            errors: r.get("errors"),
            usd: r.get("usd"),
        })
    }

    /// Decisions per chosen model per `bucket_ms` (routing share over time).
    pub async fn routing_series(
        &self,
        range: Range,
        bucket_ms: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        self.series(ROUTING_SERIES, "model", None, range, bucket_ms)
            .await
    }

    /// Feedback count and reward sum per answering model per `bucket_ms`.
    pub async fn reward_series(
        &self,
        range: Range,
        bucket_ms: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        self.series(REWARD_SERIES, "m", Some("s"), range, bucket_ms)
            .await
    }

    async fn series(
        &self,
        sql: &'static str,
        model: &str,
        sum: Option<&str>,
        range: Range,
        bucket_ms: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let bucket_ms = bucket_ms.max(1);
        on_pool!(self, |pool| {
            let rows = sqlx::query(sql)
                .bind(range.from_ms)
                .bind(range.to_ms)
                .bind(bucket_ms)
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .map(|r| SeriesPoint {
                    t_ms: r.get("t"),
                    model: r.get(model),
                    n: r.get("n"),
                    sum: sum.map_or(0.0, |c| r.get(c)),
                })
                .collect())
        })
    }

    /// Successful attempts in `range` per (model, latency in ms): an exact
    /// histogram, small however many attempts there were.
    pub async fn latency_histogram(&self, range: Range) -> Result<Vec<LatencyCount>, StoreError> {
        over_range!(self, LATENCIES, range, |r| LatencyCount {
            model: r.get("model"),
            latency_ms: r.get("latency_ms"),
            n: r.get("n"),
        })
    }

    /// Decisions matching `f`, newest first.
    pub async fn search_decisions(
        &self,
        f: &DecisionFilter,
    ) -> Result<Vec<DecisionLine>, StoreError> {
        let range = f.range.unwrap_or(Range {
            from_ms: 0,
            to_ms: i64::MAX,
        });
        let rule = if f.rule.is_empty() {
            String::new()
        } else {
            // LIKE's own wildcards in a name match only themselves.
            let escaped = f
                .rule
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%\"{escaped}\"%")
        };
        let has_feedback = f.has_feedback.map_or(-1i64, i64::from);
        on_pool!(self, |pool| {
            let rows = sqlx::query(SEARCH)
                .bind(range.from_ms)
                .bind(range.to_ms)
                .bind(&f.tenant)
                .bind(&f.model)
                .bind(&rule)
                .bind(&f.policy_version)
                .bind(has_feedback)
                .bind(&f.before)
                .bind(f.limit.clamp(1, 500))
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(|r| decision_line!(r)).collect())
        })
    }

    /// One decision with its attempts and feedback.
    pub async fn decision_detail(&self, id: &str) -> Result<Option<DecisionDetail>, StoreError> {
        on_pool!(self, |pool| {
            let Some(r) = sqlx::query(DETAIL).bind(id).fetch_optional(pool).await? else {
                return Ok(None);
            };
            let attempts = sqlx::query(ATTEMPTS_OF).bind(id).fetch_all(pool).await?;
            let feedback = sqlx::query(FEEDBACK_OF).bind(id).fetch_all(pool).await?;
            Ok(Some(DecisionDetail {
                line: decision_line!(&r),
                key_id: r.get("key_id"),
                provider: r.get("provider"),
                pinned: r.get::<i32, _>("pinned") != 0,
                cost_weight: r.get("cost_weight"),
                max_cost_usd: r.get("max_cost_usd"),
                prompt_tokens: r.get("prompt_tokens"),
                output_tokens: r.get("output_tokens"),
                message_count: r.get("message_count"),
                candidates: json_or_null(r.get("candidates")).unwrap_or_default(),
                metadata: json_or_null(r.get("metadata")).unwrap_or_default(),
                profile: r.get("profile"),
                ab_rule: r.get("ab_rule"),
                ab_arm: r.get("ab_arm"),
                ab_probability: r.get("ab_probability"),
                prompt: r.get("prompt"),
                cached_from: r.get("cached_from"),
                attempts: attempts
                    .iter()
                    .map(|a| AttemptLine {
                        seq: a.get("seq"),
                        model: a.get("model"),
                        provider: a.get("provider"),
                        outcome: a.get("outcome"),
                        error: a.get("error"),
                        http_status: a.get("http_status"),
                        started_at_ms: a.get("started_at_ms"),
                        latency_ms: a.get("latency_ms"),
                        prompt_tokens: a.get("prompt_tokens"),
                        completion_tokens: a.get("completion_tokens"),
                        usage_estimated: a.get::<i32, _>("usage_estimated") != 0,
                        cost_usd: a.get("cost_usd"),
                    })
                    .collect(),
                feedback: feedback
                    .iter()
                    .map(|f| FeedbackLine {
                        source: f.get("source"),
                        reward: f.get("reward"),
                        created_at_ms: f.get("created_at_ms"),
                        updated_at_ms: f.get("updated_at_ms"),
                    })
                    .collect(),
            }))
        })
    }

    /// The newest `limit` promotions, newest (current) first.
    pub async fn promotions(&self, limit: i64) -> Result<Vec<PromotionLine>, StoreError> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(PROMOTIONS).bind(limit).fetch_all(pool).await?;
            Ok(rows
                .iter()
                .map(|r| PromotionLine {
                    id: r.get("id"),
                    version: r.get("version"),
                    promoted_at_ms: r.get("promoted_at_ms"),
                    forced: r.get::<i32, _>("forced") != 0,
                    estimate: r.get("estimate"),
                    lower_bound: r.get("lower_bound"),
                    baseline: r.get("baseline"),
                    report: r.get("report"),
                })
                .collect())
        })
    }

    /// Promotion `id` as it was recorded (to record again: a rollback).
    pub async fn promotion_row(&self, id: i64) -> Result<Option<super::PromotionRow>, StoreError> {
        on_pool!(self, |pool| {
            let r = sqlx::query(PROMOTION_POLICY)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(r.map(|r| super::PromotionRow {
                version: r.get("version"),
                at_ms: r.get("promoted_at_ms"),
                forced: r.get::<i32, _>("forced") != 0,
                estimate: r.get("estimate"),
                lower_bound: r.get("lower_bound"),
                baseline: r.get("baseline"),
                report: r.get("report"),
                policy: r.get("policy"),
            }))
        })
    }
}

/// Per-model totals of a range's attempt groups: (attempts, errors, usd).
pub fn by_model(groups: &[AttemptGroup]) -> BTreeMap<String, (i64, i64, f64)> {
    let mut out: BTreeMap<String, (i64, i64, f64)> = BTreeMap::new();
    for g in groups {
        let e = out.entry(g.model.clone()).or_default();
        e.0 += g.attempts;
        e.1 += g.errors;
        e.2 += g.usd;
    }
    out
}
