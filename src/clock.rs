//! Wall-clock time in the unit the decision log stores: milliseconds since the
//! Unix epoch. One function, so the online and offline paths stamp alike.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ms since the epoch; 0 if the clock is before it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
