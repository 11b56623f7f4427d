//! Dispatch health as Prometheus gauges: breaker state per model, and load
//! per provider (in flight, latency EWMA, recent 429s) plus the retry budget.
//! They are read from the live [`Health`] at scrape time, so `/metrics`
//! shows exactly what selection sees.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::dispatch::breaker::BreakerState;
use crate::dispatch::budget::RetryBudget;
use crate::dispatch::health::{Health, HealthSnapshot, LoadSnapshot, ModelHealth};
use crate::metrics::{GaugeFamily, Labels, Metrics};

/// The shared state a scrape reads.
struct Source {
    health: Arc<Health>,
    budget: Arc<RetryBudget>,
    catalog: Arc<Catalog>,
}

impl Source {
    fn snapshot(&self) -> HealthSnapshot {
        self.health.snapshot(&self.catalog, self.budget.snapshot())
    }
}

/// Breaker states as numbers, ordered by how much traffic they refuse.
fn breaker_value(s: BreakerState) -> f64 {
    match s {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    }
}

pub(super) fn register(
    metrics: &Metrics,
    health: Arc<Health>,
    budget: Arc<RetryBudget>,
    catalog: Arc<Catalog>,
) {
    let src = Source {
        health,
        budget,
        catalog,
    };
    // One snapshot per scrape serves every family.
    metrics.gauge_families_fn(move || families(&src.snapshot()));
}

fn families(s: &HealthSnapshot) -> Vec<GaugeFamily> {
    let per_model = |f: fn(&ModelHealth) -> f64| -> Vec<(Labels, f64)> {
        s.models
            .iter()
            .map(|m| {
                let labels = vec![("provider", m.provider.clone()), ("model", m.model.clone())];
                (labels, f(m))
            })
            .collect()
    };
    let per_provider = |f: fn(&LoadSnapshot) -> f64| -> Vec<(Labels, f64)> {
        s.providers
            .iter()
            .map(|p| (vec![("provider", p.provider.clone())], f(&p.load)))
            .collect()
    };
    let family = |name, help, series| GaugeFamily { name, help, series };
    vec![
        family(
            "switchyard_breaker_state",
            "Circuit breaker per model: 0 closed, 1 half-open, 2 open.",
            per_model(|m| breaker_value(m.breaker)),
        ),
        family(
            "switchyard_model_in_flight",
            "Provider attempts in flight per model.",
            per_model(|m| m.load.in_flight as f64),
        ),
        family(
            "switchyard_provider_in_flight",
            "Attempts in flight per provider.",
            per_provider(|l| l.in_flight as f64),
        ),
        family(
            "switchyard_provider_latency_ewma_ms",
            "Exponentially weighted mean attempt latency per provider (ms).",
            per_provider(|l| l.latency_ewma_ms),
        ),
        family(
            "switchyard_provider_recent_429s",
            "429 answers per provider in the last 10 seconds.",
            per_provider(|l| f64::from(l.recent_429s)),
        ),
        family(
            "switchyard_retry_budget_balance",
            "Retries the retry budget allows right now.",
            vec![(Vec::new(), s.retry_budget.balance)],
        ),
    ]
}
