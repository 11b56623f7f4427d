//! The SQLite backend: one writer task owning the write connection (WAL),
//! group commits, the acknowledgement journal under `synchronous = "normal"`,
//! and a small pool of read connections beside it.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::acklog::{self, AckLog};
use super::rows::{AttemptRow, DecisionRow, FeedbackRow};
use super::sql::{INSERT_ATTEMPT, INSERT_DECISION, bind_attempt, bind_decision};
use super::writer::{self, Job, Write};
use super::{
    FailedAttempt, FeedbackOutcome, Observation, Pending, StoreError, StoredDecision, threads,
};

use crate::config::{StoreConfig, Synchronous};

/// Writers wait at most this long for a lock held by another process
/// (e.g. an operator's `sqlite3` shell or a training job reading the log).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// WAL pages between checkpoints when commits run behind the journal.
const JOURNALED_CHECKPOINT_PAGES: &str = "100";
/// Queued writes before callers wait: bounds memory under a write storm.
const WRITE_QUEUE: usize = 4096;

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    jobs: mpsc::Sender<Job>,
    /// With `synchronous = "normal"`: where a Complete is acknowledged
    /// before SQLite commits it ([`acklog`]).
    acks: Option<Arc<AckLog>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database, applies `migrations/`, and
    /// starts the writer task.
    pub async fn open(
        path: &Path,
        cfg: &StoreConfig,
    ) -> Result<(SqliteStore, writer::Handle), StoreError> {
        Self::open_with(path, cfg, BUSY_TIMEOUT).await
    }

    /// [`SqliteStore::open`] with another wait for a lock another process holds:
    /// offline tools writing beside a busy server (`promote`) wait longer
    /// than the service, which must answer quickly.
    pub async fn open_with(
        path: &Path,
        cfg: &StoreConfig,
        busy_timeout: Duration,
    ) -> Result<(SqliteStore, writer::Handle), StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match cfg.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // Under "full" the journal is only read, if a "normal" run left one.
        let journaled = cfg.synchronous == Synchronous::Normal;
        let opened = if journaled || acklog::path_of(path).exists() {
            AckLog::open(path)?
        } else {
            None
        };
        let acks = match opened {
            Some((log, entries)) => {
                replay(&pool, &entries).await?;
                log.empty_if_drained();
                journaled.then(|| Arc::new(log))
            }
            None if journaled => {
                tracing::info!(
                    "another process holds the acknowledgement journal; committing directly"
                );
                None
            }
            None => None,
        };
        let before = threads::sqlx_workers();
        let opts = match acks {
            // Checkpoints no request waits for: small and often measured
            // gentler on the requests' cores than SQLite's 1,000 pages.
            Some(_) => opts.pragma("wal_autocheckpoint", JOURNALED_CHECKPOINT_PAGES),
            None => opts,
        };
        let conn = sqlx::ConnectOptions::connect(&opts).await?;
        // Most commits then have nobody waiting: they (and SQLite's
        // checkpoints) yield the cores to requests on a busy machine.
        let background = acks.as_ref().map(|_| {
            threads::Background::new(threads::sqlx_workers().difference(&before).copied())
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let handle = writer::spawn(
            conn,
            rx,
            writer::Setup {
                acks: acks.clone(),
                background,
                fsync_feedback: cfg.synchronous == Synchronous::Normal,
                max_batch: cfg.max_batch,
                max_wait: cfg.max_batch_wait,
            },
        );
        Ok((
            SqliteStore {
                pool,
                jobs: tx,
                acks,
            },
            handle,
        ))
    }

    async fn submit(&self, write: Write) -> Result<writer::Done, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                write,
                reply,
                journaled: false,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Durably records a decision; returns after its commit.
    pub async fn record_decision(&self, row: DecisionRow) -> Result<(), StoreError> {
        self.begin_decision(row).await?.committed().await
    }

    /// Durably records a decision together with the attempts made for it,
    /// in one commit: what Complete logs once the provider has answered.
    /// With the acknowledgement journal it returns once the journal holds
    /// them, and SQLite commits them just after (feedback queued later still
    /// finds them: the writer keeps queue order).
    pub async fn record_decision_with_attempts(
        &self,
        row: DecisionRow,
        attempts: Vec<AttemptRow>,
    ) -> Result<(), StoreError> {
        if let Some(acks) = &self.acks {
            acks.append(&row, &attempts)?;
        }
        let write = Write::Decision {
            row: Box::new(row),
            attempts,
        };
        if self.acks.is_none() {
            return self.submit(write).await.map(|_| ());
        }
        // Nobody waits for this reply: the journal already holds the rows.
        let (reply, _) = oneshot::channel();
        self.jobs
            .send(Job {
                write,
                reply,
                journaled: true,
            })
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Queues a decision for the next group commit and returns without
    /// waiting for it, so the caller can overlap the commit with a provider
    /// call. Writes are applied in queue order, so attempts queued after it
    /// never precede it; the caller must await [`Pending::committed`] before
    /// acknowledging anything about the decision.
    pub async fn begin_decision(&self, row: DecisionRow) -> Result<Pending, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                write: Write::Decision {
                    row: Box::new(row),
                    attempts: Vec::new(),
                },
                reply,
                journaled: false,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending(rx))
    }

    /// Durably records a request's provider attempts and which model served.
    pub async fn record_attempts(
        &self,
        decision_id: String,
        attempts: Vec<AttemptRow>,
        served_model: Option<String>,
    ) -> Result<(), StoreError> {
        self.submit(Write::Attempts {
            decision_id,
            attempts,
            served_model,
        })
        .await
        .map(|_| ())
    }

    /// Durably records feedback; (decision, source) replaces an earlier value.
    pub async fn record_feedback(&self, row: FeedbackRow) -> Result<FeedbackOutcome, StoreError> {
        match self.submit(Write::Feedback(row)).await? {
            writer::Done::Feedback(o) => Ok(*o),
            writer::Done::Unit => unreachable!("feedback write returns a feedback outcome"),
        }
    }

    pub async fn decision(&self, id: &str) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(
            "SELECT d.id, d.tenant, d.model, d.served_model, d.propensity, d.policy_version,
                    d.features, d.intent,
                    (SELECT COUNT(*) FROM attempts a WHERE a.decision_id = d.id) AS attempts
             FROM decisions d WHERE d.id = ?",
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

    /// All feedback of a decision as (source, reward), by source.
    pub async fn feedback(&self, decision_id: &str) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, reward FROM feedback WHERE decision_id = ? ORDER BY source",
        )
        .bind(decision_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("source"), r.get("reward")))
            .collect())
    }

    /// Every (decision, source) reward with a context and a serving model, in
    /// decision order: the log a policy's sufficient statistics are sums over.
    pub async fn observations(&self) -> Result<Vec<Observation>, StoreError> {
        self.observations_after(i64::MIN).await
    }

    /// Every failed attempt (outcome `error` or `timeout`) of a model at a
    /// decision it did not end up serving, with the decision's context,
    /// ordered by (decision, model). Whose fault each was is not the log's to
    /// say: callers ask `dispatch::Blame`.
    pub async fn failed_attempts(&self) -> Result<Vec<FailedAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.decision_id, a.model, d.context, a.http_status
             FROM attempts a JOIN decisions d ON d.id = a.decision_id
             WHERE d.context IS NOT NULL
               AND a.outcome IN ('error', 'timeout')
               AND a.model IS NOT COALESCE(d.served_model, '')
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

    /// Records the parameters behind a policy version and marks it serving.
    pub async fn record_policy_version(
        &self,
        version: String,
        kind: &'static str,
        params: String,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.submit(Write::PolicyVersion {
            version,
            kind,
            params,
            at_ms,
        })
        .await
        .map(|_| ())
    }

    /// The serving policy version and its parameters, if any was recorded.
    pub async fn active_policy(&self) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT version, params FROM policy_versions WHERE active = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get("version"), r.get("params"))))
    }

    /// (model, intent, sum of completion tokens, answers) over successful attempts.
    pub async fn completion_token_sums(
        &self,
    ) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.model, COALESCE(d.intent, '') AS intent,
                    SUM(a.completion_tokens) AS s, COUNT(*) AS n
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

    /// A cheap write-path check for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Readiness: the writer task is alive and the database file takes a
    /// write lock (`BEGIN IMMEDIATE`, then rolled back: nothing is written).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        if self.jobs.is_closed() {
            return Err(StoreError::Closed);
        }
        // A transaction object rolls back even if this future is dropped
        // half-way (a probe timeout), so the write lock cannot leak.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        tx.rollback().await?;
        Ok(())
    }

    /// Closes the read pool. The writer drains and stops once every `Store`
    /// clone is dropped; await its handle to know the last commit is done.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// Inserts what an acknowledgement journal held (rows a crash kept from
/// SQLite; those that did reach it are left as they are).
async fn replay(pool: &SqlitePool, entries: &[acklog::Entry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let insert_decision = INSERT_DECISION.replacen("INSERT", "INSERT OR IGNORE", 1);
    let mut tx = pool.begin().await?;
    let mut replayed = 0;
    for e in entries {
        let q = sqlx::query(sqlx::AssertSqlSafe(insert_decision.clone()));
        let inserted = bind_decision(q, &e.decision).execute(&mut *tx).await?;
        // A decision already there was committed with its attempts.
        if inserted.rows_affected() == 0 {
            continue;
        }
        replayed += 1;
        for (seq, a) in e.attempts.iter().enumerate() {
            bind_attempt(sqlx::query(INSERT_ATTEMPT), &e.decision.id, seq, a)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    tracing::info!(
        entries = entries.len(),
        replayed,
        "replayed the acknowledgement journal"
    );
    Ok(())
}
