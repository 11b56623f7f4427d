//! The HTTP fronts, OpenAI's chat completions and Anthropic's messages: a
//! second transport over the same [`Engine`] as gRPC, in the same process.
//!
//! Every request passes one middleware that opens a `tracing` span (the
//! handler records the decision id into it once known), times it, and counts
//! it in [`crate::metrics`]. Bodies are capped at `server.max_request_bytes`
//! (413), concurrent model calls at `server.max_in_flight` (429), and every
//! error, including unknown routes and methods, is an OpenAI-style JSON body.

mod admin;
mod chat;
pub mod codec;
mod console;
mod console_api;
mod errors;
mod messages;
mod messages_wire;
mod ops;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;

pub use chat::bypasses_cache;
pub use errors::ApiError;
pub use wire::AUTO_MODEL;

use crate::engine::Engine;

#[derive(Clone)]
pub struct AppState {
    engine: Arc<Engine>,
}

impl AppState {
    /// Past the engine's in-flight limit (shared with gRPC), 429 at once.
    fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.engine.admit().ok_or_else(|| ApiError {
            rate: Some(Box::new(errors::Throttle::Overload(Duration::from_secs(1)))),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "too_many_requests",
                "the server is at its in-flight request limit".into(),
            )
        })
    }
}

/// The routes over `engine`.
pub fn router(engine: Arc<Engine>) -> Router {
    let limit = engine.config.server.max_request_bytes;
    let console = engine.config.server.console;
    let state = AppState { engine };
    let mut routes = Router::new();
    if console {
        routes = routes
            .route("/console", get(console::redirect))
            .route("/console/", get(console::index))
            .route("/console/assets/{name}", get(console::asset));
    }
    routes
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/models", get(ops::models))
        .route("/v1/models/{*id}", get(ops::model_by_id))
        .route("/v1/feedback", post(ops::feedback))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(
            "/admin/v1/keys",
            get(admin::list_keys).post(admin::create_key),
        )
        .route("/admin/v1/spend", get(admin::spend))
        .route("/admin/v1/overview", get(console_api::overview))
        .route("/admin/v1/decisions", get(console_api::decisions))
        .route("/admin/v1/decisions/{id}", get(console_api::decision))
        .route("/admin/v1/policies", get(console_api::policies))
        .route(
            "/admin/v1/policies/{id}/promote",
            post(console_api::promote),
        )
        .route("/admin/v1/providers", get(console_api::providers))
        .route("/admin/v1/tenants", get(admin::list_tenants))
        .route(
            "/admin/v1/tenants/{tenant}",
            axum::routing::put(admin::set_tenant).patch(admin::set_tenant),
        )
        .route(
            "/admin/v1/keys/{id}",
            axum::routing::patch(admin::update_key).delete(admin::revoke_key),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown`, then lets in-flight
/// requests (and open streams) finish. Nagle's algorithm is off on every
/// connection: a stream's first small chunk after the headers would otherwise
/// wait for the client's delayed ACK (40 ms added to time-to-first-token,
/// measured by `benches/frontier.rs`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "unknown_url",
        format!("no route for {}", uri.path()),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        "this route does not take that method".into(),
    )
}

/// Metric label per route: a fixed set, so a scanner's random paths cannot
/// grow the label space.
fn route_label(path: Option<&MatchedPath>) -> &'static str {
    match path.map(MatchedPath::as_str) {
        Some("/v1/chat/completions") => "chat_completions",
        Some("/v1/messages") => "messages",
        Some("/v1/models") | Some("/v1/models/{*id}") => "models",
        Some("/v1/feedback") => "feedback",
        Some("/healthz") => "healthz",
        Some("/readyz") => "readyz",
        Some("/metrics") => "metrics",
        Some(p) if p.starts_with("/admin/") => "admin",
        _ => "other",
    }
}

/// The key a request carries: `Authorization: Bearer <key>` (OpenAI's
/// SDKs) or `x-api-key` (Anthropic's).
fn secret(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// With keys on, every request but the health probes (and the admin API,
/// which checks the admin key itself) must carry a valid key: 401 in the
/// front's own error shape otherwise. The key goes into the request's
/// extensions for the handlers (its tenant, its models).
async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz")
        || path.starts_with("/admin/")
        || path == "/console"
        || path.starts_with("/console/")
    {
        return next.run(req).await;
    }
    match app.engine.gate.check(secret(req.headers())) {
        Ok(Some(key)) => {
            req.extensions_mut().insert(key);
            next.run(req).await
        }
        Ok(None) => next.run(req).await,
        Err(e) if path == "/v1/messages" => messages::AnthropicError::from(e).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn observe(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = route_label(req.extensions().get::<MatchedPath>());
    let span = tracing::info_span!(
        "http",
        otel.kind = "server",
        method = %req.method(),
        route,
        decision_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let parent = crate::telemetry::remote_parent(&crate::telemetry::Headers(req.headers()));
    crate::telemetry::continue_trace(&span, parent);
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    span.record("status", status.as_u16());
    app.engine
        .metrics()
        .request("http", route, status.as_str(), started.elapsed());
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(%status, "request failed"));
    }
    resp
}
