//! The failure policy's settings (see `config/default.toml` for what each
//! does and why its default is what it is), and their validation from
//! `[dispatch]`. `dispatch` reads them; they live here so that config builds
//! them without reaching up into the modules that use them.

use std::time::Duration;

use super::raw::RawDispatch;
use super::{ConfigError, invalid};

#[derive(Debug, Clone)]
pub struct FailurePolicy {
    /// One attempt's whole bound, a long generation's included.
    pub attempt_timeout: Duration,
    /// An attempt that has sent no byte (a stream: no event) after this long
    /// is abandoned (`None`: only the attempt timeout bounds it).
    pub first_byte_timeout: Option<Duration>,
    /// A stream that sends nothing for this long after its first event is
    /// abandoned (`None`: only the request's deadline bounds it).
    pub stream_idle_timeout: Option<Duration>,
    /// Hedging (`None`: off).
    pub hedge: Option<HedgeConfig>,
    /// Retries of the same model after a retryable failure.
    pub max_retries: u32,
    pub backoff: BackoffConfig,
    /// Retries may add at most this fraction of extra attempts over traffic.
    pub retry_budget_ratio: f64,
    /// Retries allowed before traffic has paid for them.
    pub retry_budget_reserve: u32,
    /// Try the next model when one fails (never for a pinned model).
    pub fallback: bool,
    /// Other models tried after the first, at most.
    pub max_fallbacks: u32,
    pub breaker: BreakerConfig,
    /// Shed a provider that answered 429 this often in the last 10 s (0: never).
    pub shed_after_429s: u32,
    /// How a model's deployments are ranked.
    pub balance: BalanceWeights,
    /// A failed attempt is a bandit observation with `failure_reward`.
    pub learn_from_failures: bool,
    pub failure_reward: f64,
}

/// Full-jitter exponential backoff between retries: `0 < base <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    base: Duration,
    max: Duration,
}

impl BackoffConfig {
    pub fn try_new(base: Duration, max: Duration) -> Result<Self, String> {
        if base.is_zero() || base > max {
            return Err(format!(
                "backoff base {base:?} must be > 0 and <= max {max:?}"
            ));
        }
        Ok(BackoffConfig { base, max })
    }

    pub fn base(&self) -> Duration {
        self.base
    }

    pub fn max(&self) -> Duration {
        self.max
    }
}

/// When a second attempt races a slow first one: after `after`, or after the
/// model's recent `quantile` time to answer when that is longer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgeConfig {
    pub after: Duration,
    pub quantile: Option<f64>,
}

/// Score points of a deployment per unit of each signal; the lowest score
/// serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceWeights {
    /// Per ms of latency EWMA.
    pub latency: f64,
    /// Per attempt in flight.
    pub in_flight: f64,
    /// Per 429 in the last 10 s.
    pub rate_limited: f64,
    /// Per 100% of price above the model's cheapest deployment.
    pub price: f64,
}

/// When a model's circuit breaker opens and how it probes.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub window: u32,
    pub open_for: Duration,
    pub probes: u32,
}

pub(super) fn validate(d: &RawDispatch) -> Result<FailurePolicy, ConfigError> {
    let backoff = BackoffConfig::try_new(d.backoff_base, d.backoff_max)
        .map_err(|e| invalid("dispatch.backoff_base_ms", e))?;
    let fraction = |field: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(invalid(field, "must be in [0, 1]"))
        }
    };
    let at_least_one = |field: &str, v: u32| {
        if v >= 1 {
            Ok(v)
        } else {
            Err(invalid(field, "must be at least 1"))
        }
    };
    let breaker = BreakerConfig {
        consecutive_failures: at_least_one(
            "dispatch.breaker_consecutive_failures",
            d.breaker_consecutive_failures,
        )?,
        failure_rate: fraction("dispatch.breaker_failure_rate", d.breaker_failure_rate)?,
        window: at_least_one("dispatch.breaker_window", d.breaker_window)?,
        open_for: d.breaker_open.max(Duration::from_millis(1)),
        probes: at_least_one("dispatch.breaker_probes", d.breaker_probes)?,
    };
    let weight = |field: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(invalid(field, "must be a finite number >= 0"))
        }
    };
    let off_if_zero = |d: Duration| (!d.is_zero()).then_some(d);
    if d.attempt_timeout.is_zero() {
        return Err(invalid(
            "dispatch.attempt_timeout_ms",
            "must be greater than 0",
        ));
    }
    Ok(FailurePolicy {
        attempt_timeout: d.attempt_timeout,
        first_byte_timeout: off_if_zero(d.first_byte_timeout),
        stream_idle_timeout: off_if_zero(d.stream_idle_timeout),
        hedge: off_if_zero(d.hedge_after)
            .map(|after| {
                let q = d.hedge_quantile;
                if !(0.0..1.0).contains(&q) {
                    return Err(invalid("dispatch.hedge_quantile", "must be in [0, 1)"));
                }
                Ok(HedgeConfig {
                    after,
                    quantile: (q > 0.0).then_some(q),
                })
            })
            .transpose()?,
        max_retries: d.max_retries,
        backoff,
        retry_budget_ratio: fraction("dispatch.retry_budget_ratio", d.retry_budget_ratio)?,
        retry_budget_reserve: d.retry_budget_reserve,
        fallback: d.fallback,
        max_fallbacks: d.max_fallbacks,
        breaker,
        shed_after_429s: d.shed_after_429s,
        balance: BalanceWeights {
            latency: weight(
                "dispatch.deployment_latency_weight",
                d.deployment_latency_weight,
            )?,
            in_flight: weight(
                "dispatch.deployment_in_flight_weight",
                d.deployment_in_flight_weight,
            )?,
            rate_limited: weight("dispatch.deployment_429_weight", d.deployment_429_weight)?,
            price: weight(
                "dispatch.deployment_price_weight",
                d.deployment_price_weight,
            )?,
        },
        learn_from_failures: d.learn_from_failures,
        failure_reward: fraction("dispatch.failure_reward", d.failure_reward)?,
    })
}
