//! The PostgreSQL writer: group commits straight to the database while it
//! answers, and the journal (with its drainer) while it does not.
//!
//! One task takes queued writes in batches. With nothing pending in the
//! journal it commits a batch in one transaction and replies after the
//! commit, as the SQLite writer does. When the database cannot be reached
//! (or the journal still holds earlier writes, which must land first) the
//! batch is appended to the journal and acknowledged from it; the drainer
//! task applies the journal in order once the database answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};

use super::super::writer::{Done, Handle, Job, Write, fill};
use super::super::{FeedbackOutcome, StoreError};
use super::apply::{self, Applied};
use super::journal::{Entry, Journal, ORPHAN_TTL};

type Reply = tokio::sync::oneshot::Sender<Result<Done, StoreError>>;

/// Journal entries applied per drainer transaction.
const DRAIN_BATCH: usize = 256;
/// Longest pause between the drainer's attempts to reach the database.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether `e` means the database could not be reached (or asked to be
/// retried), as opposed to a statement it refused.
pub(super) fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions (08), shutdown and recovery (57P0x), too many
        // connections, serialization failures and deadlocks: retry later.
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("57P")
                || matches!(&*c, "53300" | "40001" | "40P01")
        }),
        _ => false,
    }
}

pub(super) struct Setup {
    pub pool: PgPool,
    pub journal: Arc<Journal>,
    pub max_batch: usize,
    pub max_wait: Duration,
}

pub(super) fn spawn(rx: mpsc::Receiver<Job>, setup: Setup) -> Handle {
    let wake = Arc::new(Notify::new());
    let drainer = tokio::spawn(drain(
        setup.pool.clone(),
        Arc::clone(&setup.journal),
        Arc::clone(&wake),
    ));
    Handle::new(tokio::spawn(async move {
        intake(rx, &setup, &wake).await;
        // What is still pending stays in the file for the next start.
        drainer.abort();
        setup.journal.empty_if_drained();
        setup.pool.close().await;
    }))
}

async fn intake(mut rx: mpsc::Receiver<Job>, setup: &Setup, wake: &Notify) {
    let outage = AtomicBool::new(false);
    let mut batch = Vec::with_capacity(setup.max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        fill(&mut rx, &mut batch, setup.max_batch, setup.max_wait).await;
        let mut entries = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match job.write {
                Write::PolicyVersion {
                    version,
                    kind,
                    params,
                    at_ms,
                } => {
                    // Off the queue (nothing is ordered after it) and not
                    // journaled: a version is recorded again when it next
                    // changes. Not tried while the journal holds writes.
                    if setup.journal.backlog() {
                        let away = StoreError::CommitFailed("the database is unreachable".into());
                        let _ = job.reply.send(Err(away));
                        continue;
                    }
                    let pool = setup.pool.clone();
                    tokio::spawn(async move {
                        let r = super::reads::policy_version(&pool, &version, kind, &params, at_ms);
                        let _ = job.reply.send(r.await.map(|()| Done::Unit));
                    });
                }
                w => {
                    entries.push(entry(w));
                    replies.push(job.reply);
                }
            }
        }
        if entries.is_empty() {
            continue;
        }
        if !setup.journal.backlog() {
            match commit(&setup.pool, &entries).await {
                Ok(results) => {
                    if outage.swap(false, Ordering::Relaxed) {
                        tracing::info!("the database answers again");
                    }
                    settle(&setup.journal, entries, replies, results, wake);
                    continue;
                }
                Err(e) if unreachable(&e) => {
                    if !outage.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "the database is unreachable; journaling writes until it is back");
                    }
                }
                Err(e) => {
                    one_by_one(&setup.pool, &setup.journal, entries, replies, wake).await;
                    tracing::debug!(error = %e, "batch failed; applied write by write");
                    continue;
                }
            }
        }
        journal(&setup.journal, entries, replies, wake);
    }
}

/// A batch one statement of which the database refused: each write in its
/// own transaction, so only the one at fault fails.
async fn one_by_one(
    pool: &PgPool,
    journal_: &Journal,
    entries: Vec<Entry>,
    replies: Vec<Reply>,
    wake: &Notify,
) {
    for (e, reply) in entries.into_iter().zip(replies) {
        if !journal_.backlog() {
            match commit(pool, std::slice::from_ref(&e)).await {
                Ok(r) => {
                    settle(journal_, vec![e], vec![reply], r, wake);
                    continue;
                }
                Err(err) if !unreachable(&err) => {
                    let _ = reply.send(Err(StoreError::Db(err)));
                    continue;
                }
                Err(_) => {}
            }
        }
        journal(journal_, vec![e], vec![reply], wake);
    }
}

async fn commit(pool: &PgPool, entries: &[Entry]) -> Result<Vec<Applied>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    apply::batch(&mut conn, entries).await
}

/// Appends to the journal and acknowledges from it.
fn journal(journal: &Journal, entries: Vec<Entry>, replies: Vec<Reply>, wake: &Notify) {
    let feedback: Vec<bool> = entries
        .iter()
        .map(|e| matches!(e, Entry::Feedback(_)))
        .collect();
    match journal.append(entries) {
        Ok(()) => {
            for (reply, feedback) in replies.into_iter().zip(feedback) {
                // Nothing is known of the decision yet: learning reads the
                // feedback from the shared log once it lands.
                let done = match feedback {
                    true => Done::Feedback(Box::new(FeedbackOutcome {
                        replaced: false,
                        previous: None,
                        arm: None,
                        context: None,
                    })),
                    false => Done::Unit,
                };
                let _ = reply.send(Ok(done));
            }
            wake.notify_one();
        }
        Err(e) => {
            tracing::error!(error = %e, "write refused: the database is unreachable and the journal cannot take it");
            let msg = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(match &e {
                    StoreError::JournalFull(p) => StoreError::JournalFull(p.clone()),
                    _ => StoreError::CommitFailed(msg.clone()),
                }));
            }
        }
    }
}

/// Replies to committed writes. Feedback whose decision is not in the
/// database, but whose id says it was made within [`ORPHAN_TTL`], is
/// journaled rather than refused: after an outage another replica may still
/// hold that decision in its own journal (the client had the id from it), so
/// the drainer applies the feedback once the decision lands.
fn settle(
    journal_: &Journal,
    entries: Vec<Entry>,
    replies: Vec<Reply>,
    results: Vec<Applied>,
    wake: &Notify,
) {
    let (mut parked, mut waiting) = (Vec::new(), Vec::new());
    for ((e, reply), r) in entries.into_iter().zip(replies).zip(results) {
        match (&e, r) {
            (Entry::Feedback(f), Applied::Missing) if lately_made(&f.decision_id) => {
                parked.push(e);
                waiting.push(reply);
            }
            (_, r) => {
                let _ = reply.send(answer(&e, r));
            }
        }
    }
    if !parked.is_empty() {
        journal(journal_, parked, waiting, wake);
    }
}

/// Whether `id` is a decision id (UUIDv7) stamped within [`ORPHAN_TTL`] of
/// now, allowing replicas' clocks a minute's disagreement.
fn lately_made(id: &str) -> bool {
    const SKEW: Duration = Duration::from_secs(60);
    let Some(stamp) = uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.get_version_num() == 7)
        .and_then(|u| u.get_timestamp())
    else {
        return false;
    };
    let (secs, nanos) = stamp.to_unix();
    let made = UNIX_EPOCH + Duration::new(secs, nanos);
    match SystemTime::now().duration_since(made) {
        Ok(age) => age < ORPHAN_TTL,
        Err(ahead) => ahead.duration() < SKEW,
    }
}

fn answer(e: &Entry, r: Applied) -> Result<Done, StoreError> {
    match r {
        Applied::Unit => Ok(Done::Unit),
        Applied::Feedback(o) => Ok(Done::Feedback(Box::new(o))),
        Applied::Missing | Applied::Foreign => Err(StoreError::DecisionNotFound(match e {
            Entry::Feedback(f) => f.decision_id.clone(),
            Entry::Attempts { decision_id, .. } => decision_id.clone(),
            Entry::Decision { row, .. } => row.id.clone(),
        })),
    }
}

fn entry(w: Write) -> Entry {
    match w {
        Write::Decision { row, attempts } => Entry::Decision { row, attempts },
        Write::Attempts {
            decision_id,
            attempts,
            served_model,
        } => Entry::Attempts {
            decision_id,
            attempts,
            served_model,
        },
        Write::Feedback(f) => Entry::Feedback(f),
        Write::PolicyVersion { .. } => unreachable!("policy versions are not journaled"),
    }
}

/// Applies the journal in order whenever it holds something, retrying while
/// the database is away, and retries orphans (see [`super::journal`]).
async fn drain(pool: PgPool, journal: Arc<Journal>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let front = journal.front(DRAIN_BATCH);
        if front.is_empty() {
            retry_orphans(&pool, &journal).await;
            journal.empty_if_drained();
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        match commit(&pool, &front).await {
            Ok(results) => {
                let n = front.len();
                journal.done(n, missing(front, results));
                backoff = Duration::from_millis(100);
                if !journal.backlog() {
                    tracing::info!("the journal reached the database");
                }
            }
            Err(e) if unreachable(&e) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                // Some entry the database refuses: find it, one at a time.
                tracing::warn!(error = %e, "a journal batch was refused; applying it entry by entry");
                for e in front {
                    match commit(&pool, std::slice::from_ref(&e)).await {
                        Ok(r) => journal.done(1, missing(vec![e], r)),
                        Err(err) if unreachable(&err) => break,
                        Err(err) => {
                            tracing::error!(error = %err, entry = ?e, "dropping a journaled write the database refuses");
                            journal.done(1, Vec::new());
                        }
                    }
                }
            }
        }
    }
}

/// The entries whose decision is not in the database yet; feedback for
/// another tenant's decision is dropped, as it would have been refused.
fn missing(entries: Vec<Entry>, results: Vec<Applied>) -> Vec<Entry> {
    let mut out = Vec::new();
    for (e, r) in entries.into_iter().zip(results) {
        match r {
            Applied::Missing => out.push(e),
            Applied::Foreign => {
                tracing::error!(entry = ?e, "dropping journaled feedback for another tenant's decision");
            }
            Applied::Unit | Applied::Feedback(_) => {}
        }
    }
    out
}

async fn retry_orphans(pool: &PgPool, journal: &Journal) {
    let orphans = journal.take_orphans();
    if orphans.is_empty() {
        return;
    }
    let mut still = Vec::new();
    for (since, e) in orphans {
        match commit(pool, std::slice::from_ref(&e)).await {
            Ok(r) => still.extend(missing(vec![e], r).into_iter().map(|e| (since, e))),
            Err(_) => still.push((since, e)),
        }
    }
    journal.keep_orphans(still);
}
