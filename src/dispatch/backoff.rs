//! Exponential backoff with full jitter between retries of one model, and
//! Retry-After honoured when the provider sends it.
//!
//! Full jitter (a uniform delay in `[0, min(max, base·2^n)]`, as in AWS's
//! "Exponential Backoff And Jitter") spreads the retries of many clients that
//! failed together, so they do not hit a recovering provider in lockstep.

use std::time::Duration;

use rand::Rng;

use crate::config::BackoffConfig;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// `0 < base <= max` holds: [`BackoffConfig`] checked it.
    pub fn new(cfg: BackoffConfig) -> Self {
        Backoff {
            base: cfg.base(),
            max: cfg.max(),
        }
    }

    /// The wait before retry number `retry` (0 for the first), given what the
    /// provider asked for. A Retry-After longer than `max` is still honoured:
    /// the caller decides whether the deadline leaves room for it.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max);
        let jittered = cap.mul_f64(rng.random::<f64>());
        retry_after.map_or(jittered, |ra| ra.max(jittered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_to_the_cap_and_honour_retry_after() {
        let cfg = BackoffConfig::try_new(Duration::from_millis(100), Duration::from_secs(1));
        let b = Backoff::new(cfg.unwrap());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 0..10 {
            let cap = Duration::from_millis(100 * (1 << retry)).min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(b.delay(retry, None, &mut rng) <= cap);
            }
        }
        let ra = Duration::from_secs(3);
        assert_eq!(b.delay(0, Some(ra), &mut rng), ra);
        assert!(BackoffConfig::try_new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(BackoffConfig::try_new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }
}
