//! Validation of `[dispatch]`'s failure-policy keys.

use std::time::Duration;

use super::raw::RawDispatch;
use super::{ConfigError, invalid};
use crate::dispatch::backoff::Backoff;
use crate::dispatch::breaker::BreakerConfig;
use crate::dispatch::policy::FailurePolicy;

pub(super) fn validate(raw: &RawDispatch, d: &RawDispatch) -> Result<FailurePolicy, ConfigError> {
    let def = FailurePolicy::default_breaker();
    let base = raw.backoff_base_ms.or(d.backoff_base_ms).unwrap_or(100);
    let max = raw.backoff_max_ms.or(d.backoff_max_ms).unwrap_or(2_000);
    let backoff = Backoff::try_new(Duration::from_millis(base), Duration::from_millis(max))
        .map_err(|e| invalid("dispatch.backoff_base_ms", e.to_string()))?;
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
            raw.breaker_consecutive_failures
                .or(d.breaker_consecutive_failures)
                .unwrap_or(def.consecutive_failures),
        )?,
        failure_rate: fraction(
            "dispatch.breaker_failure_rate",
            raw.breaker_failure_rate
                .or(d.breaker_failure_rate)
                .unwrap_or(def.failure_rate),
        )?,
        window: at_least_one(
            "dispatch.breaker_window",
            raw.breaker_window
                .or(d.breaker_window)
                .unwrap_or(def.window),
        )?,
        open_for: Duration::from_millis(
            raw.breaker_open_ms
                .or(d.breaker_open_ms)
                .unwrap_or(30_000)
                .max(1),
        ),
        probes: at_least_one(
            "dispatch.breaker_probes",
            raw.breaker_probes
                .or(d.breaker_probes)
                .unwrap_or(def.probes),
        )?,
    };
    Ok(FailurePolicy {
        max_retries: raw.max_retries.or(d.max_retries).unwrap_or(2),
        backoff,
        retry_budget_ratio: fraction(
            "dispatch.retry_budget_ratio",
            raw.retry_budget_ratio
                .or(d.retry_budget_ratio)
                .unwrap_or(0.2),
        )?,
        retry_budget_reserve: raw
            .retry_budget_reserve
            .or(d.retry_budget_reserve)
            .unwrap_or(10),
        fallback: raw.fallback.or(d.fallback).unwrap_or(true),
        max_fallbacks: raw.max_fallbacks.or(d.max_fallbacks).unwrap_or(2),
        breaker,
        shed_after_429s: raw.shed_after_429s.or(d.shed_after_429s).unwrap_or(5),
        learn_from_failures: raw
            .learn_from_failures
            .or(d.learn_from_failures)
            .unwrap_or(true),
        failure_reward: fraction(
            "dispatch.failure_reward",
            raw.failure_reward.or(d.failure_reward).unwrap_or(0.0),
        )?,
    })
}
