//! The PostgreSQL backend: any number of replicas share one database.
//!
//! Writes go through one writer task per replica ([`writer`]) that group
//! commits to PostgreSQL and replies after the commit; while the database is
//! away they are acknowledged from this replica's local journal
//! ([`journal`]) and applied once it is back. Besides the log, a commit
//! writes what replicas share ([`apply`]): the numbered observations every
//! replica's learner follows, and spend per key and day for budgets. Reads
//! go through the pool ([`reads`]).

mod apply;
mod journal;
mod reads;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::{mpsc, oneshot};

pub use reads::LearnEvent;

use super::rows::{AttemptRow, DecisionRow, FeedbackRow};
use super::writer::{self as sqlite_writer, Done, Job, Write};
use super::{FeedbackOutcome, Observation, Pending, StoreError};
use crate::config::{StoreConfig, Synchronous};
use journal::Journal;

/// Queued writes before callers wait: bounds memory under a write storm.
const WRITE_QUEUE: usize = 4096;

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    jobs: mpsc::Sender<Job>,
    journal: Arc<Journal>,
}

/// Where a replica keeps its journal: beside `server.database`.
pub fn journal_path(database: &Path) -> PathBuf {
    let mut p = database.as_os_str().to_owned();
    p.push("-pg-journal");
    PathBuf::from(p)
}

impl PgStore {
    /// Connects to `cfg.url`, applies `migrations/postgres/` (replicas
    /// starting together take turns: sqlx holds an advisory lock), takes this
    /// replica's journal beside `database`, and starts the writer. Writes the
    /// journal still holds from an earlier run are applied first.
    pub async fn open(
        database: &Path,
        cfg: &StoreConfig,
    ) -> Result<(PgStore, sqlite_writer::Handle), StoreError> {
        let statement_timeout = cfg.statement_timeout.as_millis().to_string();
        let opts = PgConnectOptions::from_str(&cfg.url)?
            .application_name("switchyard")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(cfg.pool_max)
            .acquire_timeout(cfg.connect_timeout)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let journal = Arc::new(Journal::open(
            &journal_path(database),
            cfg.journal_max_bytes,
            cfg.synchronous == Synchronous::Full,
        )?);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let handle = writer::spawn(
            rx,
            writer::Setup {
                pool: pool.clone(),
                journal: Arc::clone(&journal),
                max_batch: cfg.max_batch,
                max_wait: cfg.max_batch_wait,
            },
        );
        Ok((
            PgStore {
                pool,
                jobs: tx,
                journal,
            },
            handle,
        ))
    }

    async fn submit(&self, write: Write) -> Result<Done, StoreError> {
        self.begin(write)
            .await?
            .0
            .await
            .map_err(|_| StoreError::Closed)?
    }

    async fn begin(&self, write: Write) -> Result<Pending, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                write,
                reply,
                journaled: false,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending(rx))
    }

    pub async fn record_decision(&self, row: DecisionRow) -> Result<(), StoreError> {
        self.begin_decision(row).await?.committed().await
    }

    pub async fn record_decision_with_attempts(
        &self,
        row: DecisionRow,
        attempts: Vec<AttemptRow>,
    ) -> Result<(), StoreError> {
        self.submit(Write::Decision {
            row: Box::new(row),
            attempts,
        })
        .await
        .map(|_| ())
    }

    pub async fn begin_decision(&self, row: DecisionRow) -> Result<Pending, StoreError> {
        self.begin(Write::Decision {
            row: Box::new(row),
            attempts: Vec::new(),
        })
        .await
    }

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

    pub async fn record_feedback(&self, row: FeedbackRow) -> Result<FeedbackOutcome, StoreError> {
        match self.submit(Write::Feedback(row)).await? {
            Done::Feedback(o) => Ok(*o),
            Done::Unit => unreachable!("feedback write returns a feedback outcome"),
        }
    }

    pub async fn observations(&self) -> Result<Vec<Observation>, StoreError> {
        self.observations_after(i64::MIN).await
    }

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

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Readiness: the writer is alive and writes are taken, by the database
    /// or, while it is away, by the journal (which must have room left).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        if self.jobs.is_closed() {
            return Err(StoreError::Closed);
        }
        let ping = tokio::time::timeout(std::time::Duration::from_millis(500), self.ping());
        match ping.await.unwrap_or(Err(StoreError::Closed)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let (_, bytes, max) = self.journal.usage();
                if bytes * 10 >= max * 9 {
                    return Err(e);
                }
                tracing::warn!(error = %e, journal_bytes = bytes, "ready on the journal: the database is unreachable");
                Ok(())
            }
        }
    }

    /// Writes acknowledged but not yet in the database, and the journal's bytes.
    pub fn journal_backlog(&self) -> (usize, u64) {
        let (n, bytes, _) = self.journal.usage();
        (n, bytes)
    }

    /// Nothing to close here: the writer closes the pool once it has
    /// committed (or journaled) everything queued.
    pub async fn close(self) {}
}
