//! The failure policy's settings, validated (see `config/default.toml` for
//! what each does and why its default is what it is).

use std::time::Duration;

use super::backoff::Backoff;
use super::breaker::BreakerConfig;

#[derive(Debug, Clone)]
pub struct FailurePolicy {
    /// Retries of the same model after a retryable failure.
    pub max_retries: u32,
    pub backoff: Backoff,
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
    /// A failed attempt is a bandit observation with `failure_reward`.
    pub learn_from_failures: bool,
    pub failure_reward: f64,
}

impl FailurePolicy {
    /// The breaker settings' defaults, also used by tests.
    pub fn default_breaker() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: 20,
            open_for: Duration::from_secs(30),
            probes: 1,
        }
    }
}
