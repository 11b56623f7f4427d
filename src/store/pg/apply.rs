//! Applying journal-shaped writes to PostgreSQL, a batch per transaction.
//!
//! Every write is idempotent, so a journal replayed after a crash (some of
//! it already committed) changes nothing twice: a decision already there is
//! skipped with its attempts, an attempt already there adds no spend and no
//! observation, and feedback older than (or equal to) the stored value is
//! left alone. Besides the log itself a batch writes what replicas share:
//! the observations every learner follows (`learn_events`, numbered under
//! the lock of `learn_seq`, taken first so that locks are always taken in
//! one order) and spend per key and day (`key_spend`, added in key order at
//! the end for the same reason).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::{Connection, PgConnection, Row};

use super::super::rows::{AttemptRow, FeedbackRow};
use super::super::sql::{INSERT_ATTEMPT, INSERT_DECISION, SET_SERVED, numbered};
use super::super::sql::{attempt_binds, decision_binds};
use super::super::{FeedbackOutcome, KeyRow};
use super::journal::Entry;
use crate::dispatch::Blame;

static DECISION: LazyLock<String> =
    LazyLock::new(|| numbered(INSERT_DECISION) + " ON CONFLICT (id) DO NOTHING");
static ATTEMPT: LazyLock<String> =
    LazyLock::new(|| numbered(INSERT_ATTEMPT) + " ON CONFLICT (decision_id, seq) DO NOTHING");
static SERVED: LazyLock<String> = LazyLock::new(|| numbered(SET_SERVED));

/// What applying one write did.
pub(super) enum Applied {
    Unit,
    Feedback(FeedbackOutcome),
    /// Its decision is not in the database (yet: another replica may
    /// still hold it in its journal).
    Missing,
    /// Its decision is another tenant's: never applied, however long it waits.
    Foreign,
}

/// What a batch adds beside its rows: the next observation numbers and spend.
struct Shared {
    /// The last number taken from `learn_seq` (locked), if this batch may learn.
    seq: Option<i64>,
    taken: bool,
    spend: BTreeMap<(String, String), f64>,
}

/// Applies `entries` in one transaction; an error undoes all of them.
pub(super) async fn batch(
    conn: &mut PgConnection,
    entries: &[Entry],
) -> Result<Vec<Applied>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut shared = Shared {
        seq: None,
        taken: false,
        spend: BTreeMap::new(),
    };
    if entries.iter().any(may_learn) {
        let row = sqlx::query("SELECT n FROM learn_seq FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        shared.seq = Some(row.get(0));
    }
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        out.push(apply(&mut tx, e, &mut shared).await?);
    }
    for ((id, day), usd) in &shared.spend {
        sqlx::query(
            "INSERT INTO key_spend (id, day, usd) VALUES ($1, $2, $3)
             ON CONFLICT (id, day) DO UPDATE SET usd = key_spend.usd + excluded.usd",
        )
        .bind(id)
        .bind(day)
        .bind(usd)
        .execute(&mut *tx)
        .await?;
    }
    if let (Some(n), true) = (shared.seq, shared.taken) {
        sqlx::query("UPDATE learn_seq SET n = $1")
            .bind(n)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// Whether applying `e` may write an observation (and so needs `learn_seq`).
fn may_learn(e: &Entry) -> bool {
    let failed = |a: &[AttemptRow]| a.iter().any(|a| matches!(a.outcome, "error" | "timeout"));
    match e {
        Entry::Feedback(_) => true,
        Entry::Decision { attempts, .. } | Entry::Attempts { attempts, .. } => failed(attempts),
    }
}

async fn apply(
    conn: &mut PgConnection,
    e: &Entry,
    shared: &mut Shared,
) -> Result<Applied, sqlx::Error> {
    match e {
        Entry::Decision { row, attempts } => {
            let inserted = decision_binds!(sqlx::query(DECISION.as_str()), &**row)
                .execute(&mut *conn)
                .await?;
            // Already there: committed before a crash, with its attempts.
            if inserted.rows_affected() == 1 {
                let of = Of {
                    id: &row.id,
                    tenant: &row.tenant,
                    key_id: row.key_id.as_deref(),
                    context: row.context.as_deref(),
                    served: row.served_model.as_deref(),
                };
                insert_attempts(conn, shared, &of, attempts).await?;
            }
            Ok(Applied::Unit)
        }
        Entry::Attempts {
            decision_id,
            attempts,
            served_model,
        } => {
            let Some(d) =
                sqlx::query("SELECT tenant, key_id, context FROM decisions WHERE id = $1")
                    .bind(decision_id)
                    .fetch_optional(&mut *conn)
                    .await?
            else {
                return Ok(Applied::Missing);
            };
            let (tenant, key_id, context): (String, Option<String>, Option<Vec<u8>>) =
                (d.get(0), d.get(1), d.get(2));
            let of = Of {
                id: decision_id,
                tenant: &tenant,
                key_id: key_id.as_deref(),
                context: context.as_deref(),
                served: served_model.as_deref(),
            };
            insert_attempts(conn, shared, &of, attempts).await?;
            sqlx::query(SERVED.as_str())
                .bind(served_model)
                .bind(decision_id)
                .execute(&mut *conn)
                .await?;
            Ok(Applied::Unit)
        }
        Entry::Feedback(f) => feedback(conn, shared, f).await,
    }
}

/// The decision some attempts belong to.
struct Of<'a> {
    id: &'a str,
    tenant: &'a str,
    key_id: Option<&'a str>,
    context: Option<&'a [u8]>,
    served: Option<&'a str>,
}

/// Inserts attempts; those new to the log add their cost to the key's and
/// tenant's spend, and a provider's failure at a decision another model
/// served (or none did) is an observation, once per model: the rule
/// `learn::failure_observations` applies to the whole log.
async fn insert_attempts(
    conn: &mut PgConnection,
    shared: &mut Shared,
    of: &Of<'_>,
    attempts: &[AttemptRow],
) -> Result<(), sqlx::Error> {
    let mut failed: Vec<&str> = Vec::new();
    for (seq, a) in attempts.iter().enumerate() {
        let done = attempt_binds!(sqlx::query(ATTEMPT.as_str()), of.id, seq, a)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            continue;
        }
        if let Some(usd) = a.cost_usd.filter(|c| *c > 0.0) {
            let day = crate::clock::utc_day(a.started_at_ms);
            let ids = of.key_id.map(str::to_owned).into_iter();
            for id in ids.chain([KeyRow::tenant_id(of.tenant)]) {
                *shared.spend.entry((id, day.clone())).or_default() += usd;
            }
        }
        let provider_failed = matches!(a.outcome, "error" | "timeout")
            && Blame::of_status(a.http_status) == Blame::Provider;
        if provider_failed && Some(a.model.as_str()) != of.served && !failed.contains(&&*a.model) {
            failed.push(&a.model);
        }
    }
    if let Some(context) = of.context {
        for model in failed {
            let event = Event {
                kind: "failure",
                decision_id: of.id,
                arm: model,
                context,
                reward: None,
                previous: None,
                at_ms: crate::clock::now_ms(),
            };
            event.insert(conn, shared).await?;
        }
    }
    Ok(())
}

async fn feedback(
    conn: &mut PgConnection,
    shared: &mut Shared,
    f: &FeedbackRow,
) -> Result<Applied, sqlx::Error> {
    // The arm that earned the reward: the routed model for Route (the caller
    // called it), the model that served after fallbacks for Complete.
    let Some(d) = sqlx::query(
        "SELECT CASE WHEN rpc = 'route' THEN model ELSE served_model END AS arm, context, tenant
         FROM decisions WHERE id = $1",
    )
    .bind(&f.decision_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Applied::Missing);
    };
    let (arm, context, tenant): (Option<String>, Option<Vec<u8>>, String) =
        (d.get(0), d.get(1), d.get(2));
    if f.tenant.as_ref().is_some_and(|t| *t != tenant) {
        return Ok(Applied::Foreign);
    }
    let before = sqlx::query(
        "SELECT reward, updated_at_ms FROM feedback WHERE decision_id = $1 AND source = $2",
    )
    .bind(&f.decision_id)
    .bind(&f.source)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| (r.get::<f64, _>(0), r.get::<i64, _>(1)));
    let previous = before.map(|b| b.0);
    // A journal replayed twice, or a value older than the stored one: keep it.
    let stale = before.is_some_and(|(r, at)| at > f.at_ms || (at == f.at_ms && r == f.reward));
    if !stale {
        sqlx::query(
            "INSERT INTO feedback (decision_id, source, reward, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (decision_id, source)
             DO UPDATE SET reward = excluded.reward, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&f.decision_id)
        .bind(&f.source)
        .bind(f.reward)
        .bind(f.at_ms)
        .execute(&mut *conn)
        .await?;
        if let (Some(arm), Some(context)) = (&arm, &context) {
            let event = Event {
                kind: "feedback",
                decision_id: &f.decision_id,
                arm,
                context,
                reward: Some(f.reward),
                previous,
                at_ms: f.at_ms,
            };
            event.insert(conn, shared).await?;
        }
    }
    Ok(Applied::Feedback(FeedbackOutcome {
        replaced: previous.is_some(),
        previous,
        arm,
        context,
    }))
}

/// One observation for every replica's learner.
struct Event<'a> {
    kind: &'static str,
    decision_id: &'a str,
    arm: &'a str,
    context: &'a [u8],
    reward: Option<f64>,
    previous: Option<f64>,
    at_ms: i64,
}

impl Event<'_> {
    async fn insert(
        &self,
        conn: &mut PgConnection,
        shared: &mut Shared,
    ) -> Result<(), sqlx::Error> {
        let Some(n) = shared.seq.as_mut() else {
            // may_learn() said this batch could not learn: a bug, not data.
            tracing::error!(
                kind = self.kind,
                "an observation outside the learn_seq lock"
            );
            return Ok(());
        };
        *n += 1;
        shared.taken = true;
        sqlx::query(
            "INSERT INTO learn_events (seq, at_ms, kind, decision_id, arm, context, reward, previous)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(*n)
        .bind(self.at_ms)
        .bind(self.kind)
        .bind(self.decision_id)
        .bind(self.arm)
        .bind(self.context)
        .bind(self.reward)
        .bind(self.previous)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
