//! Per-key rate limits counted in this process: requests per minute and
//! tokens per minute, each a GCRA (generic cell rate algorithm) allowing a
//! minute's worth at once. With `limits.replicas = N` each replica allows
//! a key limit / N (an approximation of one shared limit; `redis` counts
//! it exactly, see `shared`).
//!
//! Written here rather than taken from `governor`: token limits charge a
//! request's estimated prompt up front and settle with the real usage once
//! the answer is known, which takes units back or charges more after the
//! fact; governor's limiters only admit or refuse. The arithmetic is the
//! same GCRA (a theoretical arrival time moved by each unit's interval).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::store::KeyRow;

/// One limit: `per_minute` units, up to a minute's worth at once.
#[derive(Debug)]
struct Gcra {
    per_minute: u32,
    /// When the bucket would be empty again, if nothing more came.
    tat: Instant,
}

const WINDOW: Duration = Duration::from_secs(60);

impl Gcra {
    fn new(per_minute: u32, now: Instant) -> Self {
        Gcra {
            per_minute,
            tat: now,
        }
    }

    fn interval(&self) -> Duration {
        WINDOW / self.per_minute.max(1)
    }

    /// Takes `n` units, or says how long until they fit.
    fn take(&mut self, n: u32, now: Instant) -> Result<(), Duration> {
        let tat = self.tat.max(now);
        let after = tat + self.interval() * n;
        let ahead = after.saturating_duration_since(now);
        if ahead > WINDOW {
            return Err(ahead - WINDOW);
        }
        self.tat = after;
        Ok(())
    }

    /// Charges `n` more units (or gives back `-n`) without refusing.
    fn settle(&mut self, n: i64, now: Instant) {
        let step = self.interval() * u32::try_from(n.unsigned_abs()).unwrap_or(u32::MAX);
        self.tat = if n >= 0 {
            self.tat.max(now) + step
        } else {
            self.tat.checked_sub(step).unwrap_or(now).max(now)
        };
    }
}

/// A key's limits, rebuilt when its settings change.
#[derive(Debug)]
struct KeyLimits {
    rpm: Option<Gcra>,
    tpm: Option<Gcra>,
}

/// Every key's limits.
#[derive(Debug)]
pub struct Limits {
    keys: Mutex<HashMap<String, KeyLimits>>,
    /// Replicas sharing each limit: this one allows limit / replicas.
    replicas: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(1)
    }
}

/// A key's limit as one of `replicas` replicas counts it (at least 1).
fn share(limit: Option<u32>, replicas: u32) -> Option<u32> {
    limit.map(|l| (l / replicas.max(1)).max(1))
}

/// A request larger than a whole minute's tokens can never pass: a 400,
/// not a wait.
pub(super) fn too_large(key: &KeyRow, tokens: u32, per_minute: u32) -> Result<(), Error> {
    if tokens <= per_minute {
        return Ok(());
    }
    Err(Error::invalid(
        "messages",
        format!(
            "the request's ~{tokens} prompt tokens exceed {}'s limit of {per_minute} tokens per minute",
            key.who()
        ),
    ))
}

/// Which limit refused.
pub(super) fn refused(key: &KeyRow, what: &'static str, max: u32, wait: Duration) -> Error {
    Error::rate_limited(
        format!(
            "{} is over its limit of {max} {what} per minute; retry after {:.1} s",
            key.who(),
            wait.as_secs_f64()
        ),
        what,
        max,
        wait,
    )
}

impl Limits {
    pub fn new(replicas: u32) -> Limits {
        Limits {
            keys: Mutex::new(HashMap::new()),
            replicas,
        }
    }

    /// Admits a request of `tokens` estimated prompt tokens under `key`'s
    /// limits, charging both; a refusal charges neither.
    pub fn admit(&self, key: &KeyRow, tokens: u32) -> Result<(), Error> {
        if key.rpm.is_none() && key.tpm.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let l = keys.entry(key.id.clone()).or_insert_with(|| KeyLimits {
            rpm: None,
            tpm: None,
        });
        let (rpm, tpm) = (share(key.rpm, self.replicas), share(key.tpm, self.replicas));
        // A changed setting starts its limit afresh.
        for (slot, want) in [(&mut l.rpm, rpm), (&mut l.tpm, tpm)] {
            if slot.as_ref().map(|g| g.per_minute) != want {
                *slot = want.map(|w| Gcra::new(w, now));
            }
        }
        if let Some(t) = &l.tpm {
            too_large(key, tokens, t.per_minute)?;
        }
        let before = (l.rpm.as_ref().map(|g| g.tat), l.tpm.as_ref().map(|g| g.tat));
        if let Some(r) = &mut l.rpm
            && let Err(wait) = r.take(1, now)
        {
            return Err(refused(key, "requests", r.per_minute, wait));
        }
        if let Some(t) = &mut l.tpm
            && let Err(wait) = t.take(tokens, now)
        {
            // The request is refused whole: give its request back.
            if let (Some(r), Some(tat)) = (&mut l.rpm, before.0) {
                r.tat = tat;
            }
            return Err(refused(key, "tokens", t.per_minute, wait));
        }
        Ok(())
    }

    /// Settles a request's tokens with its real usage: `delta` = real −
    /// estimated (negative gives tokens back).
    pub fn settle(&self, key: &KeyRow, delta: i64) {
        if key.tpm.is_none() || delta == 0 {
            return;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = keys.get_mut(&key.id).and_then(|l| l.tpm.as_mut()) {
            t.settle(delta, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rpm: Option<u32>, tpm: Option<u32>) -> KeyRow {
        KeyRow {
            rpm,
            tpm,
            ..KeyRow::plain("key_1", "t")
        }
    }

    #[test]
    fn a_minutes_worth_passes_then_the_next_waits_its_interval() {
        let now = Instant::now();
        let mut g = Gcra::new(60, now);
        for _ in 0..60 {
            g.take(1, now).unwrap();
        }
        let wait = g.take(1, now).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        // A second later one more fits.
        g.take(1, now + Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn replicas_share_a_limit() {
        let limits = Limits::new(3);
        let k = key(Some(7), None);
        // 7 / 3 replicas: 2 here.
        limits.admit(&k, 1).unwrap();
        limits.admit(&k, 1).unwrap();
        assert!(limits.admit(&k, 1).is_err());
        assert_eq!(share(Some(2), 3), Some(1), "never below one");
    }

    #[test]
    fn tokens_settle_both_ways() {
        let now = Instant::now();
        let mut g = Gcra::new(600, now);
        g.take(600, now).unwrap();
        assert!(g.take(100, now).is_err());
        g.settle(-300, now); // the answer used less than estimated
        g.take(100, now).unwrap();
        g.settle(1000, now); // or more
        assert!(g.take(1, now).is_err());
    }

    #[test]
    fn a_refused_request_charges_nothing_and_keys_are_apart() {
        let limits = Limits::default();
        let k = key(Some(2), Some(100));
        limits.admit(&k, 60).unwrap();
        // Over the token limit: refused, and its request not charged.
        let e = limits.admit(&k, 60).unwrap_err();
        assert!(e.to_string().contains("tokens per minute"), "{e}");
        limits.admit(&k, 30).unwrap();
        let e = limits.admit(&k, 1).unwrap_err();
        assert!(e.to_string().contains("requests per minute"), "{e}");
        let other = KeyRow {
            id: "key_2".into(),
            ..key(Some(2), None)
        };
        limits.admit(&other, 10_000).unwrap();
        assert!(
            limits
                .admit(&k, 500)
                .unwrap_err()
                .to_string()
                .contains("exceed")
        );
    }
}
