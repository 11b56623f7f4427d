//! Chaos benchmark: Complete at a fixed rate through the real gRPC server
//! (in-process, real SQLite) over the real mock provider, first with a
//! healthy primary (baseline), then with a primary that fails 50% of its
//! requests (mixed 500/502/503, connection resets and hangs) beside a
//! healthy fallback on another protocol.
//!
//! Reports success rate, latency percentiles and what the faults added over
//! the baseline, attempts and retries per request, and how often the
//! fallback served.
//!
//! `cargo bench --bench chaos`. Knobs: `CHAOS_SECONDS` (chaos phase,
//! default 60), `CHAOS_BASELINE_SECONDS` (default 15), `CHAOS_RPS` (default 20),
//! `CHAOS_NO_BREAKER=1` (a breaker that never opens: retries and fallback alone).

use std::time::{Duration, Instant};

use switchyard::catalog::Catalog;
use switchyard::config::Config;
use switchyard::pb;
use switchyard::pb::router_client::RouterClient;
use tokio::sync::oneshot;

/// Provider latency of every answer (mock `slow` + `jitter`): a fast model.
const MOCK_LATENCY: &str = "slow40+jitter20";

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Outcome {
    ok: bool,
    latency_ms: f64,
    attempts: usize,
    /// Attempts on the same model as the one before (retries) and on another (fallbacks).
    retries: usize,
    switches: usize,
    fallback: bool,
}

struct Phase {
    name: &'static str,
    outcomes: Vec<Outcome>,
}

impl Phase {
    fn latencies(&self) -> Vec<f64> {
        let mut xs: Vec<f64> = self
            .outcomes
            .iter()
            .filter(|o| o.ok)
            .map(|o| o.latency_ms)
            .collect();
        xs.sort_by(f64::total_cmp);
        xs
    }

    fn report(&self) {
        let n = self.outcomes.len() as f64;
        let ok = self.outcomes.iter().filter(|o| o.ok).count() as f64;
        let attempts: usize = self.outcomes.iter().map(|o| o.attempts).sum();
        let retries: usize = self.outcomes.iter().map(|o| o.retries).sum();
        let switches: usize = self.outcomes.iter().map(|o| o.switches).sum();
        let fallbacks = self.outcomes.iter().filter(|o| o.fallback).count() as f64;
        let xs = self.latencies();
        println!(
            "{:<9} requests {:>5}  success {:>7.3}%  p50 {:>6.1} ms  p90 {:>6.1} ms  p99 {:>6.1} ms  \
             attempts/req {:.3}  retries/req {:.3}  fallbacks/req {:.3}  served by fallback {:.1}%",
            self.name,
            n,
            100.0 * ok / n,
            pct(&xs, 0.5),
            pct(&xs, 0.9),
            pct(&xs, 0.99),
            attempts as f64 / n,
            retries as f64 / n,
            switches as f64 / n,
            100.0 * fallbacks / n,
        );
    }
}

fn config(mock: std::net::SocketAddr, db: &std::path::Path, breaker: bool) -> Config {
    let breaker = if breaker {
        "breaker_open_ms = 5000"
    } else {
        "breaker_consecutive_failures = 1000000\nbreaker_failure_rate = 1.0\nbreaker_window = 1000000"
    };
    let model = |name: &str, provider: &str, upstream: &str, prior: f64| {
        format!(
            "[[models]]\nname = \"{name}\"\nprovider = \"{provider}\"\nupstream = \"{upstream}+{MOCK_LATENCY}\"\n\
             input_usd_per_mtok = 1.0\noutput_usd_per_mtok = 1.0\ncontext_window = 16000\n\
             prior_quality = {prior}\n"
        )
    };
    let toml = format!(
        r#"
[server]
grpc_listen = "127.0.0.1:0"
database = "{db}"

[classifier]
enabled = false
auto_fetch = false

[routing]
cost_weight = 0.0
policy = "prior"

[dispatch]
attempt_timeout_ms = 1000
deadline_ms = 5000
{breaker}

[[providers]]
name = "oa"
kind = "openai"
base_url = "http://{mock}/v1"

[[providers]]
name = "an"
kind = "anthropic"
base_url = "http://{mock}/v1"

{}{}{}"#,
        model("primary-ok", "oa", "primary-ok", 0.9),
        model("primary-flaky", "oa", "primary-flaky+flaky50", 0.9),
        model("backup", "an", "backup", 0.6),
        db = db.display(),
        breaker = breaker,
    );
    Config::from_toml(&toml).expect("bench config is valid")
}

async fn drive(
    client: &RouterClient<tonic::transport::Channel>,
    name: &'static str,
    primary: &'static str,
    seconds: u64,
    rps: u64,
) -> Phase {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let mut i = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        i += 1;
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let req = pb::CompleteRequest {
                route: Some(pb::RouteRequest {
                    messages: vec![pb::Message {
                        role: "user".into(),
                        content: format!("chaos request {i}"),
                        ..Default::default()
                    }],
                    tenant: "chaos".into(),
                    candidates: vec![primary.into(), "backup".into()],
                    ..Default::default()
                }),
                max_tokens: Some(32),
                ..Default::default()
            };
            let started = Instant::now();
            let r = c.complete(req).await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match r {
                Ok(r) => {
                    let r = r.into_inner();
                    let same = r
                        .attempts
                        .windows(2)
                        .filter(|w| w[0].model == w[1].model)
                        .count();
                    Outcome {
                        ok: true,
                        latency_ms,
                        attempts: r.attempts.len(),
                        retries: same,
                        switches: r.attempts.len().saturating_sub(1) - same,
                        fallback: r.model == "backup",
                    }
                }
                Err(_) => Outcome {
                    ok: false,
                    latency_ms,
                    attempts: 0,
                    retries: 0,
                    switches: 0,
                    fallback: false,
                },
            }
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("request task"));
    }
    Phase { name, outcomes }
}

fn main() -> anyhow::Result<()> {
    let chaos_s = env_u64("CHAOS_SECONDS", 60);
    let base_s = env_u64("CHAOS_BASELINE_SECONDS", 15);
    let rps = env_u64("CHAOS_RPS", 20);
    let breaker = std::env::var("CHAOS_NO_BREAKER").is_err();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mock_addr = listener.local_addr()?;
        let (stop_mock, mock_rx) = oneshot::channel::<()>();
        tokio::spawn(switchyard::mock::serve(
            listener,
            switchyard::mock::MockOptions {
                seed: 42,
                ..Default::default()
            },
            async {
                let _ = mock_rx.await;
            },
        ));
        let config = config(mock_addr, &dir.path().join("chaos.db"), breaker);
        let catalog = Catalog::from_env(&config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(switchyard::app::run(config, catalog, listener, async {
            let _ = rx.await;
        }));
        let mut client = None;
        for _ in 0..100 {
            if let Ok(c) = RouterClient::connect(format!("http://{addr}")).await {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = client.ok_or_else(|| anyhow::anyhow!("server did not start"))?;
        println!(
            "chaos: {rps} Complete/s; baseline {base_s} s, then {chaos_s} s with the primary \
             failing 50% (500/502/503/reset/hang); provider latency {MOCK_LATENCY} ms; \
             breaker {}",
            if breaker { "on" } else { "off" }
        );
        let baseline = drive(&client, "baseline", "primary-ok", base_s, rps).await;
        let chaos = drive(&client, "chaos", "primary-flaky", chaos_s, rps).await;
        baseline.report();
        chaos.report();
        let (b, c) = (baseline.latencies(), chaos.latencies());
        println!(
            "added by faults: p50 {:+.1} ms  p90 {:+.1} ms  p99 {:+.1} ms",
            pct(&c, 0.5) - pct(&b, 0.5),
            pct(&c, 0.9) - pct(&b, 0.9),
            pct(&c, 0.99) - pct(&b, 0.99),
        );
        let _ = stop.send(());
        server.await??;
        let _ = stop_mock.send(());
        anyhow::Ok(())
    })
}
