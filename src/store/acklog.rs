//! The acknowledgement journal: with `store.synchronous = "normal"`, a
//! Complete is answered once its decision and attempts are in this
//! append-only file, and SQLite commits them just after, off the request's
//! path.
//!
//! One `write(2)` into the page cache survives a crash of the process, which
//! is exactly what SQLite's WAL promises under `normal`; the round trips to
//! sqlx's thread and SQLite's checkpoints (each a stall of milliseconds every
//! ~150 requests) were what a request waited on. Under `full` every answer
//! waits for its fsync'd commit instead, and no journal is written.
//!
//! The file (`<database>-acks`) is held with an exclusive lock by the one
//! process that writes it. Whoever next opens the database and gets the lock
//! inserts what the journal holds (idempotently) before anything else, then
//! empties it. While serving, it is emptied whenever everything appended has
//! reached SQLite and it has grown past [`RESET_BYTES`].
//!
//! Records are framed by [`super::frame`]; a torn or corrupt tail (a crash
//! mid-write) ends the replay there.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::rows::{AttemptRow, DecisionRow};

/// A drained journal is emptied once it is this large.
const RESET_BYTES: u64 = 4 << 20;

/// One acknowledged Complete, as the journal holds it.
#[derive(Deserialize)]
pub(super) struct Entry {
    pub decision: DecisionRow,
    pub attempts: Vec<AttemptRow>,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    decision: &'a DecisionRow,
    attempts: &'a [AttemptRow],
}

pub(super) struct AckLog {
    state: Mutex<State>,
}

struct State {
    file: File,
    bytes: u64,
    appended: u64,
    settled: u64,
    /// An appended entry failed to reach SQLite: keep everything for the
    /// replay at the next start.
    failed: bool,
}

pub(super) fn path_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-acks");
    PathBuf::from(p)
}

impl AckLog {
    /// Takes the journal of the database at `db` for this process, with what
    /// it holds; `None` when another process holds it.
    pub(super) fn open(db: &Path) -> io::Result<Option<(AckLog, Vec<Entry>)>> {
        let path = path_of(db);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let entries = super::frame::decode(&bytes, &path);
        let state = State {
            file,
            bytes: bytes.len() as u64,
            appended: 0,
            settled: 0,
            failed: false,
        };
        Ok(Some((
            AckLog {
                state: Mutex::new(state),
            },
            entries,
        )))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one Complete; returns once it is in the file.
    pub(super) fn append(&self, decision: &DecisionRow, attempts: &[AttemptRow]) -> io::Result<()> {
        let frame = super::frame::encode(&EntryRef { decision, attempts })?;
        let mut s = self.lock();
        s.file.write_all(&frame)?;
        s.bytes += frame.len() as u64;
        s.appended += 1;
        Ok(())
    }

    /// `n` appended entries were committed to SQLite (`ok`) or failed to be.
    pub(super) fn settle(&self, n: u64, ok: bool) {
        let mut s = self.lock();
        s.settled += n;
        s.failed |= !ok;
        if s.bytes >= RESET_BYTES {
            s.empty_if_drained();
        }
    }

    /// Empties the journal if everything appended reached SQLite (after the
    /// replay at start, and when the writer stops).
    pub(super) fn empty_if_drained(&self) {
        self.lock().empty_if_drained();
    }
}

impl State {
    fn empty_if_drained(&mut self) {
        if self.failed || self.settled != self.appended || self.bytes == 0 {
            return;
        }
        // Appends go to the end, so after this they start at 0 again.
        match self.file.set_len(0) {
            Ok(()) => self.bytes = 0,
            Err(e) => tracing::warn!(error = %e, "could not empty the acknowledgement journal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn decision(id: &str) -> DecisionRow {
        DecisionRow {
            id: id.into(),
            created_at_ms: 1,
            tenant: "t".into(),
            rpc: "complete",
            model: "m".into(),
            provider: "p".into(),
            pinned: true,
            propensity: 1.0,
            explored: false,
            policy_version: "pinned".into(),
            cost_weight: 0.0,
            max_cost_usd: Some(0.5),
            prompt_tokens: 3,
            output_tokens: 4,
            message_count: 1,
            features: Some(vec![0, 255, 7]),
            context: None,
            intent: Some("code".into()),
            candidates: "[]".into(),
            metadata: "{\"k\":\"v\"}".into(),
            prompt: None,
            served_model: Some("m".into()),
            key_id: None,
            rules: None,
            profile: None,
            split: None,
            cached_from: None,
        }
    }

    pub(crate) fn attempt() -> AttemptRow {
        AttemptRow {
            model: "m".into(),
            provider: "p".into(),
            deployment: None,
            outcome: "timeout",
            error: Some("took too long".into()),
            http_status: None,
            started_at_ms: 2,
            latency_ms: 9,
            prompt_tokens: None,
            completion_tokens: None,
            usage_estimated: true,
            cost_usd: None,
        }
    }

    #[test]
    fn entries_round_trip_and_a_torn_tail_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        {
            let (log, old) = AckLog::open(&db).unwrap().unwrap();
            assert!(old.is_empty());
            for i in 0..3 {
                log.append(&decision(&format!("d{i}")), &[attempt()])
                    .unwrap();
            }
            // Held: a second opener (another process's view) gets nothing.
            assert!(AckLog::open(&db).unwrap().is_none());
        }
        // A crash in the middle of a fourth record.
        let mut f = OpenOptions::new().append(true).open(path_of(&db)).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let (_log, entries) = AckLog::open(&db).unwrap().unwrap();
        let ids: Vec<&str> = entries.iter().map(|e| e.decision.id.as_str()).collect();
        assert_eq!(ids, ["d0", "d1", "d2"]);
        let e = &entries[1];
        assert_eq!(e.decision.features.as_deref(), Some(&[0u8, 255, 7][..]));
        assert_eq!(e.decision.rpc, "complete");
        assert_eq!(
            (e.attempts[0].outcome, e.attempts[0].latency_ms),
            ("timeout", 9)
        );
    }

    #[test]
    fn a_drained_journal_is_emptied_and_a_failed_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let (log, _) = AckLog::open(&db).unwrap().unwrap();
        log.append(&decision("a"), &[]).unwrap();
        log.empty_if_drained();
        assert!(
            std::fs::metadata(path_of(&db)).unwrap().len() > 0,
            "not settled yet"
        );
        log.settle(1, true);
        log.empty_if_drained();
        assert_eq!(std::fs::metadata(path_of(&db)).unwrap().len(), 0);
        log.append(&decision("b"), &[]).unwrap();
        log.settle(1, false);
        log.empty_if_drained();
        assert!(
            std::fs::metadata(path_of(&db)).unwrap().len() > 0,
            "kept for the replay"
        );
    }

    /// What a crash kept from SQLite is in the log once the database is
    /// opened again, and the journal is empty after it; a row that did reach
    /// SQLite is not duplicated.
    #[tokio::test]
    async fn opening_the_database_replays_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut cfg = crate::config::Config::embedded().store;
        cfg.synchronous = crate::config::Synchronous::Normal;
        {
            let (store, writer) = crate::store::Store::open(&db, &cfg).await.unwrap();
            store
                .record_decision_with_attempts(decision("committed"), vec![attempt()])
                .await
                .unwrap();
            drop(store);
            writer.finished().await;
        }
        {
            // A server that died after acknowledging two more: they are in its
            // journal only (and "committed" again, as if its settle was lost).
            let (log, _) = AckLog::open(&db).unwrap().unwrap();
            for id in ["committed", "lost-1", "lost-2"] {
                log.append(&decision(id), &[attempt(), attempt()]).unwrap();
            }
        }
        let (store, _w) = crate::store::Store::open(&db, &cfg).await.unwrap();
        for id in ["lost-1", "lost-2"] {
            let d = store.decision(id).await.unwrap().expect("replayed");
            assert_eq!((d.attempts, d.served_model.as_deref()), (2, Some("m")));
        }
        let d = store.decision("committed").await.unwrap().unwrap();
        assert_eq!(d.attempts, 1, "the committed row is left as it was");
        assert_eq!(std::fs::metadata(path_of(&db)).unwrap().len(), 0);
        // The server's journal: appended, and committed just after.
        store
            .record_decision_with_attempts(decision("new"), vec![attempt()])
            .await
            .unwrap();
        assert!(std::fs::metadata(path_of(&db)).unwrap().len() > 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.decision("new").await.unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "never committed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
