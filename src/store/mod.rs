//! The decision log: the only module that knows the schema. [`Store`] is the
//! interface the rest of the crate sees, an enum over backends, each of which
//! must pass the conformance suite (`tests/it/store_conformance.rs`); the
//! SQLite backend ([`sqlite`]) is the first.
//!
//! In SQLite, writes go through one writer task ([`writer`]) that group-commits whatever
//! is queued and replies to each caller only after its commit, so anything
//! acknowledged to a client is on disk: with `synchronous = FULL` it survives
//! power loss, with `NORMAL` (the default) a process crash (`kill -9`), and
//! feedback power loss too. Under `NORMAL` a Complete is acknowledged from
//! the acknowledgement journal ([`acklog`]) instead, before its commit.
//! Reads use a small pool of separate connections; WAL lets them run beside
//! the writer.

mod acklog;
pub mod codec;
pub mod console;
mod frame;
mod keys;
mod offline;
mod pg;
mod rows;
mod rules;
mod script;
mod sql;
mod sqlite;
mod threads;
mod writer;

use std::path::Path;
use std::time::Duration;

use tokio::sync::oneshot;

pub use keys::{KeyRow, SpendRow};
pub use offline::{LoggedDecision, Promotion, PromotionRow};
pub use pg::{LearnEvent, PgStore};
pub use rows::{AttemptRow, DecisionRow, FeedbackRow, SplitRow};
pub use rules::{ShadowRow, SplitOutcome};
pub use sqlite::SqliteStore;
pub use writer::Handle as WriterHandle;

use crate::config::{StoreBackend, StoreConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("decision {0} not found")]
    DecisionNotFound(String),
    #[error("commit failed, nothing in it was written: {0}")]
    CommitFailed(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("acknowledgement journal: {0}")]
    Journal(#[from] std::io::Error),
    #[error("the journal {0} is full while the database is unreachable")]
    JournalFull(String),
}

/// A logged attempt that failed, at a decision another model served (or none).
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    pub decision_id: String,
    pub model: String,
    /// The decision's context, as [`codec::pack_f32`] wrote it.
    pub context: Vec<u8>,
    pub http_status: Option<u16>,
}

/// Result of recording a feedback value, with what learning needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackOutcome {
    /// An earlier value for the same (decision, source) was replaced.
    pub replaced: bool,
    /// The replaced value.
    pub previous: Option<f64>,
    /// The model that earned the reward; `None` when nothing served.
    pub arm: Option<String>,
    /// The decision's context vector (little-endian f32).
    pub context: Option<Vec<u8>>,
}

/// One rewarded decision, for rebuilding a policy's state from the log.
#[derive(Debug, Clone)]
pub struct Observation {
    pub arm: String,
    pub context: Vec<u8>,
    pub reward: f64,
}

/// A decision as read back from the log.
#[derive(Debug, Clone)]
pub struct StoredDecision {
    pub id: String,
    pub tenant: String,
    pub model: String,
    pub served_model: Option<String>,
    pub propensity: f64,
    pub policy_version: String,
    pub attempts: i64,
    /// The classifier's embedding, packed as little-endian f16.
    pub features: Option<Vec<u8>>,
    pub intent: Option<String>,
}

/// The decision log, whichever backend holds it. Every backend passes the
/// conformance suite (`tests/it/store_conformance.rs`); the engine, learning
/// and the offline tools only see this type.
#[derive(Clone)]
pub enum Store {
    /// An embedded SQLite file (the default).
    Sqlite(SqliteStore),
    /// A PostgreSQL database shared by replicas.
    Postgres(PgStore),
}

/// A queued write whose commit has not been awaited yet.
#[must_use = "await the commit before acknowledging the write"]
pub struct Pending(oneshot::Receiver<Result<writer::Done, StoreError>>);

impl Pending {
    /// Returns once the write is durable (or failed).
    pub async fn committed(self) -> Result<(), StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?.map(|_| ())
    }
}

impl Store {
    /// Opens the log `cfg.backend` names, applies its migrations, and starts
    /// the writer task: a SQLite file at `path` (created if needed), or
    /// PostgreSQL at `cfg.url` with this replica's journal beside `path`.
    pub async fn open(path: &Path, cfg: &StoreConfig) -> Result<(Store, WriterHandle), StoreError> {
        if cfg.backend == StoreBackend::Postgres {
            let (s, h) = PgStore::open(path, cfg).await?;
            return Ok((Store::Postgres(s), h));
        }
        let (s, h) = SqliteStore::open(path, cfg).await?;
        Ok((Store::Sqlite(s), h))
    }

    /// [`Store::open`] with another wait for a lock another process holds:
    /// offline tools writing beside a busy server (`promote`) wait longer
    /// than the service, which must answer quickly.
    pub async fn open_with(
        path: &Path,
        cfg: &StoreConfig,
        busy_timeout: Duration,
    ) -> Result<(Store, WriterHandle), StoreError> {
        if cfg.backend == StoreBackend::Postgres {
            return Store::open(path, cfg).await;
        }
        let (s, h) = SqliteStore::open_with(path, cfg, busy_timeout).await?;
        Ok((Store::Sqlite(s), h))
    }

    /// Durably records a decision; returns after its commit.
    pub async fn record_decision(&self, row: DecisionRow) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_decision(row).await,
            Store::Postgres(s) => s.record_decision(row).await,
        }
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
        match self {
            Store::Sqlite(s) => s.record_decision_with_attempts(row, attempts).await,
            Store::Postgres(s) => s.record_decision_with_attempts(row, attempts).await,
        }
    }

    /// Queues a decision for the next group commit and returns without
    /// waiting for it, so the caller can overlap the commit with a provider
    /// call. Writes are applied in queue order, so attempts queued after it
    /// never precede it; the caller must await [`Pending::committed`] before
    /// acknowledging anything about the decision.
    pub async fn begin_decision(&self, row: DecisionRow) -> Result<Pending, StoreError> {
        match self {
            Store::Sqlite(s) => s.begin_decision(row).await,
            Store::Postgres(s) => s.begin_decision(row).await,
        }
    }

    /// Durably records a request's provider attempts and which model served.
    pub async fn record_attempts(
        &self,
        decision_id: String,
        attempts: Vec<AttemptRow>,
        served_model: Option<String>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_attempts(decision_id, attempts, served_model).await,
            Store::Postgres(s) => s.record_attempts(decision_id, attempts, served_model).await,
        }
    }

    /// Durably records feedback; (decision, source) replaces an earlier value.
    pub async fn record_feedback(&self, row: FeedbackRow) -> Result<FeedbackOutcome, StoreError> {
        match self {
            Store::Sqlite(s) => s.record_feedback(row).await,
            Store::Postgres(s) => s.record_feedback(row).await,
        }
    }

    pub async fn decision(&self, id: &str) -> Result<Option<StoredDecision>, StoreError> {
        match self {
            Store::Sqlite(s) => s.decision(id).await,
            Store::Postgres(s) => s.decision(id).await,
        }
    }

    /// All feedback of a decision as (source, reward), by source.
    pub async fn feedback(&self, decision_id: &str) -> Result<Vec<(String, f64)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.feedback(decision_id).await,
            Store::Postgres(s) => s.feedback(decision_id).await,
        }
    }

    /// Every (decision, source) reward with a context and a serving model, in
    /// decision order: the log a policy's sufficient statistics are sums over.
    pub async fn observations(&self) -> Result<Vec<Observation>, StoreError> {
        match self {
            Store::Sqlite(s) => s.observations().await,
            Store::Postgres(s) => s.observations().await,
        }
    }

    /// Every failed attempt (outcome `error` or `timeout`) of a model at a
    /// decision it did not end up serving, with the decision's context,
    /// ordered by (decision, model). Whose fault each was is not the log's to
    /// say: callers ask `dispatch::Blame`.
    pub async fn failed_attempts(&self) -> Result<Vec<FailedAttempt>, StoreError> {
        match self {
            Store::Sqlite(s) => s.failed_attempts().await,
            Store::Postgres(s) => s.failed_attempts().await,
        }
    }

    /// Records the parameters behind a policy version and marks it serving.
    pub async fn record_policy_version(
        &self,
        version: String,
        kind: &'static str,
        params: String,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_policy_version(version, kind, params, at_ms).await,
            Store::Postgres(s) => s.record_policy_version(version, kind, params, at_ms).await,
        }
    }

    /// The serving policy version and its parameters, if any was recorded.
    pub async fn active_policy(&self) -> Result<Option<(String, String)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.active_policy().await,
            Store::Postgres(s) => s.active_policy().await,
        }
    }

    /// (model, intent, sum of completion tokens, answers) over successful attempts.
    pub async fn completion_token_sums(
        &self,
    ) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.completion_token_sums().await,
            Store::Postgres(s) => s.completion_token_sums().await,
        }
    }

    /// A cheap write-path check for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
        }
    }

    /// Readiness: the writer task is alive and the database file takes a
    /// write lock (`BEGIN IMMEDIATE`, then rolled back: nothing is written).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.check_writable().await,
            Store::Postgres(s) => s.check_writable().await,
        }
    }

    /// The newest feedback time in the log (0 when there is none): the
    /// watermark a trained policy covers.
    pub async fn feedback_watermark(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.feedback_watermark().await,
            Store::Postgres(s) => s.feedback_watermark().await,
        }
    }

    /// Decisions made at or after `since_ms` that have feedback created at or
    /// before `through_ms`, in decision order.
    pub async fn logged_decisions(
        &self,
        since_ms: i64,
        through_ms: i64,
    ) -> Result<Vec<LoggedDecision>, StoreError> {
        match self {
            Store::Sqlite(s) => s.logged_decisions(since_ms, through_ms).await,
            Store::Postgres(s) => s.logged_decisions(since_ms, through_ms).await,
        }
    }

    /// Rewards recorded after `after_ms` (by first recording time), as
    /// [`Store::observations`]: what a promoted policy has not seen.
    pub async fn observations_after(&self, after_ms: i64) -> Result<Vec<Observation>, StoreError> {
        match self {
            Store::Sqlite(s) => s.observations_after(after_ms).await,
            Store::Postgres(s) => s.observations_after(after_ms).await,
        }
    }

    /// Makes a policy current. Rare and operator-driven, so it writes through
    /// the read pool (SQLite serialises it against the writer task with the
    /// busy timeout) rather than through the request path's group commit.
    pub async fn record_promotion(&self, p: PromotionRow) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.record_promotion(p).await,
            Store::Postgres(s) => s.record_promotion(p).await,
        }
    }

    /// The id of the newest promotion (0 for none): cheap enough to poll.
    pub async fn latest_promotion_id(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.latest_promotion_id().await,
            Store::Postgres(s) => s.latest_promotion_id().await,
        }
    }

    /// The current (newest) promoted policy, if any.
    pub async fn current_promotion(&self) -> Result<Option<Promotion>, StoreError> {
        match self {
            Store::Sqlite(s) => s.current_promotion().await,
            Store::Postgres(s) => s.current_promotion().await,
        }
    }

    /// Adds an API key (see [`KeyRow`]).
    pub async fn insert_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_key(k).await,
            Store::Postgres(s) => s.insert_key(k).await,
        }
    }

    /// Replaces a key's settings; false when there is no such key.
    pub async fn update_key(&self, k: &KeyRow) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.update_key(k).await,
            Store::Postgres(s) => s.update_key(k).await,
        }
    }

    /// Writes a tenant's settings (see [`KeyRow::tenant_id`]).
    pub async fn upsert_tenant(&self, t: &KeyRow) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.upsert_tenant(t).await,
            Store::Postgres(s) => s.upsert_tenant(t).await,
        }
    }

    /// Every tenant's settings.
    pub async fn tenants(&self) -> Result<Vec<KeyRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.tenants().await,
            Store::Postgres(s) => s.tenants().await,
        }
    }

    /// Every API key, revoked ones too.
    pub async fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.keys().await,
            Store::Postgres(s) => s.keys().await,
        }
    }

    /// Spend per UTC day, tenant, key and model since `since_ms`.
    pub async fn spend(&self, since_ms: i64) -> Result<Vec<SpendRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.spend(since_ms).await,
            Store::Postgres(s) => s.spend(since_ms).await,
        }
    }

    /// Records a shadow call (off the request path; see [`ShadowRow`]).
    pub async fn insert_shadow(&self, row: &ShadowRow) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_shadow(row).await,
            Store::Postgres(s) => s.insert_shadow(row).await,
        }
    }

    /// Shadow calls started at or after `since_ms`.
    pub async fn shadows(&self, since_ms: i64) -> Result<Vec<ShadowRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.shadows(since_ms).await,
            Store::Postgres(s) => s.shadows(since_ms).await,
        }
    }

    /// A/B decisions made at or after `since_ms`, with their outcomes.
    pub async fn split_outcomes(&self, since_ms: i64) -> Result<Vec<SplitOutcome>, StoreError> {
        match self {
            Store::Sqlite(s) => s.split_outcomes(since_ms).await,
            Store::Postgres(s) => s.split_outcomes(since_ms).await,
        }
    }

    /// Closes the read side. The writer drains and stops once every `Store`
    /// clone is dropped; await its handle to know the last commit is done.
    pub async fn close(self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }

    /// Whether replicas share this log: learning then follows the shared
    /// observations ([`Store::learn_events`]) instead of this process's feedback.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// The newest shared observation's number (0 without a shared log).
    pub async fn learn_cursor(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(0),
            Store::Postgres(s) => s.learn_cursor().await,
        }
    }

    /// Up to `limit` shared observations after `cursor` (none without a shared log).
    pub async fn learn_events(
        &self,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<LearnEvent>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(Vec::new()),
            Store::Postgres(s) => s.learn_events(cursor, limit).await,
        }
    }

    /// Shared spend counters (id, day, usd) of `ids` since `since_day`;
    /// `None` without a shared log (this process's own totals are the truth).
    pub async fn key_spend(
        &self,
        ids: &[String],
        since_day: &str,
    ) -> Result<Option<Vec<(String, String, f64)>>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(s) => s.key_spend(ids, since_day).await.map(Some),
        }
    }

    /// Acknowledged writes not yet in the shared database, and the journal's
    /// bytes (zeros for SQLite).
    pub fn journal_backlog(&self) -> (usize, u64) {
        match self {
            Store::Sqlite(_) => (0, 0),
            Store::Postgres(s) => s.journal_backlog(),
        }
    }
}
