//! The admin API, `/admin/v1/...`, guarded by the admin key
//! (`Authorization: Bearer <admin key>`; the key comes from the variable
//! `auth.admin_key_env` names): API keys, listed, created, changed and
//! revoked, and tenants' settings, taking effect at once. Documented in
//! docs/governance.md.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::errors::{ApiError, bad_body, bad_json};
use crate::auth::{self, KeySettings};

/// The admin key must be the caller's.
fn admit(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    Ok(app.engine.gate.admin(super::secret(headers))?)
}

fn settings(body: Result<Bytes, BytesRejection>) -> Result<KeySettings, ApiError> {
    let body = body.map_err(bad_body)?;
    if body.is_empty() {
        return Ok(KeySettings::default());
    }
    serde_json::from_slice(&body).map_err(bad_json)
}

/// Re-reads the key table, so a change is in force when its answer is.
async fn reload(app: &AppState) -> Result<(), ApiError> {
    app.engine
        .gate
        .keys
        .reload()
        .await
        .map_err(|e| ApiError::from(crate::error::Error::from(e)))
}

pub async fn list_keys(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admit(&app, &headers)?;
    let keys = app
        .engine
        .gate
        .keys
        .store()
        .keys()
        .await
        .map_err(crate::error::Error::from)?;
    Ok(Json(json!({"object": "list", "data": keys})))
}

#[derive(serde::Deserialize)]
pub struct SpendQuery {
    /// Unix ms; the start of this month (UTC) by default.
    since_ms: Option<i64>,
}

/// Spend per UTC day, tenant, key and model since `since_ms`.
pub async fn spend(
    State(app): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<SpendQuery>,
) -> Result<Json<Value>, ApiError> {
    admit(&app, &headers)?;
    let since = q
        .since_ms
        .unwrap_or_else(|| crate::clock::month_start_ms(crate::clock::now_ms()));
    let rows = app
        .engine
        .gate
        .keys
        .store()
        .spend(since)
        .await
        .map_err(crate::error::Error::from)?;
    Ok(Json(
        json!({"object": "list", "since_ms": since, "data": rows}),
    ))
}

pub async fn create_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admit(&app, &headers)?;
    let s = settings(body)?;
    let (key, secret) = auth::create(app.engine.gate.keys.store(), s).await?;
    reload(&app).await?;
    let mut v = json!(key);
    v["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn update_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    admit(&app, &headers)?;
    let s = settings(body)?;
    let key = auth::update(app.engine.gate.keys.store(), &id, s, false).await?;
    reload(&app).await?;
    Ok(Json(json!(key)))
}

pub async fn revoke_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admit(&app, &headers)?;
    let key = auth::update(
        app.engine.gate.keys.store(),
        &id,
        KeySettings::default(),
        true,
    )
    .await?;
    reload(&app).await?;
    Ok(Json(json!(key)))
}

/// A tenant's settings as the admin API shows them: its name, not the id
/// limits and spend know it by.
fn tenant_json(t: &crate::store::KeyRow) -> Value {
    json!({
        "tenant": t.tenant,
        "tier": t.tier,
        "models": t.models,
        "rpm": t.rpm,
        "tpm": t.tpm,
        "budget_day_usd": t.budget_day_usd,
        "budget_month_usd": t.budget_month_usd,
        "created_at_ms": t.created_at_ms,
        "updated_at_ms": t.updated_at_ms,
    })
}

pub async fn list_tenants(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admit(&app, &headers)?;
    let tenants = app
        .engine
        .gate
        .keys
        .store()
        .tenants()
        .await
        .map_err(crate::error::Error::from)?;
    let data: Vec<Value> = tenants.iter().map(tenant_json).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// Sets a tenant's settings (those given; the rest stay), creating them.
pub async fn set_tenant(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    admit(&app, &headers)?;
    let s = settings(body)?;
    let t = auth::set_tenant(app.engine.gate.keys.store(), &tenant, s).await?;
    reload(&app).await?;
    Ok(Json(tenant_json(&t)))
}
