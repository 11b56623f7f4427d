//! The gRPC transport: serves Router, health and reflection, and the
//! OpenAI-compatible HTTP front beside it, over an engine built by
//! [`crate::app`], until `shutdown`; then drains both.

mod grpc;

pub use grpc::{complete_input, route_input};

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::engine::Engine;
use crate::pb;

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

/// Lets a Router call in when keys are off, or when its `authorization`
/// metadata (`Bearer <key>`, or the bare key) holds a valid key, which the
/// service then finds in the request's extensions. Health and reflection
/// stay open.
fn authenticate(
    gate: Arc<crate::auth::Gate>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut req: tonic::Request<()>| {
        let secret = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_owned());
        if let Some(key) = gate.check(secret.as_deref())? {
            req.extensions_mut().insert(key);
        }
        Ok(req)
    }
}

/// Serves gRPC on `listener` and the HTTP front on `http` until `shutdown`
/// resolves, then stops accepting and lets in-flight requests finish (up to
/// `server.drain_timeout`).
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = Arc::clone(&engine.config);
    let mut addrs = vec![listener.local_addr()?];
    addrs.extend(http.as_ref().map(TcpListener::local_addr).transpose()?);
    crate::auth::check_open(&config.auth, &addrs)?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::router_server::RouterServer<grpc::RouterService>>()
        .await;
    tokio::spawn(watch_database(
        health_reporter.clone(),
        Arc::downgrade(&engine),
    ));
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
    let router = tonic::service::interceptor::InterceptedService::new(
        pb::router_server::RouterServer::new(grpc::RouterService::new(Arc::clone(&engine)))
            .max_decoding_message_size(config.server.max_request_bytes),
        authenticate(Arc::clone(&engine.gate)),
    );

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
    Ok(())
}

/// How often gRPC health re-checks that the log takes writes.
const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps gRPC health in step with the log: NOT_SERVING while writes are
/// refused (the database is away and the journal cannot take more, or the
/// writer stopped), as `/readyz` says.
/// It holds the engine weakly: a stopped server's log must be free to close.
/// Only a shared log (PostgreSQL) can go away under a running server; an
/// embedded one is not probed (its check takes SQLite's write lock).
async fn watch_database(
    reporter: tonic_health::server::HealthReporter,
    engine: std::sync::Weak<Engine>,
) {
    if !engine.upgrade().is_some_and(|e| e.store().is_shared()) {
        return;
    }
    let mut serving = true;
    loop {
        tokio::time::sleep(HEALTH_EVERY).await;
        let Some(store) = engine.upgrade().map(|e| e.store().clone()) else {
            return;
        };
        let check = tokio::time::timeout(HEALTH_EVERY, store.check_writable()).await;
        drop(store);
        let ok = matches!(check, Ok(Ok(())));
        if ok == serving {
            continue;
        }
        serving = ok;
        type Svc = pb::router_server::RouterServer<grpc::RouterService>;
        if ok {
            reporter.set_serving::<Svc>().await;
        } else {
            tracing::warn!("gRPC health: NOT_SERVING until the decision log takes writes");
            reporter.set_not_serving::<Svc>().await;
        }
    }
}
