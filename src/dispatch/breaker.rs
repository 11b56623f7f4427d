//! A circuit breaker per model: stop sending traffic to a model that keeps
//! failing, try it again with a few probes after a cool-down, and close when
//! a probe succeeds.
//!
//! Closed → Open after `consecutive_failures` failures in a row, or when the
//! failure rate over the last `window` outcomes reaches `failure_rate` (with
//! at least `window / 2` outcomes seen, so two early failures do not open
//! it). Open → HalfOpen once `open_for` has passed: up to `probes` requests
//! go through; a success closes it, a failure opens it again. The clock is
//! passed in, so tests drive it without sleeping.

use std::collections::VecDeque;
use std::time::Instant;

pub use crate::config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    consecutive: u32,
    /// Recent outcomes while closed; true = failure.
    recent: VecDeque<bool>,
    opened_at: Option<Instant>,
    probes_out: u32,
    /// Times the breaker opened, for metrics.
    pub opened: u64,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            cfg,
            state: BreakerState::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            opened_at: None,
            probes_out: 0,
            opened: 0,
        }
    }

    /// The state as of `now` (an open breaker whose cool-down has passed
    /// reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(t)) if now >= t + self.cfg.open_for => BreakerState::HalfOpen,
            (s, _) => s,
        }
    }

    /// Why no request may go to this model now; `None` if one may. Read-only:
    /// selection calls it for every candidate.
    pub fn refusal(&self, now: Instant) -> Option<String> {
        match self.state(now) {
            BreakerState::Closed => None,
            BreakerState::Open => {
                let t = self.opened_at.unwrap_or(now) + self.cfg.open_for;
                Some(format!(
                    "circuit open after repeated failures (retry in {} ms)",
                    t.saturating_duration_since(now).as_millis()
                ))
            }
            BreakerState::HalfOpen if self.probes_out >= self.cfg.probes => {
                Some("circuit half-open: probe requests in flight".into())
            }
            BreakerState::HalfOpen => None,
        }
    }

    /// Claims the right to send one request; false if the breaker refuses.
    /// In half-open state this takes one of the probe slots.
    pub fn acquire(&mut self, now: Instant) -> bool {
        if self.refusal(now).is_some() {
            return false;
        }
        if self.state(now) == BreakerState::HalfOpen {
            self.state = BreakerState::HalfOpen;
            self.probes_out += 1;
        }
        true
    }

    /// Records the outcome of a request that `acquire` let through.
    pub fn record(&mut self, success: bool, now: Instant) {
        match self.state {
            BreakerState::HalfOpen => {
                self.probes_out = self.probes_out.saturating_sub(1);
                if success {
                    self.close();
                } else {
                    self.open(now);
                }
            }
            // A late answer from before the breaker opened changes nothing.
            BreakerState::Open => {}
            BreakerState::Closed => {
                self.consecutive = if success { 0 } else { self.consecutive + 1 };
                self.recent.push_back(!success);
                while self.recent.len() > self.cfg.window as usize {
                    self.recent.pop_front();
                }
                let failures = self.recent.iter().filter(|f| **f).count();
                let enough = self.recent.len() * 2 >= self.cfg.window as usize;
                let rate = failures as f64 / self.recent.len().max(1) as f64;
                if self.consecutive >= self.cfg.consecutive_failures
                    || (enough && rate >= self.cfg.failure_rate)
                {
                    self.open(now);
                }
            }
        }
    }

    /// Gives back a probe slot whose request ended with no verdict (a client
    /// cancel, or an error that was the request's fault).
    pub fn release(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.probes_out = self.probes_out.saturating_sub(1);
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.opened += 1;
        self.probes_out = 0;
        self.recent.clear();
        self.consecutive = 0;
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.opened_at = None;
        self.probes_out = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_rate: 0.5,
            window: 10,
            open_for: Duration::from_secs(5),
            probes: 1,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_good_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            assert!(b.acquire(t0));
            b.record(false, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(b.refusal(t0).unwrap().contains("circuit open"));
        assert!(!b.acquire(t0 + Duration::from_secs(4)));
        // Cool-down over: one probe goes, a second is refused while it runs.
        let t1 = t0 + Duration::from_secs(5);
        assert!(b.acquire(t1));
        assert!(!b.acquire(t1));
        b.record(true, t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
        assert_eq!(b.opened, 1);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.record(false, t0);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert!(b.acquire(t1));
        b.record(false, t1);
        assert_eq!(b.state(t1), BreakerState::Open);
        assert!(!b.acquire(t1 + Duration::from_secs(1)));
        assert_eq!(b.opened, 2);
    }

    #[test]
    fn opens_on_failure_rate_without_a_long_run() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        // Alternating: never 3 in a row, but 50% over the window.
        for i in 0..4 {
            b.record(i % 2 == 0, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed, "too few outcomes yet");
        b.record(false, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
    }
}
