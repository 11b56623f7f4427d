//! A replica's local journal on PostgreSQL: what was acknowledged to a
//! client while the database could not take it, until it has.
//!
//! Writes go straight to PostgreSQL while it answers. When a commit fails
//! because the database is unreachable (or a replica restarts with entries
//! left), the writes are appended here, acknowledged, and applied in order
//! by the drainer once the database is back; every write after them is
//! appended behind them until the journal is empty, so order is kept. The
//! file holds entries framed by [`super::super::frame`]; the entries not yet
//! applied are also kept in memory, so memory use is bounded by
//! `store.journal_max_mb` like the file. Past that limit writes are refused.
//!
//! An entry whose decision is not in the database yet (feedback sent to this
//! replica for a decision another replica still holds in its own journal) is
//! an orphan: retried on every pass for [`ORPHAN_TTL`], then dropped with an
//! error. Feedback that reaches a database without its decision is journaled
//! too when the decision's id was stamped within that time, since the
//! decision may be in another replica's journal still. The file is emptied once nothing is pending and no orphan is left.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::super::StoreError;
use super::super::frame;
use super::super::rows::{AttemptRow, DecisionRow, FeedbackRow};

/// How long an entry whose decision is missing is retried.
pub(super) const ORPHAN_TTL: Duration = Duration::from_secs(600);

/// One acknowledged write, as the journal holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Entry {
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
}

pub(super) struct Journal {
    path: PathBuf,
    max_bytes: u64,
    sync: bool,
    state: Mutex<State>,
}

struct State {
    file: File,
    bytes: u64,
    pending: VecDeque<Entry>,
    orphans: Vec<(Instant, Entry)>,
}

impl Journal {
    /// Takes the journal at `path` for this process, with what it holds (all
    /// pending: applying twice is harmless). Fails when another process holds it.
    pub(super) fn open(path: &Path, max_bytes: u64, sync: bool) -> io::Result<Journal> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::other(format!(
                    "another process holds the journal {}: every replica needs its own",
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let pending: VecDeque<Entry> = frame::decode(&bytes, path).into();
        if !pending.is_empty() {
            tracing::info!(entries = pending.len(), "the journal holds writes to apply");
        }
        Ok(Journal {
            path: path.to_owned(),
            max_bytes,
            sync,
            state: Mutex::new(State {
                file,
                bytes: bytes.len() as u64,
                pending,
                orphans: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `entries` (in one write); returns once they are in the file.
    pub(super) fn append(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut frames = Vec::new();
        for e in &entries {
            frames.extend(frame::encode(e)?);
        }
        let mut s = self.lock();
        if s.bytes + frames.len() as u64 > self.max_bytes {
            return Err(StoreError::JournalFull(self.path.display().to_string()));
        }
        s.file.write_all(&frames)?;
        if self.sync {
            s.file.sync_data()?;
        }
        s.bytes += frames.len() as u64;
        s.pending.extend(entries);
        Ok(())
    }

    /// Whether writes must queue behind the journal to keep their order.
    pub(super) fn backlog(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// Entries not applied yet, bytes used, and the limit.
    pub(super) fn usage(&self) -> (usize, u64, u64) {
        let s = self.lock();
        (s.pending.len() + s.orphans.len(), s.bytes, self.max_bytes)
    }

    /// Up to `n` of the oldest pending entries (they stay pending).
    pub(super) fn front(&self, n: usize) -> Vec<Entry> {
        self.lock().pending.iter().take(n).cloned().collect()
    }

    /// The oldest `n` pending entries reached the database, or are orphans
    /// (`orphans` holds those, in order).
    pub(super) fn done(&self, n: usize, orphans: Vec<Entry>) {
        let mut s = self.lock();
        let n = n.min(s.pending.len());
        s.pending.drain(..n);
        let now = Instant::now();
        s.orphans.extend(orphans.into_iter().map(|e| (now, e)));
    }

    /// Takes the orphans to retry; [`Journal::keep_orphans`] returns those still missing.
    pub(super) fn take_orphans(&self) -> Vec<(Instant, Entry)> {
        std::mem::take(&mut self.lock().orphans)
    }

    pub(super) fn keep_orphans(&self, orphans: Vec<(Instant, Entry)>) {
        let mut kept = Vec::with_capacity(orphans.len());
        for (since, e) in orphans {
            if since.elapsed() < ORPHAN_TTL {
                kept.push((since, e));
            } else {
                tracing::error!(entry = ?e, "dropping a journaled write whose decision never reached the database");
            }
        }
        self.lock().orphans.extend(kept);
    }

    /// Empties the file when every entry in it reached the database.
    pub(super) fn empty_if_drained(&self) {
        let mut s = self.lock();
        if !s.pending.is_empty() || !s.orphans.is_empty() || s.bytes == 0 {
            return;
        }
        match s.file.set_len(0) {
            Ok(()) => s.bytes = 0,
            Err(e) => tracing::warn!(error = %e, "could not empty the journal"),
        }
    }
}
