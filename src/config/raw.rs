//! The config's exact shape, after the user's file (and the environment) are
//! merged over `config/default.toml` ([`super::layers`]): every key the
//! defaults file holds is required here, so no default is written in code.
//! Unknown keys are rejected; enums and durations are typed by serde.
//! Only `super` turns these into the runtime values.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{Affinity, AuthMode, Capability, PolicyKind, ProviderKind, Synchronous};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) store: RawStore,
    pub(super) routing: RawRouting,
    pub(super) dispatch: RawDispatch,
    pub(super) classifier: RawClassifier,
    pub(super) bandit: RawBandit,
    pub(super) telemetry: super::telemetry::RawTelemetry,
    pub(super) auth: RawAuth,
    pub(super) limits: RawLimits,
    pub(super) cache: super::cache::RawCache,
    #[serde(default)]
    pub(super) providers: Vec<RawProvider>,
    #[serde(default)]
    pub(super) models: Vec<RawModel>,
    #[serde(default)]
    pub(super) routes: Vec<super::RouteRule>,
    #[serde(default)]
    pub(super) profiles: Vec<super::Profile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) grpc_listen: String,
    /// The OpenAI-compatible HTTP front's address ("" disables it).
    pub(super) http_listen: String,
    pub(super) database: PathBuf,
    pub(super) max_request_bytes: usize,
    pub(super) max_prompt_bytes: usize,
    pub(super) max_in_flight: usize,
    #[serde(rename = "drain_timeout_ms", deserialize_with = "millis")]
    pub(super) drain_timeout: Duration,
    pub(super) store_prompts: bool,
    pub(super) worker_threads: usize,
    pub(super) console: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) backend: super::StoreBackend,
    pub(super) url: String,
    pub(super) pool_max: u32,
    #[serde(rename = "connect_timeout_ms", deserialize_with = "millis")]
    pub(super) connect_timeout: Duration,
    #[serde(rename = "statement_timeout_ms", deserialize_with = "millis")]
    pub(super) statement_timeout: Duration,
    pub(super) journal_max_mb: u64,
    #[serde(rename = "follow_interval_ms", deserialize_with = "millis")]
    pub(super) follow_interval: Duration,
    pub(super) synchronous: Synchronous,
    pub(super) max_batch: usize,
    #[serde(rename = "max_batch_wait_us", deserialize_with = "micros")]
    pub(super) max_batch_wait: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub(super) mode: AuthMode,
    pub(super) admin_key_env: String,
    pub(super) allow_open: bool,
    #[serde(rename = "reload_interval_ms", deserialize_with = "millis")]
    pub(super) reload_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) backend: super::LimitsBackend,
    pub(super) replicas: u32,
    pub(super) redis_url: String,
    #[serde(rename = "redis_timeout_ms", deserialize_with = "millis")]
    pub(super) redis_timeout: Duration,
    pub(super) on_unreachable: super::OnUnreachable,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) cost_weight: f64,
    pub(super) latency_weight: f64,
    pub(super) default_output_tokens: u32,
    pub(super) policy: PolicyKind,
    /// Read pinned requests' prompts with the classifier too (feeds learning, costs latency).
    pub(super) classify_pinned: bool,
    pub(super) affinity: Affinity,
    pub(super) affinity_ttl_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBandit {
    pub(super) lambda: f64,
    pub(super) sigma: f64,
    pub(super) explore_floor: f64,
    pub(super) mc_samples: u32,
    pub(super) exploration: f64,
    pub(super) warm_start: PathBuf,
    /// Unset by default (the defaults file shows it commented out).
    pub(super) seed: Option<u64>,
    pub(super) reload_interval_ms: u64,
    #[serde(default = "one")]
    pub(super) new_model_share: f64,
    #[serde(default)]
    pub(super) new_model_evidence: u64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDispatch {
    #[serde(rename = "attempt_timeout_ms", deserialize_with = "millis")]
    pub(super) attempt_timeout: Duration,
    #[serde(rename = "deadline_ms", deserialize_with = "millis")]
    pub(super) deadline: Duration,
    #[serde(rename = "first_byte_timeout_ms", deserialize_with = "millis")]
    pub(super) first_byte_timeout: Duration,
    #[serde(rename = "stream_idle_timeout_ms", deserialize_with = "millis")]
    pub(super) stream_idle_timeout: Duration,
    #[serde(rename = "hedge_after_ms", deserialize_with = "millis")]
    pub(super) hedge_after: Duration,
    pub(super) hedge_quantile: f64,
    pub(super) max_retries: u32,
    #[serde(rename = "backoff_base_ms", deserialize_with = "millis")]
    pub(super) backoff_base: Duration,
    #[serde(rename = "backoff_max_ms", deserialize_with = "millis")]
    pub(super) backoff_max: Duration,
    pub(super) retry_budget_ratio: f64,
    pub(super) retry_budget_reserve: u32,
    pub(super) fallback: bool,
    pub(super) max_fallbacks: u32,
    pub(super) breaker_consecutive_failures: u32,
    pub(super) breaker_failure_rate: f64,
    pub(super) breaker_window: u32,
    #[serde(rename = "breaker_open_ms", deserialize_with = "millis")]
    pub(super) breaker_open: Duration,
    pub(super) breaker_probes: u32,
    pub(super) shed_after_429s: u32,
    /// How a model's deployments are ranked (score points per unit).
    pub(super) deployment_latency_weight: f64,
    pub(super) deployment_in_flight_weight: f64,
    pub(super) deployment_429_weight: f64,
    pub(super) deployment_price_weight: f64,
    pub(super) learn_from_failures: bool,
    pub(super) failure_reward: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClassifier {
    pub(super) enabled: bool,
    pub(super) model_dir: PathBuf,
    /// Fetch the model with the package client when its files are missing.
    pub(super) auto_fetch: bool,
    pub(super) workers: usize,
    pub(super) queue_depth: usize,
    #[serde(rename = "max_queue_wait_ms", deserialize_with = "millis")]
    pub(super) max_queue_wait: Duration,
    pub(super) max_tokens: usize,
    pub(super) intent_head: PathBuf,
    /// Per-model quality head; "" for none.
    #[serde(default)]
    pub(super) quality_head: PathBuf,
    pub(super) intents_mode: IntentsMode,
    #[serde(default)]
    pub(super) intents: Vec<RawIntent>,
    pub(super) mode: ClassifierMode,
    /// Static table; "" is `<model_dir>/static-embeddings.bin` (`switchyard distill-static`).
    pub(super) static_table: PathBuf,
}

/// Whether user-defined intents run beside the default head or replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum IntentsMode {
    Beside,
    Replace,
}

/// The full encoder on worker threads, or the distilled table inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ClassifierMode {
    Full,
    Static,
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
    pub(super) kind: ProviderKind,
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
    /// Prompt tokens read from the provider's cache; omitted, the input price.
    pub(super) cache_read_usd_per_mtok: Option<f64>,
    /// Prompt tokens written to the provider's cache; omitted, the input price.
    pub(super) cache_write_usd_per_mtok: Option<f64>,
    pub(super) context_window: u32,
    pub(super) prior_quality: f64,
    /// Models to fall back to, in order, before the selector's ranking.
    #[serde(default)]
    pub(super) fallback: Vec<String>,
    /// What the model can do past plain text; omitted, nothing.
    #[serde(default)]
    pub(super) capabilities: Vec<Capability>,
    /// More deployments of the same model (another host, key or region).
    #[serde(default)]
    pub(super) deployments: Vec<RawDeployment>,
}

/// One more place a model is served; what it leaves out is the model's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeployment {
    pub(super) name: Option<String>,
    pub(super) provider: String,
    pub(super) upstream: Option<String>,
    pub(super) input_usd_per_mtok: Option<f64>,
    pub(super) output_usd_per_mtok: Option<f64>,
    pub(super) cache_read_usd_per_mtok: Option<f64>,
    pub(super) cache_write_usd_per_mtok: Option<f64>,
}

/// A `*_ms` key as a duration.
pub(super) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A `*_us` key as a duration.
fn micros<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_micros)
}
