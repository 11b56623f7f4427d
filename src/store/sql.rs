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
     context, served_model, key_id, rules, profile, ab_rule, ab_arm, ab_probability) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) const INSERT_ATTEMPT: &str = "INSERT INTO attempts (decision_id, seq, model, provider, \
     outcome, error, http_status, started_at_ms, latency_ms, prompt_tokens, completion_tokens, \
     usage_estimated, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) const SET_SERVED: &str = "UPDATE decisions SET served_model = ? WHERE id = ?";

/// Binds one [`INSERT_DECISION`]'s parameters, in order.
pub(super) fn bind_decision<'q>(q: Q<'q>, d: &'q DecisionRow) -> Q<'q> {
    q.bind(&d.id)
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
        .bind(d.prompt_tokens)
        .bind(d.output_tokens)
        .bind(d.message_count)
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
}

/// Binds one [`INSERT_ATTEMPT`]'s parameters, in order.
pub(super) fn bind_attempt<'q>(
    q: Q<'q>,
    decision_id: &'q str,
    seq: usize,
    a: &'q AttemptRow,
) -> Q<'q> {
    q.bind(decision_id)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .bind(&a.model)
        .bind(&a.provider)
        .bind(a.outcome)
        .bind(&a.error)
        .bind(a.http_status)
        .bind(a.started_at_ms)
        .bind(a.latency_ms)
        .bind(a.prompt_tokens)
        .bind(a.completion_tokens)
        .bind(a.usage_estimated)
        .bind(a.cost_usd)
}

/// Binds one [`SET_SERVED`]'s parameters, in order.
pub(super) fn bind_served<'q>(q: Q<'q>, decision_id: &'q str, served: &'q Option<String>) -> Q<'q> {
    q.bind(served).bind(decision_id)
}
