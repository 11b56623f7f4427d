//! Live health per model, per deployment and per provider: the circuit
//! breaker (per deployment), requests in flight, a latency EWMA and recent
//! 429s. Dispatch updates it around every
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
use crate::catalog::{Catalog, Deployment};
use crate::config::BalanceWeights;

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

/// `f` of every deployment, per model.
fn per_deployment<T>(catalog: &Catalog, f: impl Fn(&Deployment) -> T) -> Vec<Vec<T>> {
    catalog
        .models
        .iter()
        .map(|m| m.deployments.iter().map(&f).collect())
        .collect()
}

/// How much dearer `price` is than `cheapest` (0.25: 25% dearer).
fn premium(price: f64, cheapest: f64) -> f64 {
    if cheapest > 0.0 {
        price / cheapest - 1.0
    } else if price > 0.0 {
        // Against a free deployment any price is a full premium.
        1.0
    } else {
        0.0
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

/// One deployment of a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeploymentHealth {
    pub model: String,
    pub deployment: String,
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
    pub deployments: Vec<DeploymentHealth>,
    pub providers: Vec<ProviderHealth>,
    pub retry_budget: BudgetSnapshot,
}

/// Health of every catalog model and provider, indexed like the catalog.
#[derive(Debug)]
pub struct Health {
    /// Per model, per deployment.
    breakers: Vec<Vec<Mutex<Breaker>>>,
    models: Vec<Load>,
    /// Per model, per deployment: its load and its provider's index.
    deployments: Vec<Vec<(Load, usize)>>,
    /// Per model, per deployment: whether its provider has its key.
    enabled: Vec<Vec<bool>>,
    /// Per model, the price of each deployment over its cheapest's, minus 1.
    premiums: Vec<Vec<f64>>,
    /// Per model, whose turn it is among deployments that score alike.
    turns: Vec<AtomicU64>,
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
    deployment: usize,
    provider: usize,
    started: Instant,
}

impl Health {
    pub fn new(catalog: &Catalog, breaker: BreakerConfig, shed_after_429s: u32) -> Self {
        Health {
            breakers: per_deployment(catalog, |_| Mutex::new(Breaker::new(breaker))),
            models: catalog.models.iter().map(|_| Load::default()).collect(),
            deployments: per_deployment(catalog, |d| (Load::default(), d.provider)),
            enabled: per_deployment(catalog, |d| catalog.providers[d.provider].enabled()),
            premiums: catalog
                .models
                .iter()
                .map(|m| {
                    let cheapest = m
                        .deployments
                        .iter()
                        .map(|d| d.list_price())
                        .fold(f64::INFINITY, f64::min);
                    m.deployments
                        .iter()
                        .map(|d| premium(d.list_price(), cheapest))
                        .collect()
                })
                .collect(),
            turns: catalog.models.iter().map(|_| AtomicU64::new(0)).collect(),
            providers: catalog.providers.iter().map(|_| Load::default()).collect(),
            answers: catalog.models.iter().map(|_| Mutex::default()).collect(),
            shed_after_429s,
        }
    }

    fn breaker(&self, m: usize, d: usize) -> std::sync::MutexGuard<'_, Breaker> {
        self.breakers[m][d]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Why model `m` can take no traffic now (every deployment's breaker
    /// refuses: the first one's reason); `None` when one can.
    pub fn breaker_refusal(&self, m: usize, now: Instant) -> Option<String> {
        let mut first = None;
        for d in 0..self.breakers[m].len() {
            match self.breaker(m, d).refusal(now) {
                None => return None,
                Some(r) => {
                    first.get_or_insert(r);
                }
            }
        }
        first
    }

    /// Model `m`'s deployments that may take a call now, best first: the
    /// lowest score under `w` (latency EWMA, attempts in flight, recent 429s,
    /// price over the cheapest); deployments that score alike take turns.
    pub fn rank(&self, m: usize, w: &BalanceWeights, now: Instant) -> Vec<usize> {
        let deployments = &self.deployments[m];
        let n = deployments.len();
        // A model's only deployment is called even without its key: the
        // provider's 401 says more than silence would.
        let open =
            |d: usize| (n == 1 || self.enabled[m][d]) && self.breaker(m, d).refusal(now).is_none();
        if n == 1 {
            return if open(0) { vec![0] } else { Vec::new() };
        }
        let turn = self.turns[m].fetch_add(1, Ordering::Relaxed) as usize;
        let mut scored: Vec<(f64, usize, usize)> = (0..n)
            .filter(|&d| open(d))
            .map(|d| {
                let load = &deployments[d].0;
                let ewma = load.timing.lock().unwrap_or_else(|p| p.into_inner()).0;
                let score = w.latency * ewma.unwrap_or(0.0)
                    + w.in_flight * load.in_flight.load(Ordering::Relaxed) as f64
                    + w.rate_limited * f64::from(load.recent_429s(now))
                    + w.price * self.premiums[m][d];
                (score, (d + n - turn % n) % n, d)
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, _, d)| d).collect()
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

    /// Starts an attempt on deployment `d` of model `m` if its breaker lets
    /// it through.
    pub fn begin(&self, m: usize, d: usize, now: Instant) -> Option<AttemptGuard> {
        if !self.breaker(m, d).acquire(now) {
            return None;
        }
        let (load, provider) = &self.deployments[m][d];
        let provider = *provider;
        for l in [&self.models[m], load, &self.providers[provider]] {
            l.in_flight.fetch_add(1, Ordering::Relaxed);
            l.attempts.fetch_add(1, Ordering::Relaxed);
        }
        Some(AttemptGuard {
            model: m,
            deployment: d,
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
        self.deployments[g.model][g.deployment]
            .0
            .finish(latency, failed, rate_limited, now);
        self.providers[g.provider].finish(latency, failed, rate_limited, now);
        let mut b = self.breaker(g.model, g.deployment);
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

    /// Counts a retry of model `m`, whose last attempt went to deployment `d`.
    pub fn retried(&self, m: usize, d: usize) {
        let (load, provider) = &self.deployments[m][d];
        for l in [&self.models[m], load, &self.providers[*provider]] {
            l.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self, catalog: &Catalog, retry_budget: BudgetSnapshot) -> HealthSnapshot {
        let now = Instant::now();
        HealthSnapshot {
            models: catalog
                .models
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    // The model's breaker reads as its best deployment's.
                    let states = (0..m.deployments.len()).map(|d| {
                        let b = self.breaker(i, d);
                        (b.state(now), b.opened)
                    });
                    let openness = |s| match s {
                        BreakerState::Closed => 0,
                        BreakerState::HalfOpen => 1,
                        BreakerState::Open => 2,
                    };
                    let (breaker, breaker_opened) =
                        states.fold((BreakerState::Open, 0), |(best, opened), (s, o)| {
                            let best = if openness(s) < openness(best) {
                                s
                            } else {
                                best
                            };
                            (best, opened + o)
                        });
                    ModelHealth {
                        model: m.name.clone(),
                        provider: catalog.providers[m.provider].name.clone(),
                        breaker,
                        breaker_opened,
                        load: self.models[i].snapshot(now),
                    }
                })
                .collect(),
            deployments: catalog
                .models
                .iter()
                .enumerate()
                .flat_map(|(i, m)| {
                    m.deployments.iter().enumerate().map(move |(d, dep)| {
                        let b = self.breaker(i, d);
                        DeploymentHealth {
                            model: m.name.clone(),
                            deployment: dep.name.clone(),
                            provider: catalog.providers[dep.provider].name.clone(),
                            breaker: b.state(now),
                            breaker_opened: b.opened,
                            load: self.deployments[i][d].0.snapshot(now),
                        }
                    })
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
        let g = h.begin(m, 0, now).unwrap();
        assert_eq!(h.snapshot(&catalog, budget()).models[m].load.in_flight, 1);
        h.finish(g, Some(true), false);
        for _ in 0..2 {
            let g = h.begin(m, 0, Instant::now()).unwrap();
            h.finish(g, Some(false), true);
        }
        assert_eq!(
            h.shed_reason(p, Instant::now()),
            None,
            "two 429s are not three"
        );
        let g = h.begin(m, 0, Instant::now()).unwrap();
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

    #[test]
    fn deployments_rank_by_price_rate_limits_and_breaker_and_take_turns() {
        let toml = "[[providers]]\nname=\"a\"\nkind=\"openai\"\nbase_url=\"http://a\"\n\
             [[providers]]\nname=\"b\"\nkind=\"openai\"\nbase_url=\"http://b\"\n\
             [[models]]\nname=\"m\"\nprovider=\"a\"\ninput_usd_per_mtok=1.0\n\
             output_usd_per_mtok=1.0\ncontext_window=1000\nprior_quality=0.5\n\
             [[models.deployments]]\nprovider=\"b\"\n{price}";
        let weights = |rate_limited| BalanceWeights {
            latency: 0.0,
            in_flight: 1.0,
            rate_limited,
            price: 10.0,
        };
        // Priced alike: they take turns.
        let cfg = Config::from_toml(&toml.replace("{price}", "")).unwrap();
        let catalog = Catalog::new(&cfg, |_| None);
        let h = Health::new(&catalog, cfg.dispatch.policy.breaker, 0);
        let now = Instant::now();
        let firsts: Vec<usize> = (0..4).map(|_| h.rank(0, &weights(5.0), now)[0]).collect();
        assert_eq!(firsts, [0, 1, 0, 1]);
        // In flight counts: the busy one goes second.
        let g = h.begin(0, 0, now).unwrap();
        assert_eq!(h.rank(0, &weights(5.0), now), [1, 0]);
        h.finish(g, Some(true), false);

        // The second costs twice as much: the first wins until it is
        // rate-limited past the price difference (10 points at 5 per 429).
        let cfg = Config::from_toml(&toml.replace(
            "{price}",
            "input_usd_per_mtok=2.0\noutput_usd_per_mtok=2.0\n",
        ))
        .unwrap();
        let catalog = Catalog::new(&cfg, |_| None);
        let h = Health::new(&catalog, cfg.dispatch.policy.breaker, 0);
        assert_eq!(h.rank(0, &weights(5.0), Instant::now()), [0, 1]);
        for _ in 0..3 {
            let g = h.begin(0, 0, Instant::now()).unwrap();
            h.finish(g, Some(true), true);
        }
        assert_eq!(h.rank(0, &weights(5.0), Instant::now()), [1, 0]);
        assert_eq!(h.rank(0, &weights(0.0), Instant::now()), [0, 1]);
        // An open breaker leaves the deployment out; the model is refused
        // only when every deployment's breaker is open.
        let now = Instant::now();
        for _ in 0..cfg.dispatch.policy.breaker.consecutive_failures {
            let g = h.begin(0, 1, now).unwrap();
            h.finish(g, Some(false), false);
        }
        assert_eq!(h.rank(0, &weights(5.0), Instant::now()), [0]);
        assert_eq!(h.breaker_refusal(0, Instant::now()), None);
    }

    fn budget() -> BudgetSnapshot {
        crate::dispatch::budget::RetryBudget::new(0.2, 1).snapshot()
    }
}
