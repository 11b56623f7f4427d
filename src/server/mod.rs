//! The whole server in one function: open the log, build the engine, serve
//! gRPC (Router, health, reflection) and the OpenAI-compatible HTTP front
//! until `shutdown`, then drain both.

mod grpc;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::config::PolicyKind;
use crate::engine::output_tokens::OutputTokens;
use crate::engine::{Engine, Learning, Reader};
use crate::pb;
use crate::policy::Policy;
use crate::policy::features;
use crate::policy::prior::PriorPolicy;
use crate::store::Store;

/// How long shutdown waits for the log's last commit.
const WRITER_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepted connections with Nagle's algorithm off: small gRPC frames would
/// otherwise wait on the peer's delayed ACK (~40 ms per round trip on Linux).
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
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

/// Serves gRPC on `listener` and the HTTP front on `http` until `shutdown`
/// resolves, then stops accepting, lets in-flight requests finish (up to
/// `server.drain_timeout`), and waits for the decision log's last commit.
pub async fn run_with(
    config: Config,
    catalog: Catalog,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let (store, writer) = Store::open(&config.server.database, &config.store).await?;
    let reader = load_reader(&config).await?;
    let catalog = Arc::new(catalog);
    let (policy, learning): (Arc<dyn Policy>, _) = match config.routing.policy {
        PolicyKind::Prior => (Arc::new(PriorPolicy), None),
        PolicyKind::Bandit => {
            let intents = reader.as_ref().map_or(0, |r| r.intent_labels().len());
            let learning = Arc::new(
                Learning::start(
                    &store,
                    &catalog,
                    config.bandit.params,
                    features::dim(intents),
                    config.bandit.warm_start.as_deref(),
                    config.bandit.reload_interval,
                )
                .await?,
            );
            // Failed attempts are observations too (issue 5's failure policy).
            let p = &config.dispatch.policy;
            if p.learn_from_failures {
                learning.replay_failures(&store, p.failure_reward).await?;
            }
            (Arc::clone(&learning) as Arc<dyn Policy>, Some(learning))
        }
    };
    let engine = Arc::new(Engine::new(
        Arc::clone(&config),
        catalog,
        policy,
        learning,
        reader,
        OutputTokens::load(&store).await?,
        store.clone(),
    ));

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::router_server::RouterServer<grpc::RouterService>>()
        .await;
    // Both reflection versions: grpcurl and most clients try v1, older ones
    // (and Python's grpcio-reflection) only speak v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let router = pb::router_server::RouterServer::new(grpc::RouterService::new(
        Arc::clone(&engine),
        config.server.max_in_flight,
    ))
    .max_decoding_message_size(config.server.max_request_bytes);

    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = %config.server.database.display(), models = engine.catalog.models.len(), "serving gRPC");

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    // One shutdown signal, seen by both transports.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = match http {
        Some(l) => {
            tracing::info!(addr = %l.local_addr()?, "serving the OpenAI-compatible HTTP API");
            let mut stop = stop_rx.clone();
            let router = crate::http::router(Arc::clone(&engine));
            Some(tokio::spawn(crate::http::serve(l, router, async move {
                let _ = stop.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
        let _ = drain_tx.send(());
    };
    let serve = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(router)
        .serve_with_incoming_shutdown(incoming(listener), shutdown);
    tokio::pin!(serve);
    let drain_timeout = config.server.drain_timeout;
    tokio::select! {
        r = &mut serve => r?,
        _ = async {
            let _ = drain_rx.await;
            tokio::time::sleep(drain_timeout).await;
        } => tracing::warn!(?drain_timeout, "drain timed out; closing remaining requests"),
    }
    if let Some(t) = http_task {
        // gRPC has drained; HTTP gets what is left of the same drain budget.
        match tokio::time::timeout(drain_timeout, t).await {
            Ok(Ok(r)) => r.context("serving HTTP")?,
            Ok(Err(e)) => tracing::error!(error = %e, "the HTTP front panicked"),
            Err(_) => tracing::warn!(?drain_timeout, "HTTP drain timed out"),
        }
    }
    drop(stop_rx);

    drop(engine);
    store.close().await;
    // Every writer handle is gone once in-flight work ends; bound the wait so a
    // stuck client cannot keep the process alive.
    if tokio::time::timeout(WRITER_DRAIN, writer.finished())
        .await
        .is_err()
    {
        tracing::warn!("the decision log writer did not finish in time");
    }
    tracing::info!("stopped");
    Ok(())
}
