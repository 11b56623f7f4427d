//! Raw values to typed ones: defaults filled in from the embedded file, every
//! value checked, errors naming the field.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawBandit, RawClassifier, RawConfig, RawModel, RawProvider};
use super::{
    BanditConfig, ClassifierSettings, Config, ConfigError, DispatchConfig, IntentExamples,
    ModelConfig, PolicyKind, ProviderConfig, ProviderKind, RoutingConfig, ServerConfig,
    StoreConfig, Synchronous, invalid,
};

pub(super) fn validate(raw: RawConfig, d: RawConfig) -> Result<Config, ConfigError> {
    let s = raw.server;
    let listen = s
        .grpc_listen
        .or(d.server.grpc_listen)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let grpc_listen = listen
        .parse()
        .map_err(|e| invalid("server.grpc_listen", format!("{listen:?}: {e}")))?;
    let http = s.http_listen.or(d.server.http_listen).unwrap_or_default();
    let http_listen = match http.trim() {
        "" => None,
        addr => Some(
            addr.parse()
                .map_err(|e| invalid("server.http_listen", format!("{http:?}: {e}")))?,
        ),
    };
    let server = ServerConfig {
        grpc_listen,
        http_listen,
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
        worker_threads: s.worker_threads.or(d.server.worker_threads).unwrap_or(1),
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
    let latency_weight = raw
        .routing
        .latency_weight
        .or(d.routing.latency_weight)
        .unwrap_or(0.02);
    if !latency_weight.is_finite() || latency_weight < 0.0 {
        return Err(invalid(
            "routing.latency_weight",
            "must be a finite number >= 0",
        ));
    }
    let routing = RoutingConfig {
        cost_weight,
        latency_weight,
        default_output_tokens: raw
            .routing
            .default_output_tokens
            .or(d.routing.default_output_tokens)
            .unwrap_or(256),
        classify_pinned: raw
            .routing
            .classify_pinned
            .or(d.routing.classify_pinned)
            .unwrap_or(false),
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
        policy: super::dispatch_policy::validate(&raw.dispatch, &d.dispatch)?,
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
    let telemetry = super::telemetry::validate(raw.telemetry, d.telemetry)?;
    Ok(Config {
        server,
        store,
        routing,
        dispatch,
        classifier,
        bandit,
        telemetry,
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
        // 0 turns polling off.
        reload_interval: Some(
            b.reload_interval_ms
                .or(d.reload_interval_ms)
                .unwrap_or(5000),
        )
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis),
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
                "anthropic" => ProviderKind::Anthropic,
                "gemini" => ProviderKind::Gemini,
                other => {
                    return Err(invalid(
                        field("kind"),
                        format!(
                            "{other:?} is not a supported kind (\"openai\", \"anthropic\", \"gemini\")"
                        ),
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
    let names: HashSet<String> = raw.iter().map(|m| m.name.clone()).collect();
    raw.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = |k: &str| format!("models[{i}].{k}");
            let fallback = m.fallback.clone().unwrap_or_default();
            if let Some(bad) = fallback
                .iter()
                .find(|f| !names.contains(*f) || **f == m.name)
            {
                return Err(invalid(
                    field("fallback"),
                    format!("{bad:?} is not another model of the catalog"),
                ));
            }
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
                fallback,
            })
        })
        .collect()
}
