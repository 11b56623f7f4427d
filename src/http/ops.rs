//! The small endpoints: `GET /v1/models`, `POST /v1/feedback`, and the
//! operational `GET /healthz`, `GET /readyz`, `GET /metrics`.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::errors::{ApiError, bad_body, bad_json};
use super::wire::AUTO_MODEL;

/// A readiness probe that cannot get the database's write lock in this time
/// reports not ready rather than hanging the prober.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn models(State(app): State<AppState>) -> Json<Value> {
    let mut data = vec![auto_model()];
    data.extend(app.engine.config.profiles.iter().map(profile));
    data.extend((0..app.engine.catalog.models.len()).map(|i| model(&app, i)));
    Json(json!({"object": "list", "data": data}))
}

pub async fn model_by_id(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if id == AUTO_MODEL {
        return Ok(Json(auto_model()));
    }
    if let Some(p) = id
        .strip_prefix(crate::engine::PROFILE_PREFIX)
        .and_then(|name| app.engine.config.profiles.iter().find(|p| p.name == name))
    {
        return Ok(Json(profile(p)));
    }
    let i = crate::engine::validate::model(&id, &app.engine.catalog)?;
    Ok(Json(model(&app, i)))
}

fn auto_model() -> Value {
    json!({"id": AUTO_MODEL, "object": "model", "created": 0, "owned_by": "switchyard"})
}

/// A profile as a virtual model: what it routes among and its knobs.
fn profile(p: &crate::config::Profile) -> Value {
    let t = &p.then;
    json!({
        "id": format!("{}{}", crate::engine::PROFILE_PREFIX, p.name),
        "object": "model",
        "created": 0,
        "owned_by": "switchyard",
        "switchyard": {
            "profile": p.name,
            "description": p.description,
            "candidates": t.candidates,
            "model": t.model,
            "cost_weight": t.cost_weight,
            "latency_weight": t.latency_weight,
            "max_cost_usd": t.max_cost_usd,
            "max_usd_per_mtok": t.max_usd_per_mtok,
        }
    })
}

fn model(app: &AppState, i: usize) -> Value {
    let c = &app.engine.catalog;
    let m = &c.models[i];
    let p = &c.providers[m.provider];
    json!({
        "id": m.name,
        "object": "model",
        "created": 0,
        "owned_by": p.name,
        "switchyard": {
            "upstream": m.upstream,
            "input_usd_per_mtok": m.input_usd_per_mtok,
            "output_usd_per_mtok": m.output_usd_per_mtok,
            "context_window": m.context_window,
            "prior_quality": m.prior_quality,
            "capabilities": m.capabilities.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "available": c.disabled_reason(i).is_none(),
            "deployments": m.deployments.iter().map(|d| json!({
                "name": d.name,
                "provider": c.providers[d.provider].name,
                "upstream": d.upstream,
                "input_usd_per_mtok": d.input_usd_per_mtok,
                "output_usd_per_mtok": d.output_usd_per_mtok,
                "available": c.providers[d.provider].enabled(),
            })).collect::<Vec<_>>(),
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    decision_id: String,
    reward: f64,
    #[serde(default)]
    source: String,
}

/// Same rules as the gRPC Feedback: (decision, source) is idempotent and a
/// resend replaces the value (`replaced: true`).
pub async fn feedback(
    State(app): State<AppState>,
    key: Option<axum::Extension<crate::auth::Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(bad_body)?;
    let f: FeedbackBody = serde_json::from_slice(&body).map_err(bad_json)?;
    let _permit = app.admit()?;
    tracing::Span::current().record("decision_id", f.decision_id.as_str());
    let ack = app
        .engine
        .feedback(
            &f.decision_id,
            f.reward,
            &f.source,
            key.as_ref().map(|k| k.tenant.as_str()),
        )
        .await?;
    Ok(Json(json!({
        "decision_id": ack.decision_id,
        "source": ack.source,
        "replaced": ack.replaced,
    })))
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the classifier is loaded (or disabled by config) and the
/// decision log takes a write lock.
pub async fn readyz(State(app): State<AppState>) -> Response {
    let classifier = if app.engine.classifier_loaded() {
        "loaded"
    } else if app.engine.config.classifier.enabled {
        "missing"
    } else {
        "disabled"
    };
    let store = app.engine.store();
    let (journaled, _) = store.journal_backlog();
    let database = match tokio::time::timeout(READY_TIMEOUT, store.check_writable()).await {
        Ok(Ok(())) if journaled > 0 => {
            format!("writable (journal: {journaled} writes waiting for the database)")
        }
        Ok(Ok(())) => "writable".to_string(),
        Ok(Err(e)) => format!("not writable: {e}"),
        Err(_) => format!("no write lock within {READY_TIMEOUT:?}"),
    };
    let ready = classifier != "missing" && database.starts_with("writable");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "classifier": classifier,
        "database": database,
    });
    (status, Json(body)).into_response()
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.engine.metrics().render(),
    )
        .into_response()
}
