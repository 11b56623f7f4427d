//! Raw values to runtime ones: each value checked against its range, and the
//! rules that span fields; errors name the field. Defaults are not here: the
//! raw values already hold `config/default.toml` under the user's layers.

use std::collections::HashSet;
use std::path::PathBuf;

use super::raw::{
    ClassifierMode, IntentsMode, RawBandit, RawClassifier, RawConfig, RawModel, RawProvider,
};
use super::{
    BanditConfig, ClassifierSettings, Config, ConfigError, DispatchConfig, IntentExamples,
    ModelConfig, ProviderConfig, RoutingConfig, ServerConfig, StoreBackend, StoreConfig, invalid,
};

/// `intent_head_set`: whether a layer above the defaults named
/// `classifier.intent_head` (static mode otherwise takes its own head).
pub(super) fn validate(raw: RawConfig, intent_head_set: bool) -> Result<Config, ConfigError> {
    let s = raw.server;
    let grpc_listen = s
        .grpc_listen
        .parse()
        .map_err(|e| invalid("server.grpc_listen", format!("{:?}: {e}", s.grpc_listen)))?;
    let http_listen = match s.http_listen.trim() {
        "" => None,
        addr => Some(
            addr.parse()
                .map_err(|e| invalid("server.http_listen", format!("{:?}: {e}", s.http_listen)))?,
        ),
    };
    let server = ServerConfig {
        grpc_listen,
        http_listen,
        database: s.database,
        max_request_bytes: positive("server.max_request_bytes", s.max_request_bytes)?,
        max_prompt_bytes: positive("server.max_prompt_bytes", s.max_prompt_bytes)?,
        max_in_flight: positive("server.max_in_flight", s.max_in_flight)?,
        drain_timeout: s.drain_timeout,
        store_prompts: s.store_prompts,
        worker_threads: s.worker_threads,
        console: s.console,
    };
    let st = raw.store;
    if st.backend == StoreBackend::Postgres && st.url.is_empty() {
        return Err(invalid(
            "store.url",
            "backend = \"postgres\" needs the database's URL (postgres://user@host:5432/db)",
        ));
    }
    let store = StoreConfig {
        backend: st.backend,
        synchronous: st.synchronous,
        max_batch: positive("store.max_batch", st.max_batch)?,
        max_batch_wait: st.max_batch_wait,
        url: st.url,
        pool_max: positive("store.pool_max", st.pool_max)?,
        connect_timeout: positive("store.connect_timeout_ms", st.connect_timeout)?,
        statement_timeout: positive("store.statement_timeout_ms", st.statement_timeout)?,
        journal_max_bytes: positive("store.journal_max_mb", st.journal_max_mb)? << 20,
        follow_interval: positive("store.follow_interval_ms", st.follow_interval)?,
    };
    let r = raw.routing;
    let routing = RoutingConfig {
        cost_weight: non_negative("routing.cost_weight", r.cost_weight)?,
        latency_weight: non_negative("routing.latency_weight", r.latency_weight)?,
        default_output_tokens: r.default_output_tokens,
        classify_pinned: r.classify_pinned,
        policy: r.policy,
        affinity: r.affinity,
        affinity_ttl: std::time::Duration::from_secs(r.affinity_ttl_secs),
    };
    let bandit = validate_bandit(raw.bandit)?;
    let dispatch = DispatchConfig {
        deadline: positive("dispatch.deadline_ms", raw.dispatch.deadline)?,
        policy: super::dispatch_policy::validate(&raw.dispatch)?,
    };
    let classifier = validate_classifier(raw.classifier, intent_head_set)?;
    let providers = validate_providers(raw.providers)?;
    let models = validate_models(raw.models, &providers)?;
    let telemetry = super::telemetry::validate(raw.telemetry)?;
    let a = raw.auth;
    let auth = super::AuthConfig {
        mode: a.mode,
        admin_key_env: Some(a.admin_key_env).filter(|v| !v.trim().is_empty()),
        allow_open: a.allow_open,
        reload_interval: positive("auth.reload_interval_ms", a.reload_interval)?,
    };
    super::routes::validate(&raw.routes, &raw.profiles, &models)?;
    let l = raw.limits;
    let limits = super::LimitsConfig {
        backend: l.backend,
        replicas: positive("limits.replicas", l.replicas)?,
        redis_url: l.redis_url,
        redis_timeout: positive("limits.redis_timeout_ms", l.redis_timeout)?,
        on_unreachable: l.on_unreachable,
    };
    Ok(Config {
        limits,
        cache: super::cache::validate(raw.cache)?,
        routes: raw.routes,
        profiles: raw.profiles,
        server,
        store,
        routing,
        dispatch,
        classifier,
        bandit,
        telemetry,
        auth,
        providers,
        models,
    })
}

fn validate_bandit(b: RawBandit) -> Result<BanditConfig, ConfigError> {
    let params = super::BanditParams::try_new(
        b.lambda,
        b.sigma,
        b.explore_floor,
        b.mc_samples,
        b.exploration,
    )
    .map_err(|e| invalid("bandit", e.to_string()))?;
    if !(b.new_model_share > 0.0 && b.new_model_share <= 1.0) {
        return Err(invalid("bandit.new_model_share", "must be in (0, 1]"));
    }
    Ok(BanditConfig {
        new_models: crate::policy::bandit::NewModels {
            share: b.new_model_share,
            evidence: b.new_model_evidence,
        },
        params,
        warm_start: Some(b.warm_start).filter(|p| !p.as_os_str().is_empty()),
        seed: b.seed,
        // 0 turns polling off.
        reload_interval: Some(b.reload_interval_ms)
            .filter(|&ms| ms > 0)
            .map(std::time::Duration::from_millis),
    })
}

fn positive<T: PartialOrd + Default + Copy>(field: &str, v: T) -> Result<T, ConfigError> {
    if v <= T::default() {
        return Err(invalid(field, "must be greater than 0"));
    }
    Ok(v)
}

fn non_negative(field: &str, v: f64) -> Result<f64, ConfigError> {
    if !v.is_finite() || v < 0.0 {
        return Err(invalid(field, "must be a finite number >= 0"));
    }
    Ok(v)
}

fn validate_classifier(
    c: RawClassifier,
    intent_head_set: bool,
) -> Result<ClassifierSettings, ConfigError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !(8..=512).contains(&c.max_tokens) {
        return Err(invalid("classifier.max_tokens", "must be in [8, 512]"));
    }
    let mut seen = HashSet::new();
    let intents = c
        .intents
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
    let static_table = match c.mode {
        ClassifierMode::Full => None,
        ClassifierMode::Static => Some(if c.static_table.as_os_str().is_empty() {
            c.model_dir.join("static-embeddings.bin")
        } else {
            c.static_table
        }),
    };
    // A head only works in the embedding space it was trained in: static mode
    // takes the head trained on static embeddings unless one was named.
    let intent_head = if static_table.is_some() && !intent_head_set {
        PathBuf::from("models/intent-head-static.json")
    } else {
        c.intent_head
    };
    Ok(ClassifierSettings {
        enabled: c.enabled,
        model_dir: c.model_dir,
        auto_fetch: c.auto_fetch,
        workers: if c.workers == 0 { cores } else { c.workers },
        queue_depth: positive("classifier.queue_depth", c.queue_depth)?,
        max_queue_wait: Some(c.max_queue_wait).filter(|d| !d.is_zero()),
        max_tokens: c.max_tokens,
        intent_head: Some(intent_head).filter(|p| !p.as_os_str().is_empty()),
        quality_head: Some(c.quality_head).filter(|p| !p.as_os_str().is_empty()),
        intents,
        intents_replace: c.intents_mode == IntentsMode::Replace,
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
                kind: p.kind,
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
            let fallback = m.fallback.clone();
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
            let cache_read = m.cache_read_usd_per_mtok.unwrap_or(m.input_usd_per_mtok);
            let cache_write = m.cache_write_usd_per_mtok.unwrap_or(m.input_usd_per_mtok);
            for (k, v) in [
                ("input_usd_per_mtok", m.input_usd_per_mtok),
                ("output_usd_per_mtok", m.output_usd_per_mtok),
                ("cache_read_usd_per_mtok", cache_read),
                ("cache_write_usd_per_mtok", cache_write),
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
            let upstream = m.upstream.unwrap_or_else(|| m.name.clone());
            let deployments =
                super::deployments::validate(&field, &m.provider, m.deployments, providers)?;
            Ok(ModelConfig {
                upstream,
                name: m.name,
                provider: m.provider,
                deployments,
                input_usd_per_mtok: m.input_usd_per_mtok,
                output_usd_per_mtok: m.output_usd_per_mtok,
                cache_read_usd_per_mtok: cache_read,
                cache_write_usd_per_mtok: cache_write,
                context_window: m.context_window,
                prior_quality: m.prior_quality,
                fallback,
                capabilities: m.capabilities,
            })
        })
        .collect()
}
