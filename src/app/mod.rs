//! Assembly: every part of the service is built here, in one place, from a
//! validated [`Config`]: the decision log, the classifier, the policy and its
//! learner, the HTTP client, the failure policy, metrics, and the [`Engine`]
//! over them. The transports in [`crate::server`] and [`crate::http`] take
//! the built engine and only serve; `main` only parses flags and calls here.

mod gauges;
mod overrides;

pub use overrides::Overrides;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::classify::Reader;
use crate::config::{Config, PolicyKind};
use crate::dispatch::Dispatcher;
use crate::dispatch::failover::Failover;
use crate::engine::output_tokens::OutputTokens;
use crate::engine::{Engine, Parts};
use crate::learn::{Follow, Learning};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::policy::bandit::Serving;
use crate::policy::features;
use crate::policy::prior::PriorPolicy;
use crate::store::{Store, WriterHandle};

/// How long shutdown waits for the log's last commit.
const WRITER_DRAIN: Duration = Duration::from_secs(10);

/// How long an idle pooled provider connection is kept: long enough to reuse
/// across bursts, short enough to drop before providers' own idle cut-offs.
const PROVIDER_POOL_IDLE: Duration = Duration::from_secs(90);

/// The built service: the engine and what must be closed after serving.
pub struct App {
    pub engine: Arc<Engine>,
    store: Store,
    writer: WriterHandle,
}

impl App {
    /// Opens the log, loads the classifier, starts learning and builds the
    /// engine.
    pub async fn build(config: Config, catalog: Catalog) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let config_auth = config.auth.clone();
        let config_limits = config.limits.clone();
        let (store, writer) = Store::open(&config.server.database, &config.store).await?;
        let reader = load_reader(&config).await?;
        let catalog = Arc::new(catalog);
        let metrics = Metrics::new(config.telemetry.metric_tenants.iter().cloned());
        let layout = layout(reader.as_deref(), &catalog);
        let serving = Serving {
            arms: catalog.arms(),
            anchors: layout.anchors,
            new_models: config.bandit.new_models,
        };
        let (policy, learning) = policy(&config, &serving, layout.dim, &store, &metrics).await?;
        let http = reqwest::Client::builder()
            .pool_idle_timeout(PROVIDER_POOL_IDLE)
            .build()
            .context("building the provider HTTP client")?;
        let failover = Failover::new(Arc::clone(&catalog), config.dispatch.policy.clone());
        gauges::register(
            &metrics,
            Arc::clone(failover.health()),
            Arc::clone(failover.retry_budget()),
            Arc::clone(&catalog),
        );
        let rules = Arc::new(crate::rules::Rules::new(&config, &catalog)?);
        let variants = variant_policies(&rules, &serving, layout.dim)?;
        let engine = Engine::new(Parts {
            cache: crate::cache::Cache::new(&config.cache, &metrics)?,
            rules,
            variants,
            output_tokens: OutputTokens::load(&store).await?,
            config,
            catalog,
            policy,
            learning,
            reader,
            store: store.clone(),
            dispatcher: Dispatcher::new(http),
            failover,
            metrics,
            gate: crate::auth::Gate::start(&config_auth, &config_limits, store.clone()).await?,
        });
        Ok(App {
            engine: Arc::new(engine),
            store,
            writer,
        })
    }

    /// Waits for the decision log's last commit, once the transports are done
    /// with the engine.
    pub async fn close(self) {
        drop(self.engine);
        self.store.close().await;
        // Every writer handle is gone once in-flight work ends; bound the wait
        // so a stuck client cannot keep the process alive.
        if tokio::time::timeout(WRITER_DRAIN, self.writer.finished())
            .await
            .is_err()
        {
            tracing::warn!("the decision log writer did not finish in time");
        }
        tracing::info!("stopped");
    }
}

/// Serves gRPC on `listener` and HTTP on `server.http_listen` (when set)
/// until `shutdown` resolves; see [`run_with`].
pub async fn run(
    config: Config,
    catalog: Catalog,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http = match config.server.http_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding server.http_listen {addr}"))?,
        ),
        None => None,
    };
    run_with(config, catalog, listener, http, shutdown).await
}

/// Builds the service, serves gRPC on `listener` and the HTTP front on `http`
/// until `shutdown` resolves, drains both, then closes the log.
pub async fn run_with(
    config: Config,
    catalog: Catalog,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::build(config, catalog).await?;
    let served = crate::server::serve(Arc::clone(&app.engine), listener, http, shutdown).await;
    app.close().await;
    served
}

/// The catalog a config yields with the environment's keys, one line per
/// model (what `check-config` prints).
pub fn describe_catalog(catalog: &Catalog) -> String {
    let mut out = String::new();
    for m in &catalog.models {
        let p = &catalog.providers[m.provider];
        out.push_str(&format!(
            "{:<20} {:<12} in ${:>6}/Mtok out ${:>6}/Mtok ctx {:>8} prior {:.2} {}{}\n",
            m.name,
            p.name,
            m.input_usd_per_mtok,
            m.output_usd_per_mtok,
            m.context_window,
            m.prior_quality,
            p.disabled_reason().unwrap_or_else(|| "enabled".into()),
            capabilities(&m.capabilities)
        ));
    }
    out
}

/// The profiles and `[[routes]]` rules, one line each, in order.
pub fn describe_rules(config: &Config) -> String {
    let mut out = String::new();
    for p in &config.profiles {
        out.push_str(&format!(
            "profile switchyard/{} {}\n",
            p.name,
            p.then.candidates.join(",")
        ));
    }
    for (i, r) in config.routes.iter().enumerate() {
        out.push_str(&format!(
            "route {i} {}{}\n",
            r.name,
            if r.last { " (last)" } else { "" }
        ));
    }
    out
}

/// `" (tools, vision)"`, or nothing for a text-only model.
fn capabilities(caps: &[crate::config::Capability]) -> String {
    if caps.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = caps.iter().map(|c| c.name()).collect();
    format!(" ({})", names.join(", "))
}

/// What `serve` needs before the runtime starts: the model files in place
/// (when `classifier.auto_fetch`), and the catalog, with a warning for each
/// provider that is off.
pub fn prepare(config: &Config) -> anyhow::Result<Catalog> {
    if config.classifier.enabled && config.classifier.auto_fetch {
        crate::modelfetch::ensure(&config.classifier.model_dir, false)
            .context("fetching the classifier model")?;
    }
    let catalog = Catalog::from_env(config);
    for p in catalog.providers.iter().filter_map(|p| p.disabled_reason()) {
        tracing::warn!("{p}");
    }
    Ok(catalog)
}

/// Loads the classifier off the async threads (it reads ~90 MB and may embed
/// user-defined intent examples).
async fn load_reader(config: &Config) -> anyhow::Result<Option<Arc<Reader>>> {
    if !config.classifier.enabled {
        return Ok(None);
    }
    let settings = config.classifier.clone();
    let started = std::time::Instant::now();
    let reader = tokio::task::spawn_blocking(move || Reader::load(&settings))
        .await?
        .with_context(|| {
            format!(
                "loading the classifier from {}",
                config.classifier.model_dir.display()
            )
        })?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        intents = ?reader.intent_labels(),
        "classifier ready"
    );
    Ok(Some(Arc::new(reader)))
}

/// The configured policy, and its learner when it learns.
/// The policies A/B splits name as variants: the prior, or a trained
/// policy directory (frozen: it chooses, the running policy learns), with
/// the running policy's bound on models it has little evidence of.
fn variant_policies(
    rules: &crate::rules::Rules,
    serving: &Serving,
    dim: usize,
) -> anyhow::Result<Vec<Arc<dyn Policy>>> {
    rules
        .variant_policies()
        .iter()
        .map(|name| -> anyhow::Result<Arc<dyn Policy>> {
            if name == "prior" {
                return Ok(Arc::new(PriorPolicy));
            }
            let file = crate::policy::file::PolicyFile::load(std::path::Path::new(name))
                .with_context(|| format!("the A/B variant policy {name:?}"))?;
            let params = file.params.validated()?;
            let state = file.state.widen(dim).with_context(|| {
                format!("the A/B variant policy {name:?} does not fit this context")
            })?;
            Ok(Arc::new(serving.bandit(&state, params)))
        })
        .collect()
}

/// The context the classifier's heads give the bandit, for this catalog.
fn layout(reader: Option<&Reader>, catalog: &Catalog) -> features::Layout {
    features::Layout::new(
        reader.map_or(0, |r| r.intent_labels().len()),
        reader.map_or(&[], |r| r.quality_models()),
        &catalog.arms(),
    )
}

async fn policy(
    config: &Config,
    serving: &Serving,
    dim: usize,
    store: &Store,
    metrics: &Metrics,
) -> anyhow::Result<(Arc<dyn Policy>, Option<Arc<Learning>>)> {
    Ok(match config.routing.policy {
        PolicyKind::Prior => (Arc::new(PriorPolicy), None),
        PolicyKind::Bandit => {
            let p = &config.dispatch.policy;
            let follow = Follow {
                interval: config.store.follow_interval,
                failure_reward: p.learn_from_failures.then_some(p.failure_reward),
                lag: metrics.learner_lag(),
            };
            let learning = Arc::new(
                Learning::start(store, &config.bandit, serving.clone(), dim, follow).await?,
            );
            // Failed attempts are observations too (the failure policy).
            if p.learn_from_failures {
                learning.replay_failures(store, p.failure_reward).await?;
            }
            (Arc::clone(&learning) as Arc<dyn Policy>, Some(learning))
        }
    })
}
