//! Live health per model and per provider: the circuit breaker, requests in
//! flight, a latency EWMA and recent 429s. Dispatch updates it around every
//! attempt; selection reads it (an open breaker or a provider that is
//! rate-limiting us makes a model ineligible, with the reason; latency and
//! in-flight become a soft load penalty on the score); the engine
//! exports a read-only [`HealthSnapshot`] for metrics.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::breaker::{Breaker, BreakerConfig, BreakerState};
use super::budget::BudgetSnapshot;
use crate::catalog::Catalog;

/// Weight of the newest latency in the EWMA: about the last 10 attempts count.
const EWMA_ALPHA: f64 = 0.2;

/// Successful calls per model whose times to answer hedging reads.
const ANSWER_WINDOW: usize = 64;

/// Fewer answers than this say too little for a percentile.
const ANSWER_MIN_SAMPLES: usize = 16;

/// How far back "recent" 429s reach.
pub const RECENT_429_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Load {
    in_flight: AtomicU64,
    attempts: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    /// (EWMA of latency in ms, times of recent 429s)
    timing: Mutex<(Option<f64>, VecDeque<Instant>)>,
}

impl Load {
    fn finish(&self, latency: Duration, failed: bool, rate_limited: bool, now: Instant) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut t = self.timing.lock().unwrap_or_else(|p| p.into_inner());
        let ms = latency.as_secs_f64() * 1000.0;
        t.0 = Some(t.0.map_or(ms, |e| e + EWMA_ALPHA * (ms - e)));
        if rate_limited {
            t.1.push_back(now);
        }
        prune(&mut t.1, now);
    }

    fn recent_429s(&self, now: Instant) -> u32 {
        let mut t = self.timing.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut t.1, now);
        u32::try_from(t.1.len()).unwrap_or(u32::MAX)
    }

    fn snapshot(&self, now: Instant) -> LoadSnapshot {
        // Its own statement: the guard must be gone before recent_429s locks again.
        let ewma = self.timing.lock().unwrap_or_else(|p| p.into_inner()).0;
        LoadSnapshot {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            latency_ewma_ms: ewma.unwrap_or(0.0),
            recent_429s: self.recent_429s(now),
        }
    }
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) > RECENT_429_WINDOW)
    {
        q.pop_front();
    }
}

/// Counters of one model or provider.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LoadSnapshot {
    pub in_flight: u64,
    pub attempts: u64,
    pub failures: u64,
    pub retries: u64,
    pub latency_ewma_ms: f64,
    /// 429 answers in the last 10 s.
    pub recent_429s: u32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelHealth {
    pub model: String,
    pub provider: String,
    pub breaker: BreakerState,
    pub breaker_opened: u64,
    #[serde(flatten)]
    pub load: LoadSnapshot,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderHealth {
    pub provider: String,
    #[serde(flatten)]
    pub load: LoadSnapshot,
}

/// A read-only picture of dispatch health (for `/metrics` and diagnostics).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HealthSnapshot {
    pub models: Vec<ModelHealth>,
    pub providers: Vec<ProviderHealth>,
    pub retry_budget: BudgetSnapshot,
}

/// Health of every catalog model and provider, indexed like the catalog.
#[derive(Debug)]
pub struct Health {
    breakers: Vec<Mutex<Breaker>>,
    models: Vec<Load>,
    providers: Vec<Load>,
    /// Per model, its last successful calls' times to answer in ms (a
    /// stream's: to its first event), oldest first.
    answers: Vec<Mutex<VecDeque<u32>>>,
    /// A provider with at least this many recent 429s is shed (0: never).
    shed_after_429s: u32,
}

/// A claimed attempt slot: counted in flight until `finish`.
#[must_use = "finish the attempt so its slot and breaker verdict are recorded"]
pub struct AttemptGuard {
    model: usize,
    provider: usize,
    started: Instant,
}

impl Health {
    pub fn new(catalog: &Catalog, breaker: BreakerConfig, shed_after_429s: u32) -> Self {
        Health {
            breakers: catalog
                .models
                .iter()
                .map(|_| Mutex::new(Breaker::new(breaker)))
                .collect(),
            models: catalog.models.iter().map(|_| Load::default()).collect(),
            providers: catalog.providers.iter().map(|_| Load::default()).collect(),
            answers: catalog.models.iter().map(|_| Mutex::default()).collect(),
            shed_after_429s,
        }
    }

    fn breaker(&self, m: usize) -> std::sync::MutexGuard<'_, Breaker> {
        self.breakers[m].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why model `m`'s breaker refuses traffic now; `None` when it does not.
    pub fn breaker_refusal(&self, m: usize, now: Instant) -> Option<String> {
        self.breaker(m).refusal(now)
    }

    /// Why traffic should be shed from `provider` now (it is rate-limiting
    /// us); `None` when it is not.
    pub fn shed_reason(&self, provider: usize, now: Instant) -> Option<String> {
        let n = self.providers[provider].recent_429s(now);
        (self.shed_after_429s > 0 && n >= self.shed_after_429s).then(|| {
            format!(
                "provider shed: it answered 429 {n} times in the last {} s",
                RECENT_429_WINDOW.as_secs()
            )
        })
    }

    /// Model `m`'s latency EWMA in ms (0 until it has served: an unmeasured
    /// model is tried rather than presumed slow) and its attempts in flight,
    /// for load-aware selection.
    pub fn load(&self, m: usize) -> (f64, u64) {
        let l = &self.models[m];
        let ewma = l.timing.lock().unwrap_or_else(|p| p.into_inner()).0;
        (ewma.unwrap_or(0.0), l.in_flight.load(Ordering::Relaxed))
    }

    /// Starts an attempt on model `m` if its breaker lets it through.
    pub fn begin(&self, m: usize, provider: usize, now: Instant) -> Option<AttemptGuard> {
        if !self.breaker(m).acquire(now) {
            return None;
        }
        for l in [&self.models[m], &self.providers[provider]] {
            l.in_flight.fetch_add(1, Ordering::Relaxed);
            l.attempts.fetch_add(1, Ordering::Relaxed);
        }
        Some(AttemptGuard {
            model: m,
            provider,
            started: now,
        })
    }

    /// Ends an attempt. `verdict` is `Some(success)` when the outcome says
    /// something about the model, `None` when it does not (client cancel,
    /// a request the provider rejected as invalid).
    pub fn finish(&self, g: AttemptGuard, verdict: Option<bool>, rate_limited: bool) {
        let now = Instant::now();
        let latency = now.saturating_duration_since(g.started);
        let failed = verdict == Some(false);
        self.models[g.model].finish(latency, failed, rate_limited, now);
        self.providers[g.provider].finish(latency, failed, rate_limited, now);
        let mut b = self.breaker(g.model);
        match verdict {
            Some(ok) => b.record(ok, now),
            None => b.release(),
        }
    }

    /// Records how long a successful call to model `m` took to answer.
    pub fn answered(&self, m: usize, took: Duration) {
        let ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        let mut w = self.answers[m].lock().unwrap_or_else(|p| p.into_inner());
        if w.len() == ANSWER_WINDOW {
            w.pop_front();
        }
        w.push_back(ms);
    }

    /// The `q` quantile of model `m`'s recent times to answer; `None` while
    /// it has answered too few times to tell. Sorting 64 numbers is cheaper
    /// than keeping a sketch, and this runs only when hedging is on.
    pub fn answer_quantile(&self, m: usize, q: f64) -> Option<Duration> {
        let mut recent: Vec<u32> = {
            let w = self.answers[m].lock().unwrap_or_else(|p| p.into_inner());
            w.iter().copied().collect()
        };
        if recent.len() < ANSWER_MIN_SAMPLES {
            return None;
        }
        recent.sort_unstable();
        // Nearest rank.
        let rank = ((q * recent.len() as f64).ceil() as usize).clamp(1, recent.len());
        Some(Duration::from_millis(u64::from(recent[rank - 1])))
    }

    /// Counts a retry of model `m`.
    pub fn retried(&self, m: usize, provider: usize) {
        self.models[m].retries.fetch_add(1, Ordering::Relaxed);
        self.providers[provider]
            .retries
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, catalog: &Catalog, retry_budget: BudgetSnapshot) -> HealthSnapshot {
        let now = Instant::now();
        HealthSnapshot {
            models: catalog
                .models
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let b = self.breaker(i);
                    ModelHealth {
                        model: m.name.clone(),
                        provider: catalog.providers[m.provider].name.clone(),
                        breaker: b.state(now),
                        breaker_opened: b.opened,
                        load: self.models[i].snapshot(now),
                    }
                })
                .collect(),
            providers: catalog
                .providers
                .iter()
                .enumerate()
                .map(|(i, p)| ProviderHealth {
                    provider: p.name.clone(),
                    load: self.providers[i].snapshot(now),
                })
                .collect(),
            retry_budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn answer_quantiles_need_enough_recent_answers() {
        let cfg = Config::embedded();
        let catalog = Catalog::new(&cfg, |_| None);
        let h = Health::new(&catalog, cfg.dispatch.policy.breaker, 0);
        for ms in 1..ANSWER_MIN_SAMPLES as u64 {
            h.answered(0, Duration::from_millis(ms));
        }
        assert_eq!(h.answer_quantile(0, 0.95), None);
        // 1..=100 ms: the window keeps the last 64, 37..=100.
        for ms in ANSWER_MIN_SAMPLES as u64..=100 {
            h.answered(0, Duration::from_millis(ms));
        }
        let q = |q| h.answer_quantile(0, q).unwrap().as_millis();
        assert_eq!(q(0.5), 68);
        assert_eq!(q(0.95), 97);
        assert_eq!(q(0.0), 37);
        assert_eq!(h.answer_quantile(1, 0.5), None, "per model");
    }

    #[test]
    fn load_signals_track_attempts_and_429s_shed_a_provider() {
        let cfg = Config::embedded();
        let catalog = Catalog::new(&cfg, |_| None);
        let h = Health::new(&catalog, cfg.dispatch.policy.breaker, 3);
        let (m, p) = (0, catalog.models[0].provider);
        let now = Instant::now();
        let g = h.begin(m, p, now).unwrap();
        assert_eq!(h.snapshot(&catalog, budget()).models[m].load.in_flight, 1);
        h.finish(g, Some(true), false);
        for _ in 0..2 {
            let g = h.begin(m, p, Instant::now()).unwrap();
            h.finish(g, Some(false), true);
        }
        assert_eq!(
            h.shed_reason(p, Instant::now()),
            None,
            "two 429s are not three"
        );
        let g = h.begin(m, p, Instant::now()).unwrap();
        h.finish(g, Some(false), true);
        assert!(
            h.shed_reason(p, Instant::now())
                .unwrap()
                .contains("429 3 times")
        );
        let s = h.snapshot(&catalog, budget());
        let mh = &s.models[m];
        assert_eq!(
            (mh.load.in_flight, mh.load.attempts, mh.load.failures),
            (0, 4, 3)
        );
        assert_eq!(s.providers[p].load.recent_429s, 3);
        assert!(mh.load.latency_ewma_ms >= 0.0);
        // Out of the window, forgiven.
        assert_eq!(
            h.shed_reason(p, Instant::now() + RECENT_429_WINDOW * 2),
            None
        );
    }

    fn budget() -> BudgetSnapshot {
        crate::dispatch::budget::RetryBudget::new(0.2, 1).snapshot()
    }
}
