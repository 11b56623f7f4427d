//! The write statements and their binds, shared by the two ways the writer
//! applies a batch (one script, or statement by statement).

use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;

use super::rows::{AttemptRow, DecisionRow};

pub(super) type Q<'q> = Query<'q, Sqlite, SqliteArguments>;

pub(super) const INSERT_DECISION: &str = "INSERT INTO decisions (id, created_at_ms, tenant, rpc, \
     model, provider, pinned, propensity, explored, policy_version, cost_weight, max_cost_usd, \
     prompt_tokens, output_tokens, message_count, features, intent, candidates, metadata, prompt, \
     context, served_model, key_id, rules, profile, ab_rule, ab_arm, ab_probability, \
     cached_from) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) const INSERT_ATTEMPT: &str = "INSERT INTO attempts (decision_id, seq, model, provider, \
     outcome, error, http_status, started_at_ms, latency_ms, prompt_tokens, completion_tokens, \
     usage_estimated, cost_usd, deployment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) const SET_SERVED: &str = "UPDATE decisions SET served_model = ? WHERE id = ?";

/// Binds one [`INSERT_DECISION`]'s parameters, in order, on either
/// backend's query (integers go as `i64`: PostgreSQL has no unsigned types).
macro_rules! decision_binds {
    ($q:expr, $d:expr) => {{
        let d = $d;
        $q.bind(&d.id)
            .bind(d.created_at_ms)
            .bind(&d.tenant)
            .bind(d.rpc)
            .bind(&d.model)
            .bind(&d.provider)
            .bind(d.pinned)
            .bind(d.propensity)
            .bind(d.explored)
            .bind(&d.policy_version)
            .bind(d.cost_weight)
            .bind(d.max_cost_usd)
            .bind(i64::from(d.prompt_tokens))
            .bind(i64::from(d.output_tokens))
            .bind(i64::from(d.message_count))
            .bind(&d.features)
            .bind(&d.intent)
            .bind(&d.candidates)
            .bind(&d.metadata)
            .bind(&d.prompt)
            .bind(&d.context)
            .bind(&d.served_model)
            .bind(&d.key_id)
            .bind(&d.rules)
            .bind(&d.profile)
            .bind(d.split.as_ref().map(|s| &s.rule))
            .bind(d.split.as_ref().map(|s| &s.arm))
            .bind(d.split.as_ref().map(|s| s.probability))
            .bind(&d.cached_from)
    }};
}

/// Binds one [`INSERT_ATTEMPT`]'s parameters, in order, on either backend's query.
macro_rules! attempt_binds {
    ($q:expr, $decision_id:expr, $seq:expr, $a:expr) => {{
        let a = $a;
        $q.bind($decision_id)
            .bind(i64::try_from($seq).unwrap_or(i64::MAX))
            .bind(&a.model)
            .bind(&a.provider)
            .bind(a.outcome)
            .bind(&a.error)
            .bind(a.http_status.map(i64::from))
            .bind(a.started_at_ms)
            .bind(i64::from(a.latency_ms))
            .bind(a.prompt_tokens.map(i64::from))
            .bind(a.completion_tokens.map(i64::from))
            .bind(a.usage_estimated)
            .bind(a.cost_usd)
            .bind(&a.deployment)
    }};
}

pub(super) use {attempt_binds, decision_binds};

/// Binds one [`INSERT_DECISION`]'s parameters, in order.
pub(super) fn bind_decision<'q>(q: Q<'q>, d: &'q DecisionRow) -> Q<'q> {
    decision_binds!(q, d)
}

/// Binds one [`INSERT_ATTEMPT`]'s parameters, in order.
pub(super) fn bind_attempt<'q>(
    q: Q<'q>,
    decision_id: &'q str,
    seq: usize,
    a: &'q AttemptRow,
) -> Q<'q> {
    attempt_binds!(q, decision_id, seq, a)
}

/// Binds one [`SET_SERVED`]'s parameters, in order.
pub(super) fn bind_served<'q>(q: Q<'q>, decision_id: &'q str, served: &'q Option<String>) -> Q<'q> {
    q.bind(served).bind(decision_id)
}

/// `sql` with its `?` placeholders numbered `$1, $2, …` for PostgreSQL
/// (the statements above hold no `?` in a literal).
pub(super) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}
