//! The config file's exact shape: every section and key optional, unknown
//! keys rejected. Only `super` turns these into validated values.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) routing: RawRouting,
    #[serde(default)]
    pub(super) dispatch: RawDispatch,
    #[serde(default)]
    pub(super) classifier: RawClassifier,
    #[serde(default)]
    pub(super) bandit: RawBandit,
    #[serde(default)]
    pub(super) telemetry: super::telemetry::RawTelemetry,
    pub(super) providers: Option<Vec<RawProvider>>,
    pub(super) models: Option<Vec<RawModel>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) grpc_listen: Option<String>,
    /// The OpenAI-compatible HTTP front's address ("" disables it).
    pub(super) http_listen: Option<String>,
    pub(super) database: Option<PathBuf>,
    pub(super) max_request_bytes: Option<usize>,
    pub(super) max_prompt_bytes: Option<usize>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) drain_timeout_ms: Option<u64>,
    pub(super) store_prompts: Option<bool>,
    pub(super) worker_threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) synchronous: Option<String>,
    pub(super) max_batch: Option<usize>,
    pub(super) max_batch_wait_us: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) cost_weight: Option<f64>,
    pub(super) latency_weight: Option<f64>,
    pub(super) default_output_tokens: Option<u32>,
    pub(super) policy: Option<String>,
    /// Read pinned requests' prompts with the classifier too (feeds learning, costs latency).
    pub(super) classify_pinned: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBandit {
    pub(super) lambda: Option<f64>,
    pub(super) sigma: Option<f64>,
    pub(super) explore_floor: Option<f64>,
    pub(super) mc_samples: Option<u32>,
    pub(super) exploration: Option<f64>,
    pub(super) warm_start: Option<PathBuf>,
    pub(super) seed: Option<u64>,
    pub(super) reload_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDispatch {
    pub(super) attempt_timeout_ms: Option<u64>,
    pub(super) deadline_ms: Option<u64>,
    // Failure policy (issue 5).
    pub(super) max_retries: Option<u32>,
    pub(super) backoff_base_ms: Option<u64>,
    pub(super) backoff_max_ms: Option<u64>,
    pub(super) retry_budget_ratio: Option<f64>,
    pub(super) retry_budget_reserve: Option<u32>,
    pub(super) fallback: Option<bool>,
    pub(super) max_fallbacks: Option<u32>,
    pub(super) breaker_consecutive_failures: Option<u32>,
    pub(super) breaker_failure_rate: Option<f64>,
    pub(super) breaker_window: Option<u32>,
    pub(super) breaker_open_ms: Option<u64>,
    pub(super) breaker_probes: Option<u32>,
    pub(super) shed_after_429s: Option<u32>,
    pub(super) learn_from_failures: Option<bool>,
    pub(super) failure_reward: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClassifier {
    pub(super) enabled: Option<bool>,
    pub(super) model_dir: Option<PathBuf>,
    /// Fetch the model with the package client when its files are missing.
    pub(super) auto_fetch: Option<bool>,
    pub(super) workers: Option<usize>,
    pub(super) queue_depth: Option<usize>,
    pub(super) max_tokens: Option<usize>,
    pub(super) intent_head: Option<PathBuf>,
    pub(super) intents_mode: Option<String>,
    pub(super) intents: Option<Vec<RawIntent>>,
    /// "full" (the encoder on worker threads) or "static" (the distilled table, inline).
    pub(super) mode: Option<String>,
    /// Static table; default <model_dir>/static-embeddings.bin (`switchyard distill-static`).
    pub(super) static_table: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntent {
    pub(super) name: String,
    pub(super) examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) base_url: String,
    pub(super) api_key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) name: String,
    pub(super) provider: String,
    pub(super) upstream: Option<String>,
    pub(super) input_usd_per_mtok: f64,
    pub(super) output_usd_per_mtok: f64,
    pub(super) context_window: u32,
    pub(super) prior_quality: f64,
    /// Models to fall back to, in order, before the selector's ranking.
    pub(super) fallback: Option<Vec<String>>,
}
