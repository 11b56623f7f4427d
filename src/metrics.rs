//! Prometheus metrics through `prometheus-client`: counter and histogram
//! families keyed by label values, and gauges read at scrape time, rendered
//! in the text exposition format (version 0.0.4) by `GET /metrics`.
//!
//! One `Metrics` is shared by every transport and the engine; the engine
//! counts what it decides and spends, the transports only their requests.
//! Label cardinality is bounded: routes come from a fixed set, and the
//! tenant label takes only the tenants named in `telemetry.metric_tenants`
//! (any other counts as `other`), so a caller cannot grow the series.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Request latency buckets in seconds: sub-millisecond routing overhead up to
/// minutes-long completions.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 60.0,
];
/// Classifier latency buckets in seconds: the static table takes ~0.1 ms, the
/// encoder 1–30 ms, a queued request longer.
const CLASSIFY_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];
/// Feedback acknowledged on some replica → in this replica's posterior.
const LAG_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// The tenant label of tenants not named in `telemetry.metric_tenants`.
pub const OTHER_TENANT: &str = "other";

pub type Labels = Vec<(&'static str, String)>;
/// Gauge families read together at scrape time (one read of shared state).
type GaugeFn = Box<dyn Fn() -> Vec<GaugeFamily> + Send + Sync>;

/// One gauge family as read at scrape time: one `(labels, value)` per series.
pub struct GaugeFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub series: Vec<(Labels, f64)>,
}

type Counters = Family<Labels, Counter>;
type CostCounters = Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric Switchyard exports.
pub struct Metrics {
    registry: Registry,
    requests: Counters,
    latency: Histograms,
    decisions: Counters,
    attempts: Counters,
    provider_errors: Counters,
    cost: CostCounters,
    feedback: Counters,
    rules: Counters,
    shadows: Counters,
    shadow_cost: CostCounters,
    cache: Counters,
    cache_saved: CostCounters,
    cache_evictions: Counters,
    classify: Histogram,
    classify_pending: Gauge,
    learner_lag: Histogram,
    gauges: Arc<ScrapeGauges>,
    tenants: HashSet<String>,
}

impl Metrics {
    /// `tenants`: the tenant label values kept apart (others are `other`).
    pub fn new(tenants: impl IntoIterator<Item = String>) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let requests = Counters::default();
        registry.register(
            "switchyard_requests",
            "Requests by transport, route and status code",
            requests.clone(),
        );
        let latency = Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "switchyard_request_duration_seconds",
            "Time to the response head (whole body for unary calls), by transport and route",
            latency.clone(),
        );
        let decisions = Counters::default();
        registry.register(
            "switchyard_decisions",
            "Logged routing decisions by chosen model and whether it was pinned",
            decisions.clone(),
        );
        let attempts = Counters::default();
        registry.register(
            "switchyard_provider_attempts",
            "Provider calls by provider, model and outcome",
            attempts.clone(),
        );
        let provider_errors = Counters::default();
        registry.register(
            "switchyard_provider_errors",
            "Failed provider calls by provider, model and outcome",
            provider_errors.clone(),
        );
        let cost = CostCounters::default();
        registry.register(
            "switchyard_cost_usd",
            "Provider cost in USD by served model and tenant",
            cost.clone(),
        );
        let feedback = Counters::default();
        registry.register(
            "switchyard_feedback",
            "Recorded feedback by source and whether it replaced an earlier value",
            feedback.clone(),
        );
        let rules = Counters::default();
        registry.register(
            "switchyard_rule_matches",
            "Requests a [[routes]] rule matched, by rule and A/B arm (\"\" without a split)",
            rules.clone(),
        );
        let shadows = Counters::default();
        registry.register(
            "switchyard_shadow_calls",
            "Shadow calls by model and outcome (never answered; not in provider attempts)",
            shadows.clone(),
        );
        let shadow_cost = CostCounters::default();
        registry.register(
            "switchyard_shadow_cost_usd",
            "Shadow calls' cost in USD by model (charged to no budget)",
            shadow_cost.clone(),
        );
        let cache = Counters::default();
        registry.register(
            "switchyard_cache_requests",
            "Requests that looked in the response cache, by outcome (hit, miss, bypass)",
            cache.clone(),
        );
        let cache_saved = CostCounters::default();
        registry.register(
            "switchyard_cache_saved_usd",
            "Provider cost in USD not spent because the cache answered, by model",
            cache_saved.clone(),
        );
        let cache_evictions = Counters::default();
        registry.register(
            "switchyard_cache_evictions",
            "Answers the cache let go, by cause (size, expired)",
            cache_evictions.clone(),
        );
        let classify = Histogram::new(CLASSIFY_BUCKETS);
        registry.register(
            "switchyard_classify_duration_seconds",
            "Classifier time per request, including its queue wait",
            classify.clone(),
        );
        let classify_pending = Gauge::default();
        registry.register(
            "switchyard_classify_queue_depth",
            "Requests waiting for or in the classifier",
            classify_pending.clone(),
        );
        let learner_lag = Histogram::new(LAG_BUCKETS);
        registry.register(
            "switchyard_learner_lag_seconds",
            "Shared log (PostgreSQL): from feedback acknowledged on any replica to this replica's posterior",
            learner_lag.clone(),
        );
        let gauges = Arc::new(ScrapeGauges::default());
        registry.register_collector(Box::new(Arc::clone(&gauges)));
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            decisions,
            attempts,
            provider_errors,
            cost,
            feedback,
            rules,
            shadows,
            shadow_cost,
            cache,
            cache_saved,
            cache_evictions,
            classify,
            classify_pending,
            learner_lag,
            gauges,
            tenants: tenants.into_iter().collect(),
        })
    }

    /// Registers a gauge family read at scrape time (e.g. breaker state per
    /// provider and model: return one `(labels, value)` per series).
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> Vec<(Labels, f64)> + Send + Sync + 'static,
    ) {
        self.gauge_families_fn(move || {
            vec![GaugeFamily {
                name,
                help,
                series: read(),
            }]
        });
    }

    /// The learner's lag histogram (shared log only), for the learner to observe into.
    pub fn learner_lag(&self) -> Histogram {
        self.learner_lag.clone()
    }

    /// Registers gauge families read together at scrape time, so that they
    /// come from one consistent (and single) read of the state behind them.
    pub fn gauge_families_fn(&self, read: impl Fn() -> Vec<GaugeFamily> + Send + Sync + 'static) {
        let mut g = self.gauges.0.lock().unwrap_or_else(|p| p.into_inner());
        g.push(Box::new(read));
    }

    /// One finished request (or the head of a streamed one).
    pub fn request(&self, transport: &'static str, route: &'static str, code: &str, d: Duration) {
        let labels = vec![("transport", transport.into()), ("route", route.into())];
        self.latency.get_or_create(&labels).observe(d.as_secs_f64());
        let mut labels = labels;
        labels.push(("code", code.into()));
        self.requests.get_or_create(&labels).inc();
    }

    pub fn decision(&self, model: &str, pinned: bool) {
        let labels = vec![("model", model.into()), ("pinned", pinned.to_string())];
        self.decisions.get_or_create(&labels).inc();
    }

    /// One provider attempt; failures count as errors too (a cancelled call,
    /// a client gone or a hedge lost, is not the provider's error).
    pub fn attempt(&self, provider: &str, model: &str, outcome: &str) {
        let labels = vec![
            ("provider", provider.to_owned()),
            ("model", model.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        if outcome != "ok" && outcome != "cancelled" {
            self.provider_errors.get_or_create(&labels).inc();
        }
        self.attempts.get_or_create(&labels).inc();
    }

    pub fn cost(&self, model: &str, tenant: &str, usd: f64) {
        if usd.is_finite() && usd >= 0.0 {
            let tenant = if self.tenants.contains(tenant) {
                tenant
            } else {
                OTHER_TENANT
            };
            let labels = vec![("model", model.into()), ("tenant", tenant.into())];
            self.cost.get_or_create(&labels).inc_by(usd);
        }
    }

    /// A rule that matched a request; `arm` is its A/B arm when the split is its.
    pub fn rule(&self, rule: &str, arm: &str) {
        let labels = vec![("rule", rule.into()), ("arm", arm.into())];
        self.rules.get_or_create(&labels).inc();
    }

    /// One shadow call and its cost.
    pub fn shadow(&self, model: &str, outcome: &str, usd: f64) {
        let labels = vec![("model", model.into()), ("outcome", outcome.into())];
        self.shadows.get_or_create(&labels).inc();
        if usd.is_finite() && usd > 0.0 {
            let labels = vec![("model", model.into())];
            self.shadow_cost.get_or_create(&labels).inc_by(usd);
        }
    }

    /// A request that looked in the cache and did not take an answer from it.
    pub fn cache_lookup(&self, outcome: &'static str) {
        let labels = vec![("outcome", outcome.into())];
        self.cache.get_or_create(&labels).inc();
    }

    /// A request the cache answered with `model`'s answer, first bought for `usd`.
    pub fn cache_hit(&self, model: &str, usd: f64) {
        self.cache_lookup("hit");
        if usd.is_finite() && usd > 0.0 {
            let labels = vec![("model", model.into())];
            self.cache_saved.get_or_create(&labels).inc_by(usd);
        }
    }

    pub fn cache_evicted(&self, cause: &'static str) {
        let labels = vec![("cause", cause.into())];
        self.cache_evictions.get_or_create(&labels).inc();
    }

    pub fn feedback(&self, source: &str, replaced: bool) {
        let labels = vec![
            ("source", source.into()),
            ("replaced", replaced.to_string()),
        ];
        self.feedback.get_or_create(&labels).inc();
    }

    /// Marks a request entering the classifier; the guard marks it leaving.
    pub fn classify_enter(self: &Arc<Self>) -> PendingGuard {
        self.classify_pending.inc();
        PendingGuard(Arc::clone(self))
    }

    pub fn classified(&self, d: Duration) {
        self.classify.observe(d.as_secs_f64());
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail: this is a bug");
        out
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The gauge families registered with [`Metrics::gauge_families_fn`],
/// encoded at every scrape from one read of their state.
#[derive(Default)]
struct ScrapeGauges(Mutex<Vec<GaugeFn>>);

impl std::fmt::Debug for ScrapeGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeGauges")
    }
}

impl Collector for ScrapeGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reads = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for family in reads.iter().flat_map(|read| read()) {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, MetricType::Gauge)?;
            for (labels, v) in &family.series {
                ConstGauge::new(*v).encode(metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// Decrements the classifier queue gauge when dropped (also on cancellation).
pub struct PendingGuard(Arc<Metrics>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.classify_pending.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Metrics::new(["a\"b\\c\nd".to_string()])
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let m = metrics();
        m.request("http", "chat", "200", Duration::from_micros(300));
        m.request("http", "chat", "200", Duration::from_millis(30));
        m.cost("small", "a\"b\\c\nd", 0.5);
        m.cost("small", "a\"b\\c\nd", 0.25);
        let text = m.render();
        let has = |line: &str| assert!(text.contains(line), "no {line:?} in\n{text}");
        has(
            "switchyard_request_duration_seconds_bucket{transport=\"http\",route=\"chat\",le=\"0.0005\"} 1\n",
        );
        has(
            "switchyard_request_duration_seconds_bucket{transport=\"http\",route=\"chat\",le=\"0.05\"} 2\n",
        );
        has(
            "switchyard_request_duration_seconds_bucket{transport=\"http\",route=\"chat\",le=\"+Inf\"} 2\n",
        );
        has("switchyard_requests_total{transport=\"http\",route=\"chat\",code=\"200\"} 2\n");
        has("switchyard_cost_usd_total{model=\"small\",tenant=\"a\\\"b\\\\c\\nd\"} 0.75\n");
        has("switchyard_classify_queue_depth 0\n");
    }

    #[test]
    fn tenants_not_configured_count_as_other() {
        let m = metrics();
        for t in ["x", "y", ""] {
            m.cost("small", t, 1.0);
        }
        let text = m.render();
        assert!(
            text.contains("switchyard_cost_usd_total{model=\"small\",tenant=\"other\"} 3.0\n"),
            "{text}"
        );
        assert!(!text.contains("tenant=\"x\""), "{text}");
    }

    #[test]
    fn attempts_count_errors_separately() {
        let m = metrics();
        m.attempt("mock", "small", "ok");
        m.attempt("mock", "small", "error");
        m.attempt("mock", "small", "cancelled");
        let text = m.render();
        assert!(text.contains(
            "switchyard_provider_attempts_total{provider=\"mock\",model=\"small\",outcome=\"ok\"} 1\n"
        ));
        assert!(text.contains(
            "switchyard_provider_errors_total{provider=\"mock\",model=\"small\",outcome=\"error\"} 1\n"
        ));
        for not_errors in ["ok", "cancelled"] {
            assert!(!text.contains(&format!(
                "switchyard_provider_errors_total{{provider=\"mock\",model=\"small\",outcome=\"{not_errors}\"}}"
            )));
        }
    }

    #[test]
    fn gauge_callbacks_are_read_at_scrape_time() {
        let m = metrics();
        let _g = m.classify_enter();
        m.gauge_fn("switchyard_breaker_state", "test", || {
            vec![(vec![("provider", "mock".to_string())], 2.0)]
        });
        let text = m.render();
        assert!(
            text.contains("switchyard_classify_queue_depth 1\n"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_breaker_state{provider=\"mock\"} 2.0\n"),
            "{text}"
        );
    }
}
