//! What the benchmarks share: where the model is, fixed-length texts,
//! percentiles, and an in-process server to drive over real gRPC.
//!
//! Each bench includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

pub mod procs;

use std::path::PathBuf;
use std::time::Duration;

use switchyard::catalog::Catalog;
use switchyard::config::Config;
use switchyard::pb::router_client::RouterClient;
use tonic::transport::Channel;

/// Words that are single wordpieces in the MiniLM vocabulary, so a text of n
/// words is n + 2 tokens.
const WORDS: [&str; 16] = [
    "route", "the", "prompt", "to", "a", "cheap", "model", "when", "it", "can", "answer", "well",
    "and", "fast", "for", "users",
];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `SWITCHYARD_MODEL_DIR`, else the fetched `models/all-MiniLM-L6-v2`.
pub fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/all-MiniLM-L6-v2"))
}

/// An environment variable parsed, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A text meant to tokenise to exactly `tokens` tokens (`[CLS]`/`[SEP]`
/// included); callers check the count with the tokenizer they bench.
pub fn words_text(tokens: usize) -> String {
    (0..tokens.saturating_sub(2))
        .map(|i| WORDS[(i * 7 + i / 16) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `p` quantile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Prints n, p50, p90, p99 and max of latencies in milliseconds.
pub fn summary(name: &str, mut xs: Vec<f64>) {
    xs.sort_by(f64::total_cmp);
    println!(
        "{name:<34} n={:<6} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        xs.len(),
        percentile(&xs, 0.5),
        percentile(&xs, 0.9),
        percentile(&xs, 0.99),
        xs[xs.len() - 1]
    );
}

/// A server running in this process on a loopback port, with a connected
/// client. Stop it with [`Served::stop`] so its log is committed.
pub struct Served {
    pub client: RouterClient<Channel>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    pub async fn start(config: Config) -> anyhow::Result<Served> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let catalog = Catalog::from_env(&config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(switchyard::app::run(config, catalog, listener, async {
            let _ = stopped.await;
        }));
        let client = loop {
            if let Ok(c) = RouterClient::connect(format!("http://{addr}")).await {
                break c;
            }
            anyhow::ensure!(!task.is_finished(), "the server stopped while starting");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Served { client, stop, task })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        drop(self.client);
        let _ = self.stop.send(());
        self.task.await?
    }
}
