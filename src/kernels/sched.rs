//! Setting another thread's scheduling by its kernel thread id (Linux): its
//! nice value and `SCHED_IDLE`, for the decision log's writer thread (see
//! `store::threads` for why). No well-kept crate sets a policy by thread id
//! (they take a `pthread_t`, which sqlx's hidden thread does not give us), so
//! these are the three libc calls, each with its safety argument. Failures
//! only cost latency: they are logged at debug level, never raised.

pub use imp::{gettid, may_leave_idle, nice, set_idle};

#[cfg(target_os = "linux")]
mod imp {
    fn report(what: &str, tid: i32, r: i32) {
        if r != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(tid, %error, "could not {what} the writer's thread");
        }
    }

    pub fn nice(tid: i32, nice: i32) {
        let Ok(id) = libc::id_t::try_from(tid) else {
            return;
        };
        // SAFETY: setpriority only reads its integer arguments.
        report("renice", tid, unsafe {
            libc::setpriority(libc::PRIO_PROCESS, id, nice)
        });
    }

    /// `SCHED_IDLE` or back to `SCHED_OTHER` (which keeps the thread's nice).
    pub fn set_idle(tid: i32, idle: bool) {
        let policy = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` outlives the call, which only reads it.
        report("reschedule", tid, unsafe {
            libc::sched_setscheduler(tid, policy, &param)
        });
    }

    /// The calling thread's kernel id.
    pub fn gettid() -> i32 {
        // SAFETY: gettid has no arguments and cannot fail.
        unsafe { libc::gettid() }
    }

    /// Tries, on a thread of its own, to enter `SCHED_IDLE` at nice 10 and
    /// leave it: leaving needs a privilege a container may not have.
    pub fn may_leave_idle() -> bool {
        std::thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: pid 0 is the calling thread; `param` outlives each call.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, 10) == 0
                    && libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
                    && libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) == 0
            }
        })
        .join()
        .unwrap_or(false)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn nice(_tid: i32, _nice: i32) {}
    pub fn set_idle(_tid: i32, _idle: bool) {}
    pub fn may_leave_idle() -> bool {
        false
    }
    pub fn gettid() -> i32 {
        0
    }
}
