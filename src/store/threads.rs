//! The writer connection's thread, found and deprioritised (Linux).
//!
//! sqlx runs each SQLite connection on a thread of its own, which it does not
//! expose. With the acknowledgement journal most commits have nobody waiting
//! for them, yet a commit, and above all a WAL checkpoint, competes for the
//! same cores as the requests: on 2 cores that set p99. So the thread runs at
//! nice 10, and while nobody waits for its commit it runs as `SCHED_IDLE`: a
//! request's thread waking up then takes the core at once, where a niced
//! thread may keep it for the rest of its slice (1.4 ms here). `SCHED_IDLE`
//! only gets cores nobody else wants, so as soon as a caller waits for a
//! commit (a Route, feedback, a stream) or the queue backs up, the thread is
//! back to nice 10. Leaving `SCHED_IDLE` needs `CAP_SYS_NICE` or
//! `RLIMIT_NICE` ≥ 10; without either it stays at nice 10 throughout.

use std::collections::HashSet;
use std::time::Duration;

/// Ids of the process's sqlx worker threads (empty off Linux).
pub(super) fn sqlx_workers() -> HashSet<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return HashSet::new();
    };
    dir.filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("sqlx-sqlite-wor"))
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// How long a commit nobody waits for may wait for an idle core before the
/// writer's thread is back at nice 10: bounds how far SQLite lags the
/// journal on a saturated machine.
const IDLE_LAG: Duration = Duration::from_millis(5);

/// The writer's threads and how they are scheduled now.
pub(super) struct Background {
    tids: Vec<i32>,
    /// Whether this process may leave `SCHED_IDLE` again (else never enters it).
    may_idle: bool,
    idle: bool,
}

impl Background {
    /// Sets nice 10 on `tids`; failures only cost latency, so they are logged.
    pub(super) fn new(tids: impl IntoIterator<Item = i32>) -> Background {
        let tids: Vec<i32> = tids.into_iter().collect();
        for &tid in &tids {
            sys::nice(tid, 10);
        }
        Background {
            tids,
            may_idle: sys::may_leave_idle(),
            idle: false,
        }
    }

    /// Runs `commit`, at idle priority unless `someone_waits`; if it is
    /// still running idle after [`IDLE_LAG`] (no core was free), finishes it
    /// at nice 10.
    pub(super) async fn run<T>(
        &mut self,
        someone_waits: bool,
        commit: impl Future<Output = T>,
    ) -> T {
        self.pace(someone_waits);
        if !self.idle {
            return commit.await;
        }
        let mut commit = std::pin::pin!(commit);
        match tokio::time::timeout(IDLE_LAG, &mut commit).await {
            Ok(done) => done,
            Err(_) => {
                self.pace(true);
                commit.await
            }
        }
    }

    /// Idle priority while nobody waits for the next commit, nice 10 else.
    fn pace(&mut self, someone_waits: bool) {
        let idle = self.may_idle && !someone_waits;
        if idle == self.idle {
            return;
        }
        self.idle = idle;
        for &tid in &self.tids {
            sys::set_idle(tid, idle);
        }
    }
}

use crate::kernels::sched as sys;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::mpsc;

    use super::Background;

    /// A thread's scheduling policy and nice value, as the kernel reports them.
    fn sched(tid: i32) -> (i32, i32) {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Fields after the command name, which may hold spaces: state is 3rd.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        (
            fields[41 - 3].parse().unwrap(),
            fields[19 - 3].parse().unwrap(),
        )
    }

    /// A parked thread, let go on drop.
    struct Parked {
        tid: i32,
        stop: Option<mpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    fn parked() -> Parked {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tid_tx.send(super::sys::gettid()).unwrap();
            let _ = stop_rx.recv();
        });
        Parked {
            tid: tid_rx.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    impl Drop for Parked {
        fn drop(&mut self) {
            drop(self.stop.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn the_writer_idles_only_while_nobody_waits() {
        let thread = parked();
        let tid = thread.tid;
        let mut bg = Background::new([tid]);
        assert_eq!(sched(tid), (libc::SCHED_OTHER, 10));
        bg.pace(false);
        let idle = if bg.may_idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        assert_eq!(sched(tid), (idle, 10));
        bg.pace(true);
        assert_eq!(sched(tid), (libc::SCHED_OTHER, 10), "back at nice 10");
    }

    #[tokio::test]
    async fn a_commit_that_finds_no_idle_core_finishes_at_nice_10() {
        let thread = parked();
        let tid = thread.tid;
        let mut bg = Background::new([tid]);
        // A quick commit leaves the thread idle...
        bg.run(false, async {}).await;
        assert_eq!(sched(tid).0 == libc::SCHED_IDLE, bg.may_idle);
        // ...one still running after the lag is finished at nice 10.
        bg.run(false, tokio::time::sleep(super::IDLE_LAG * 10))
            .await;
        assert_eq!(sched(tid), (libc::SCHED_OTHER, 10));
    }
}
