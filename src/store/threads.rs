//! The writer connection's thread, found and niced (Linux).
//!
//! sqlx runs each SQLite connection on a thread of its own, which it does not
//! expose. With the acknowledgement journal no request waits for the writer's
//! commits, yet a commit, and above all a WAL checkpoint (milliseconds of
//! copying every ~150 requests), competes for the same cores as the requests:
//! on 2 cores that set p99. At nice 10 the writer gets the CPU the requests
//! leave; it still commits within milliseconds.

use std::collections::HashSet;

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

/// Sets nice 10 on these threads; a failure only costs latency, so it is logged.
#[cfg(unix)]
pub(super) fn lower_priority<'a>(tids: impl Iterator<Item = &'a i32>) {
    for &tid in tids {
        let Ok(id) = libc::id_t::try_from(tid) else {
            continue;
        };
        // SAFETY: setpriority only reads its integer arguments.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, id, 10) };
        if r != 0 {
            tracing::debug!(tid, error = %std::io::Error::last_os_error(), "could not lower the writer's priority");
        }
    }
}

#[cfg(not(unix))]
pub(super) fn lower_priority<'a>(_tids: impl Iterator<Item = &'a i32>) {}
