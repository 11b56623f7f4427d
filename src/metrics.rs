//! Prometheus metrics, hand-rolled: a few counter, gauge and histogram
//! families keyed by label values, rendered in the text exposition format
//! (version 0.0.4) by `GET /metrics`.
//!
//! One `Metrics` is shared by every transport and the engine. Updates take a
//! short mutex per family (a map lookup and an add); at the request rates a
//! router sees this costs well under a microsecond. Gauges whose value lives
//! elsewhere (in-flight permits, later circuit-breaker state) are registered
//! as callbacks read at scrape time: adding one is a single `gauge_fn` call.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

pub type Labels = Vec<(&'static str, String)>;
/// Gauge families read together at scrape time (one read of shared state).
type GaugeFn = Box<dyn Fn() -> Vec<GaugeFamily> + Send + Sync>;

/// One gauge family as read at scrape time: one `(labels, value)` per series.
pub struct GaugeFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub series: Vec<(Labels, f64)>,
}

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A family of counters (monotonic, f64 so USD can be summed).
struct Counter {
    name: &'static str,
    help: &'static str,
    values: Mutex<BTreeMap<Labels, f64>>,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Counter {
            name,
            help,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn add(&self, labels: Labels, v: f64) {
        let mut m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(labels).or_insert(0.0) += v;
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        let m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        for (labels, v) in m.iter() {
            sample(out, self.name, labels, None, *v);
        }
    }
}

struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    buckets: &'static [f64],
    values: Mutex<BTreeMap<Labels, Histogram>>,
}

impl HistogramFamily {
    const fn new(name: &'static str, help: &'static str, buckets: &'static [f64]) -> Self {
        HistogramFamily {
            name,
            help,
            buckets,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn observe(&self, labels: Labels, seconds: f64) {
        let mut m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let h = m.entry(labels).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; self.buckets.len()];
        }
        // Counts are per bucket here and made cumulative when rendered.
        if let Some(i) = self.buckets.iter().position(|b| seconds <= *b) {
            h.counts[i] += 1;
        }
        h.sum += seconds;
        h.count += 1;
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = format!("{}_bucket", self.name);
        for (labels, h) in m.iter() {
            let mut cumulative = 0;
            for (b, c) in self.buckets.iter().zip(&h.counts) {
                cumulative += c;
                sample(
                    out,
                    &bucket,
                    labels,
                    Some(&b.to_string()),
                    cumulative as f64,
                );
            }
            sample(out, &bucket, labels, Some("+Inf"), h.count as f64);
            sample(out, &format!("{}_sum", self.name), labels, None, h.sum);
            sample(
                out,
                &format!("{}_count", self.name),
                labels,
                None,
                h.count as f64,
            );
        }
    }
}

/// Every metric Switchyard exports.
pub struct Metrics {
    requests: Counter,
    latency: HistogramFamily,
    decisions: Counter,
    attempts: Counter,
    provider_errors: Counter,
    cost: Counter,
    feedback: Counter,
    classify: HistogramFamily,
    classify_pending: AtomicI64,
    gauges: Mutex<Vec<GaugeFn>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Counter::new(
                "switchyard_requests_total",
                "Requests by transport, route and status code.",
            ),
            latency: HistogramFamily::new(
                "switchyard_request_duration_seconds",
                "Time to the response head (whole body for unary calls), by transport and route.",
                &LATENCY_BUCKETS,
            ),
            decisions: Counter::new(
                "switchyard_decisions_total",
                "Logged routing decisions by chosen model and whether it was pinned.",
            ),
            attempts: Counter::new(
                "switchyard_provider_attempts_total",
                "Provider calls by provider, model and outcome.",
            ),
            provider_errors: Counter::new(
                "switchyard_provider_errors_total",
                "Failed provider calls by provider, model and outcome.",
            ),
            cost: Counter::new(
                "switchyard_cost_usd_total",
                "Provider cost in USD by served model and tenant.",
            ),
            feedback: Counter::new(
                "switchyard_feedback_total",
                "Recorded feedback by source and whether it replaced an earlier value.",
            ),
            classify: HistogramFamily::new(
                "switchyard_classify_duration_seconds",
                "Classifier time per request, including its queue wait.",
                &CLASSIFY_BUCKETS,
            ),
            classify_pending: AtomicI64::new(0),
            gauges: Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let m = Arc::new(Metrics::default());
        let weak = Arc::downgrade(&m);
        m.gauge_fn(
            "switchyard_classify_queue_depth",
            "Requests waiting for or in the classifier.",
            move || {
                let v = weak
                    .upgrade()
                    .map_or(0, |m| m.classify_pending.load(Ordering::Relaxed));
                vec![(Vec::new(), v as f64)]
            },
        );
        m
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

    /// Registers gauge families read together at scrape time, so that they
    /// come from one consistent (and single) read of the state behind them.
    pub fn gauge_families_fn(&self, read: impl Fn() -> Vec<GaugeFamily> + Send + Sync + 'static) {
        let mut g = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        g.push(Box::new(read));
    }

    /// One finished request (or the head of a streamed one).
    pub fn request(&self, transport: &'static str, route: &'static str, code: &str, d: Duration) {
        self.requests.add(
            vec![
                ("transport", transport.into()),
                ("route", route.into()),
                ("code", code.into()),
            ],
            1.0,
        );
        self.latency.observe(
            vec![("transport", transport.into()), ("route", route.into())],
            d.as_secs_f64(),
        );
    }

    pub fn decision(&self, model: &str, pinned: bool) {
        self.decisions.add(
            vec![("model", model.into()), ("pinned", pinned.to_string())],
            1.0,
        );
    }

    /// One provider attempt; failures count as errors too.
    pub fn attempt(&self, provider: &str, model: &str, outcome: &str) {
        let labels = vec![
            ("provider", provider.to_owned()),
            ("model", model.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        if outcome != "ok" {
            self.provider_errors.add(labels.clone(), 1.0);
        }
        self.attempts.add(labels, 1.0);
    }

    pub fn cost(&self, model: &str, tenant: &str, usd: f64) {
        if usd.is_finite() && usd >= 0.0 {
            self.cost.add(
                vec![("model", model.into()), ("tenant", tenant.into())],
                usd,
            );
        }
    }

    pub fn feedback(&self, source: &str, replaced: bool) {
        self.feedback.add(
            vec![
                ("source", source.into()),
                ("replaced", replaced.to_string()),
            ],
            1.0,
        );
    }

    /// Marks a request entering the classifier; the guard marks it leaving.
    pub fn classify_enter(self: &Arc<Self>) -> PendingGuard {
        self.classify_pending.fetch_add(1, Ordering::Relaxed);
        PendingGuard(Arc::clone(self))
    }

    pub fn classified(&self, d: Duration) {
        self.classify.observe(Vec::new(), d.as_secs_f64());
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        self.requests.render(&mut out);
        self.latency.render(&mut out);
        self.decisions.render(&mut out);
        self.attempts.render(&mut out);
        self.provider_errors.render(&mut out);
        self.cost.render(&mut out);
        self.feedback.render(&mut out);
        self.classify.render(&mut out);
        let g = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        for family in g.iter().flat_map(|read| read()) {
            header(&mut out, family.name, family.help, "gauge");
            for (labels, v) in &family.series {
                sample(&mut out, family.name, labels, None, *v);
            }
        }
        out
    }
}

/// Decrements the classifier queue gauge when dropped (also on cancellation).
pub struct PendingGuard(Arc<Metrics>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.classify_pending.fetch_sub(1, Ordering::Relaxed);
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &Labels, le: Option<&str>, v: f64) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let all = labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(le.map(|l| ("le", l)));
        for (k, v) in all {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {v}");
}

/// Label values escape backslash, double quote and newline (exposition format).
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let m = Metrics::new();
        m.request("http", "chat", "200", Duration::from_micros(300));
        m.request("http", "chat", "200", Duration::from_millis(30));
        m.cost("small", "a\"b\\c\nd", 0.5);
        m.cost("small", "a\"b\\c\nd", 0.25);
        let text = m.render();
        assert!(text.contains(
            "switchyard_request_duration_seconds_bucket{transport=\"http\",route=\"chat\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains(
            "switchyard_request_duration_seconds_bucket{transport=\"http\",route=\"chat\",le=\"0.05\"} 2\n"
        ));
        assert!(text.contains(
            "switchyard_request_duration_seconds_bucket{transport=\"http\",route=\"chat\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains(
            "switchyard_cost_usd_total{model=\"small\",tenant=\"a\\\"b\\\\c\\nd\"} 0.75\n"
        ));
        assert!(text.contains("switchyard_classify_queue_depth 0\n"));
    }

    #[test]
    fn attempts_count_errors_separately() {
        let m = Metrics::new();
        m.attempt("mock", "small", "ok");
        m.attempt("mock", "small", "error");
        let text = m.render();
        assert!(text.contains(
            "switchyard_provider_attempts_total{provider=\"mock\",model=\"small\",outcome=\"ok\"} 1\n"
        ));
        assert!(text.contains(
            "switchyard_provider_errors_total{provider=\"mock\",model=\"small\",outcome=\"error\"} 1\n"
        ));
        assert!(!text.contains(
            "switchyard_provider_errors_total{provider=\"mock\",model=\"small\",outcome=\"ok\"}"
        ));
    }

    #[test]
    fn gauge_callbacks_are_read_at_scrape_time() {
        let m = Metrics::new();
        let _g = m.classify_enter();
        m.gauge_fn("switchyard_breaker_state", "test", || {
            vec![(vec![("provider", "mock".to_string())], 2.0)]
        });
        let text = m.render();
        assert!(text.contains("switchyard_classify_queue_depth 1\n"));
        assert!(text.contains("switchyard_breaker_state{provider=\"mock\"} 2\n"));
    }
}
