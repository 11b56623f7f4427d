//! Configuration: TOML parsed strictly into raw serde types, then validated into
//! the typed [`Config`] the rest of the crate uses.
//!
//! Invariants after [`Config::from_toml`]: names are unique, every model's
//! provider exists, prices are finite and non-negative, priors are in [0, 1] and
//! addresses parse. An unknown key is an error naming the key and its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod dispatch_policy;
mod raw;
mod telemetry;
#[cfg(test)]
mod tests;
mod validate;

use raw::RawConfig;
pub use telemetry::{OtlpProtocol, TelemetryConfig};

/// The embedded defaults used when `serve` gets no `--config`.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid config: {field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

// ---- validated ----

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub routing: RoutingConfig,
    pub dispatch: DispatchConfig,
    pub classifier: ClassifierSettings,
    pub bandit: BanditConfig,
    pub telemetry: TelemetryConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub grpc_listen: SocketAddr,
    /// The OpenAI-compatible HTTP front; `None` when disabled.
    pub http_listen: Option<SocketAddr>,
    pub database: PathBuf,
    pub max_request_bytes: usize,
    pub max_prompt_bytes: usize,
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    pub store_prompts: bool,
    /// Threads running the async runtime (transports, routing, dispatch,
    /// the writer); 0 for one per core. Inference has its own threads.
    pub worker_threads: usize,
}

/// SQLite `synchronous` level under WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync at every commit: survives power loss as well as a crash.
    Full,
    /// The default. fsync at checkpoints and at commits holding feedback:
    /// survives a process crash, may lose the newest decisions on power loss.
    Normal,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub synchronous: Synchronous,
    pub max_batch: usize,
    pub max_batch_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub cost_weight: f64,
    /// Quality points per second of expected latency (load-aware routing; 0: off).
    pub latency_weight: f64,
    pub default_output_tokens: u32,
    pub policy: PolicyKind,
    /// Classify pinned requests too (their reading only feeds learning).
    pub classify_pinned: bool,
}

/// Which selection policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// The contextual bandit, learning from feedback.
    Bandit,
    /// Configured priors only, deterministic (no learning, no exploration).
    Prior,
}

#[derive(Debug, Clone)]
pub struct BanditConfig {
    pub params: crate::policy::bandit::BanditParams,
    /// A state file (sums from offline training) added to what the log teaches.
    pub warm_start: Option<PathBuf>,
    /// Seeds the selection RNG so a sequential replay is reproducible.
    pub seed: Option<u64>,
    /// How often the service checks for a promoted policy (`None`: never).
    pub reload_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub attempt_timeout: Duration,
    pub deadline: Duration,
    /// Failure policy (retries, fallback, breaker, learning from failures).
    pub policy: crate::dispatch::policy::FailurePolicy,
}

#[derive(Debug, Clone)]
pub struct ClassifierSettings {
    /// Run the local classifier on every request (off: no features, no intent).
    pub enabled: bool,
    pub model_dir: PathBuf,
    pub auto_fetch: bool,
    /// Inference threads; each runs one text at a time.
    pub workers: usize,
    /// Texts that may wait for a worker before RESOURCE_EXHAUSTED.
    pub queue_depth: usize,
    /// Tokens read per prompt (head and tail of longer ones).
    pub max_tokens: usize,
    /// The default task-type head; `None` for none.
    pub intent_head: Option<PathBuf>,
    /// User-defined intents by example utterances.
    pub intents: Vec<IntentExamples>,
    /// User intents replace the default head, or are reported beside it.
    pub intents_replace: bool,
    /// Static mode's table; `None` in full mode.
    pub static_table: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct IntentExamples {
    pub name: String,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini generateContent.
    Gemini,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Environment variable holding the API key; `None` for keyless endpoints.
    pub api_key_env: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub provider: String,
    pub upstream: String,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub context_window: u32,
    pub prior_quality: f64,
    /// Configured fallback chain (model names, validated to exist).
    pub fallback: Vec<String>,
}

impl Config {
    /// The embedded defaults.
    pub fn embedded() -> Self {
        Self::from_toml(DEFAULT_TOML).expect("the embedded default config is valid: this is a bug")
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses strictly and validates. Sections or keys left out take the
    /// embedded defaults; a file with its own `[[models]]` replaces the
    /// built-in catalog (and then must bring its `[[providers]]`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        let defaults: RawConfig = if std::ptr::eq(text, DEFAULT_TOML) {
            RawConfig::default()
        } else {
            toml::from_str(DEFAULT_TOML).expect("embedded defaults parse: this is a bug")
        };
        validate::validate(raw, defaults)
    }
}
