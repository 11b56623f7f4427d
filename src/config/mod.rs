//! Configuration: `config/default.toml` (the one place defaults are written),
//! the user's file deep-merged over it and `SWITCHYARD__SECTION__KEY`
//! environment variables over both ([`layers`]), deserialised strictly into
//! typed raw values ([`raw`]), then checked across fields into the [`Config`]
//! the rest of the crate uses.
//!
//! Invariants after [`Config::from_toml`]: names are unique, every model's
//! provider exists, prices are finite and non-negative, priors are in [0, 1] and
//! addresses parse. An unknown key is an error naming the key and its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod bandit;
mod cache;
mod deployments;
mod dispatch_policy;
mod layers;
mod raw;
mod routes;
mod telemetry;
#[cfg(test)]
mod tests;
mod validate;

pub use bandit::{BanditParams, InvalidParams};
pub use cache::CacheConfig;
pub use dispatch_policy::{
    BackoffConfig, BalanceWeights, BreakerConfig, FailurePolicy, HedgeConfig,
};
use raw::RawConfig;
pub use routes::{Match, Profile, RouteRule, Shadow, Split, Sticky, Then, language};
pub use telemetry::{OtlpProtocol, TelemetryConfig};

/// The embedded defaults used when `serve` gets no `--config`.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A key of the wrong type, an unknown key or value, at `path`. The
    /// parser's message is the detail of this one (not a separate cause), so
    /// a chain printer shows it once.
    #[error("invalid config: {path}{}: {detail}", .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Shape {
        path: String,
        line: Option<usize>,
        detail: Box<toml::de::Error>,
    },
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
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    /// Rules evaluated in order before the policy.
    pub routes: Vec<RouteRule>,
    /// Named virtual models, `switchyard/<name>`.
    pub profiles: Vec<Profile>,
}

/// Who may call (see docs/governance.md).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The environment variable holding the admin API's key; `None`: the
    /// admin API is off.
    pub admin_key_env: Option<String>,
    /// Serve without keys on an address other than loopback.
    pub allow_open: bool,
    /// How often the service reads the key table (changes made by the CLI).
    pub reload_interval: Duration,
}

/// Where API keys' rate limits are counted (see docs/governance.md).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub backend: LimitsBackend,
    /// Local counting: each replica allows limit / replicas.
    pub replicas: u32,
    pub redis_url: String,
    /// A Redis call slower than this counts as Redis unreachable.
    pub redis_timeout: Duration,
    /// What a request meets while Redis is unreachable (a key may override).
    pub on_unreachable: OnUnreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsBackend {
    /// Each replica counts its own requests.
    Local,
    /// One atomic count in Redis for every replica.
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnreachable {
    /// Admit (availability first; the limit is not enforced meanwhile).
    Open,
    /// Refuse with 503 / UNAVAILABLE (the limit first).
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who reaches the port may call.
    Off,
    /// Every call carries a valid API key.
    Keys,
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
    /// The operator console at `/console` (its data needs the admin key).
    pub console: bool,
}

/// SQLite `synchronous` level under WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every commit: survives power loss as well as a crash.
    Full,
    /// The default. fsync at checkpoints and at commits holding feedback:
    /// survives a process crash, may lose the newest decisions on power loss.
    Normal,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub synchronous: Synchronous,
    pub max_batch: usize,
    pub max_batch_wait: Duration,
    /// PostgreSQL: the connection URL (`backend = "postgres"`).
    pub url: String,
    /// PostgreSQL: connections per replica.
    pub pool_max: u32,
    /// PostgreSQL: wait for a connection (a new one, or a free one in the pool).
    pub connect_timeout: Duration,
    /// PostgreSQL: the server-side limit on any one statement.
    pub statement_timeout: Duration,
    /// PostgreSQL: the local journal's limit; past it writes are refused.
    pub journal_max_bytes: u64,
    /// PostgreSQL: how often the learner reads other replicas' observations.
    pub follow_interval: Duration,
}

/// Where the decision log lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// An embedded SQLite file (`server.database`): one process.
    Sqlite,
    /// A PostgreSQL database (`store.url`) shared by any number of replicas.
    Postgres,
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
    /// Which conversations keep their model from turn to turn.
    pub affinity: Affinity,
    /// How long a conversation keeps its model after its last turn.
    pub affinity_ttl: Duration,
}

/// Conversation affinity: which requests name a conversation whose model
/// is kept (see docs/selector.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    /// Never: every turn is routed afresh.
    Off,
    /// Requests that carry a session id (`x-session-id`).
    Session,
    /// Those, and multi-turn conversations without one, keyed by their
    /// first messages.
    Derived,
}

/// Which selection policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// The contextual bandit, learning from feedback.
    Bandit,
    /// Configured priors only, deterministic (no learning, no exploration).
    Prior,
}

#[derive(Debug, Clone)]
pub struct BanditConfig {
    pub params: BanditParams,
    /// A state file (sums from offline training) added to what the log teaches.
    pub warm_start: Option<PathBuf>,
    /// Seeds the selection RNG so a sequential replay is reproducible.
    pub seed: Option<u64>,
    /// How often the service checks for a promoted policy (`None`: never).
    pub reload_interval: Option<Duration>,
    /// How far a model with little evidence may be trusted.
    pub new_models: crate::policy::bandit::NewModels,
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub deadline: Duration,
    /// Failure policy (retries, fallback, breaker, learning from failures).
    pub policy: FailurePolicy,
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
    /// The longest a text may wait for a worker (`None`: no bound by time).
    pub max_queue_wait: Option<std::time::Duration>,
    /// Tokens read per prompt (head and tail of longer ones).
    pub max_tokens: usize,
    /// The default task-type head; `None` for none.
    pub intent_head: Option<PathBuf>,
    /// Per-model quality predictors on the embedding (`classify::quality`);
    /// `None` for none.
    pub quality_head: Option<PathBuf>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini generateContent.
    Gemini,
}

impl ProviderKind {
    /// Whether the protocol has no field for the request setting `name` (an
    /// OpenAI parameter name), so that a model behind it cannot honour it.
    pub fn lacks(self, name: &str) -> bool {
        match self {
            // Chat Completions has no top_k.
            ProviderKind::OpenAi => name == "top_k",
            // The Messages API samples with temperature, top_p and top_k only
            // (reasoning is its extended thinking's budget).
            ProviderKind::Anthropic => {
                matches!(name, "seed" | "frequency_penalty" | "presence_penalty")
            }
            // generationConfig has topP, topK, seed, both penalties and a
            // thinking budget; nothing limits a turn to one function call.
            ProviderKind::Gemini => name == "parallel_tool_calls",
        }
    }

    /// Whether the protocol takes an image by `http(s)` URL (Gemini takes
    /// only inline data, or files uploaded to it).
    pub fn takes_image_urls(self) -> bool {
        self != ProviderKind::Gemini
    }

    /// The protocol's name as users write it in the config.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Environment variable holding the API key; `None` for keyless endpoints.
    pub api_key_env: Option<String>,
}

/// What a model can do past plain text, as the catalog declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Function calling: `tools`, tool calls and tool results.
    Tools,
    /// Images in the prompt.
    Vision,
    /// Answers constrained to a JSON Schema.
    JsonSchema,
    /// Reasoning effort / thinking budgets.
    Reasoning,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::Tools => "tools",
            Capability::Vision => "vision",
            Capability::JsonSchema => "json_schema",
            Capability::Reasoning => "reasoning",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub provider: String,
    pub upstream: String,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub cache_read_usd_per_mtok: f64,
    pub cache_write_usd_per_mtok: f64,
    pub context_window: u32,
    pub prior_quality: f64,
    /// Configured fallback chain (model names, validated to exist).
    pub fallback: Vec<String>,
    /// Past plain text; none when the catalog declares none.
    pub capabilities: Vec<Capability>,
    /// Where else the model is served, beyond its own provider (which the
    /// catalog puts first).
    pub deployments: Vec<DeploymentConfig>,
}

/// One more place a model is served, as declared: what it leaves out
/// (`None`) is the model's own, read when the catalog is built so that the
/// model's settings have one source.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentConfig {
    /// Unique within the model; the provider's name unless given.
    pub name: String,
    pub provider: String,
    pub upstream: Option<String>,
    pub input_usd_per_mtok: Option<f64>,
    pub output_usd_per_mtok: Option<f64>,
    /// Unless given, this deployment's input price.
    pub cache_read_usd_per_mtok: Option<f64>,
    /// Unless given, this deployment's input price.
    pub cache_write_usd_per_mtok: Option<f64>,
}

impl Config {
    /// The embedded defaults alone (no file, no environment).
    pub fn embedded() -> Self {
        Self::from_layers(None, std::iter::empty())
            .expect("the embedded default config is valid: this is a bug")
    }

    /// The defaults with the `SWITCHYARD__*` environment over them: what
    /// `serve` runs with no `--config`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_layers(None, std::env::vars())
    }

    /// Reads a config file and merges it, then the `SWITCHYARD__*`
    /// environment, over the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_layers(Some(&text), std::env::vars())
    }

    /// A config file's text merged over the defaults (no environment).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_layers(Some(text), std::iter::empty())
    }

    /// The defaults, then `file` deep-merged over them, then the
    /// `SWITCHYARD__SECTION__KEY` entries of `env`; parsed strictly and
    /// validated. A file with its own `[[models]]` replaces the built-in
    /// catalog (and then must bring its `[[providers]]`).
    pub fn from_layers(
        file: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // Parsed once, not per call: the 15 kB of defaults outweigh a typical
        // file (the config fuzz target reads millions).
        static DEFAULTS: std::sync::LazyLock<toml::Table> = std::sync::LazyLock::new(|| {
            toml::from_str(DEFAULT_TOML).expect("embedded defaults parse: this is a bug")
        });
        let mut merged = DEFAULTS.clone();
        let user = match file {
            Some(text) => toml::from_str::<toml::Table>(text)?,
            None => toml::Table::new(),
        };
        // Provenance the cross-field rules need: static mode picks its own
        // head unless the user named one.
        let head_set = user
            .get("classifier")
            .and_then(|c| c.get("intent_head"))
            .is_some();
        layers::merge(&mut merged, user);
        let env: Vec<(String, String)> = env.into_iter().collect();
        let env_head = env
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("SWITCHYARD__CLASSIFIER__INTENT_HEAD"));
        layers::apply_env(&mut merged, env)?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
                let mut path: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
                let detail = e.into_inner();
                // serde names an unknown key only in its message: add it to
                // the path so the line can be found.
                if let Some(key) = unknown_key(&detail.to_string()) {
                    path.push(key);
                }
                let line = file.and_then(|t| layers::line_of(t, &path));
                ConfigError::Shape {
                    path: path.join("."),
                    line,
                    detail: Box::new(detail),
                }
            })?;
        validate::validate(raw, head_set || env_head)
    }
}

/// The key in serde's standard "unknown field `k`, expected ..." message
/// (config files here; request bodies on the HTTP front).
pub fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}
