//! The single writer: one connection, group commits, replies after commit.
//!
//! SQLite allows one writer at a time, so one task owning the write
//! connection avoids lock contention entirely. It takes every job already
//! queued (up to `max_batch`, optionally waiting `max_wait` for more) into one
//! transaction: under load many rows share one fsync, and with light load a
//! lone row commits at once. A batch of plain inserts runs as one script in
//! one round trip ([`script`]); otherwise statement by statement, where a
//! statement that fails (e.g. feedback for an unknown decision) fails only
//! its own job: SQLite rolls back just that statement, and the rest of the
//! batch commits. Under `synchronous = NORMAL` a commit holding feedback is
//! fsynced all the same, and the connection's thread idles while nobody
//! waits for it ([`super::threads`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::acklog::AckLog;
use super::rows::{AttemptRow, DecisionRow, FeedbackRow};
use super::sql::{
    INSERT_ATTEMPT, INSERT_DECISION, SET_SERVED, bind_attempt, bind_decision, bind_served,
};
use super::threads::Background;
use super::{FeedbackOutcome, StoreError, script};

pub(super) enum Write {
    /// A decision, with the attempts already made for it (Complete logs
    /// both in one commit once the provider has answered).
    Decision {
        row: Box<DecisionRow>,
        attempts: Vec<AttemptRow>,
    },
    Attempts {
        decision_id: String,
        attempts: Vec<AttemptRow>,
        served_model: Option<String>,
    },
    Feedback(FeedbackRow),
    PolicyVersion {
        version: String,
        kind: &'static str,
        params: String,
        at_ms: i64,
    },
}

pub(super) enum Done {
    Unit,
    Feedback(Box<FeedbackOutcome>),
}

pub(super) struct Job {
    pub write: Write,
    pub reply: oneshot::Sender<Result<Done, StoreError>>,
    /// Acknowledged from the journal: settle it there once committed.
    pub journaled: bool,
}

/// Resolves when the writer has committed everything queued and stopped
/// (after every `Store` clone is dropped).
pub struct Handle(JoinHandle<()>);

impl Handle {
    pub(super) fn new(task: JoinHandle<()>) -> Handle {
        Handle(task)
    }

    pub async fn finished(self) {
        let _ = self.0.await;
    }
}

/// How the writer runs, besides its connection and queue.
pub(super) struct Setup {
    /// The acknowledgement journal, under `synchronous = "normal"`.
    pub acks: Option<Arc<AckLog>>,
    /// The connection's thread, idle while nobody waits (with the journal).
    pub background: Option<Background>,
    /// fsync commits holding feedback although `synchronous` is `normal`.
    pub fsync_feedback: bool,
    pub max_batch: usize,
    pub max_wait: Duration,
}

pub(super) fn spawn(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Job>,
    setup: Setup,
) -> Handle {
    let Setup {
        acks,
        mut background,
        fsync_feedback,
        max_batch,
        max_wait,
    } = setup;
    Handle(tokio::spawn(async move {
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            fill(&mut rx, &mut batch, max_batch, max_wait).await;
            // A full batch means more are queued: the writer is behind.
            let waits = batch.len() == max_batch || batch.iter().any(|j| !j.journaled);
            let fsync =
                fsync_feedback && batch.iter().any(|j| matches!(j.write, Write::Feedback(_)));
            let committing = async {
                if fsync {
                    commit_fsynced(&mut conn, &mut batch).await
                } else {
                    commit(&mut conn, &mut batch).await
                }
            };
            let settled = match &mut background {
                Some(background) => background.run(waits, committing).await,
                None => committing.await,
            };
            if let Some(acks) = &acks {
                acks.settle(settled.0, settled.1);
            }
        }
        if let Some(acks) = &acks {
            acks.empty_if_drained();
        }
        let _ = conn.close().await;
    }))
}

/// [`commit`] with `synchronous = FULL` for this one commit: feedback is
/// what a caller hands over to be learnt from, and it is rare, so it is made
/// to survive power loss whatever `store.synchronous` says. The fsync also
/// covers every commit before it, so a decision with feedback is durable too.
async fn commit_fsynced(conn: &mut SqliteConnection, batch: &mut Vec<Job>) -> (u64, bool) {
    pragma(conn, "PRAGMA synchronous = FULL").await;
    let settled = commit(conn, batch).await;
    pragma(conn, "PRAGMA synchronous = NORMAL").await;
    settled
}

async fn pragma(conn: &mut SqliteConnection, pragma: &'static str) {
    if let Err(e) = sqlx::query(pragma).execute(&mut *conn).await {
        tracing::warn!(error = %e, pragma, "around a commit holding feedback");
    }
}

pub(super) async fn fill(
    rx: &mut mpsc::Receiver<Job>,
    batch: &mut Vec<Job>,
    max: usize,
    wait: Duration,
) {
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) if wait.is_zero() => return,
            Err(mpsc::error::TryRecvError::Empty) => {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    _ => return,
                }
            }
        }
    }
}

/// Commits `batch` and answers each job; returns how many journaled jobs it
/// held and whether all of them committed.
async fn commit(conn: &mut SqliteConnection, batch: &mut Vec<Job>) -> (u64, bool) {
    let journaled = batch.iter().filter(|j| j.journaled).count() as u64;
    if script::fits(batch) {
        match script::run(conn, batch).await {
            Ok(()) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Ok(Done::Unit));
                }
                return (journaled, true);
            }
            Err(e) => {
                // Whatever the script got through is undone; the jobs are
                // applied one by one below, failing only the one at fault.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                tracing::debug!(error = %e, "batch script failed; applying job by job");
            }
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    let outcome: Result<(), sqlx::Error> = async {
        let mut tx = conn.begin().await?;
        for job in batch.iter() {
            results.push(apply(&mut tx, &job.write).await);
        }
        tx.commit().await
    }
    .await;
    let mut results = results.into_iter();
    let mut all_ok = true;
    for job in batch.drain(..) {
        let reply = match &outcome {
            Ok(()) => results.next().unwrap_or(Err(StoreError::Closed)),
            // The transaction failed as a whole: nothing in it is durable.
            Err(e) => Err(StoreError::CommitFailed(e.to_string())),
        };
        if job.journaled
            && let Err(e) = &reply
        {
            // Nobody waits for it: say so here. The journal keeps it.
            tracing::error!(error = %e, "an acknowledged completion did not reach the database");
            all_ok = false;
        }
        let _ = job.reply.send(reply);
    }
    if let Err(e) = outcome {
        tracing::error!(error = %e, "group commit failed");
    }
    (journaled, all_ok)
}

async fn apply(conn: &mut SqliteConnection, write: &Write) -> Result<Done, StoreError> {
    match write {
        Write::Decision { row, attempts } => {
            bind_decision(sqlx::query(INSERT_DECISION), row)
                .execute(&mut *conn)
                .await?;
            for (seq, a) in attempts.iter().enumerate() {
                bind_attempt(sqlx::query(INSERT_ATTEMPT), &row.id, seq, a)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(Done::Unit)
        }
        Write::Attempts {
            decision_id,
            attempts,
            served_model,
        } => {
            for (seq, a) in attempts.iter().enumerate() {
                bind_attempt(sqlx::query(INSERT_ATTEMPT), decision_id, seq, a)
                    .execute(&mut *conn)
                    .await?;
            }
            bind_served(sqlx::query(SET_SERVED), decision_id, served_model)
                .execute(&mut *conn)
                .await?;
            Ok(Done::Unit)
        }
        Write::PolicyVersion {
            version,
            kind,
            params,
            at_ms,
        } => {
            // One version serves at a time; a version seen before keeps its row.
            sqlx::query("UPDATE policy_versions SET active = 0 WHERE active = 1")
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO policy_versions (version, kind, created_at_ms, params, active)
                 VALUES (?, ?, ?, ?, 1)
                 ON CONFLICT (version) DO UPDATE SET active = 1",
            )
            .bind(version)
            .bind(*kind)
            .bind(at_ms)
            .bind(params)
            .execute(&mut *conn)
            .await?;
            Ok(Done::Unit)
        }
        Write::Feedback(f) => upsert_feedback(conn, f)
            .await
            .map(|o| Done::Feedback(Box::new(o))),
    }
}

async fn upsert_feedback(
    conn: &mut SqliteConnection,
    f: &FeedbackRow,
) -> Result<FeedbackOutcome, StoreError> {
    // The arm that earned the reward: the routed model for Route (the caller
    // called it), the model that served after fallbacks for Complete.
    let decision = sqlx::query(
        "SELECT CASE WHEN rpc = 'route' THEN model ELSE served_model END AS arm, context
         FROM decisions WHERE id = ? AND (? IS NULL OR tenant = ?)",
    )
    .bind(&f.decision_id)
    .bind(&f.tenant)
    .bind(&f.tenant)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::DecisionNotFound(f.decision_id.clone()))?;
    let previous = sqlx::query("SELECT reward FROM feedback WHERE decision_id = ? AND source = ?")
        .bind(&f.decision_id)
        .bind(&f.source)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.get::<f64, _>(0));
    sqlx::query(
        "INSERT INTO feedback (decision_id, source, reward, created_at_ms, updated_at_ms)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (decision_id, source)
         DO UPDATE SET reward = excluded.reward, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(&f.decision_id)
    .bind(&f.source)
    .bind(f.reward)
    .bind(f.at_ms)
    .bind(f.at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(FeedbackOutcome {
        replaced: previous.is_some(),
        previous,
        arm: decision.get("arm"),
        context: decision.get("context"),
    })
}
