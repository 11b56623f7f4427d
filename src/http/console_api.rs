//! The console's half of the admin API (`/admin/v1/overview`, `decisions`,
//! `policies`, `providers`): JSON a script can use as well as the page.
//! Reading needs the admin key (see [`crate::auth::Gate::admin_read`]);
//! promoting always does. Documented in docs/console.md.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::errors::ApiError;
use crate::error::Error;
use crate::store::console::{self, DecisionFilter, LatencyCount, Range, SeriesPoint};

const DAY_MS: i64 = 86_400_000;

fn read(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    Ok(app.engine.gate.admin_read(super::secret(headers))?)
}

fn store_err(e: crate::store::StoreError) -> ApiError {
    ApiError::from(Error::from(e))
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::invalid("query", e.body_text())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// Unix ms; 24 hours before `to` by default.
    from: Option<i64>,
    /// Unix ms; now by default.
    to: Option<i64>,
    /// Width of a time-series bucket in ms; chosen from the range by default.
    bucket_ms: Option<i64>,
}

fn range(from: Option<i64>, to: Option<i64>) -> Result<Range, ApiError> {
    let to_ms = to.unwrap_or_else(crate::clock::now_ms);
    let from_ms = from.unwrap_or(to_ms - DAY_MS);
    if from_ms >= to_ms {
        return Err(ApiError::invalid("from", "`from` must be before `to`"));
    }
    Ok(Range { from_ms, to_ms })
}

/// A page size: `default` when not given, refused outside `1..=max`.
fn limit(given: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match given.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid("limit", format!("between 1 and {max}"))),
    }
}

/// A round bucket width giving at most ~60 points over the range.
fn bucket_for(r: Range) -> i64 {
    const STEPS: [i64; 10] = [
        1_000,
        10_000,
        60_000,
        300_000,
        900_000,
        3_600_000,
        10_800_000,
        21_600_000,
        DAY_MS,
        7 * DAY_MS,
    ];
    let span = r.to_ms - r.from_ms;
    STEPS
        .into_iter()
        .find(|s| span / s <= 60)
        .unwrap_or(7 * DAY_MS)
}

/// p50, p90 and p99 of an exact latency histogram (sorted by latency).
fn percentiles(hist: &[(i64, i64)]) -> Value {
    let total: i64 = hist.iter().map(|h| h.1).sum();
    if total == 0 {
        return Value::Null;
    }
    let at = |q: f64| {
        let rank = ((q * total as f64).ceil() as i64).max(1);
        let mut seen = 0;
        for &(ms, n) in hist {
            seen += n;
            if seen >= rank {
                return ms;
            }
        }
        hist.last().map_or(0, |h| h.0)
    };
    json!({"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "n": total})
}

fn latency_by_model(rows: &[LatencyCount]) -> (BTreeMap<String, Value>, Value) {
    let mut per: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let mut all: BTreeMap<i64, i64> = BTreeMap::new();
    for r in rows {
        per.entry(r.model.clone())
            .or_default()
            .push((r.latency_ms, r.n));
        *all.entry(r.latency_ms).or_default() += r.n;
    }
    let all: Vec<(i64, i64)> = all.into_iter().collect();
    (
        per.into_iter().map(|(m, h)| (m, percentiles(&h))).collect(),
        percentiles(&all),
    )
}

/// Per-model columns over the buckets `ts`: `f(point)` where a point
/// exists, `missing` elsewhere.
fn columns(
    ts: &[i64],
    points: &[SeriesPoint],
    f: impl Fn(&SeriesPoint) -> Value,
    missing: Value,
) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in points {
        let col = out
            .entry(p.model.clone())
            .or_insert_with(|| vec![missing.clone(); ts.len()]);
        if let Ok(i) = ts.binary_search(&p.t_ms) {
            col[i] = f(p);
        }
    }
    out
}

/// `GET /admin/v1/overview`: requests, errors, spend (per model, tenant,
/// key and day), latency percentiles, and routing share and mean reward
/// per model over time.
pub async fn overview(
    State(app): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(&app, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let r = range(q.from, q.to)?;
    let bucket = match q.bucket_ms {
        Some(b) if b <= 0 => return Err(ApiError::invalid("bucket_ms", "must be positive")),
        Some(b) if (r.to_ms - r.from_ms) / b > 10_000 => {
            return Err(ApiError::invalid(
                "bucket_ms",
                "more than 10000 buckets in the range",
            ));
        }
        Some(b) => b,
        None => bucket_for(r),
    };
    let store = app.engine.store();
    let (decided, groups, routing, rewards, latency) = tokio::try_join!(
        store.decisions_by_model(r),
        store.attempt_groups(r),
        store.routing_series(r, bucket),
        store.reward_series(r, bucket),
        store.latency_histogram(r),
    )
    .map_err(store_err)?;

    let requests: i64 = decided.iter().map(|d| d.requests).sum();
    let failed: i64 = decided.iter().map(|d| d.failed).sum();
    let attempt_totals = console::by_model(&groups);
    let (lat_models, lat_all) = latency_by_model(&latency);
    let mut fb: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for p in &rewards {
        let e = fb.entry(p.model.clone()).or_default();
        e.0 += p.n;
        e.1 += p.sum;
    }
    let mean = |n: i64, s: f64| {
        if n > 0 {
            json!(s / n as f64)
        } else {
            Value::Null
        }
    };

    let mut names: Vec<&String> = decided
        .iter()
        .map(|d| &d.model)
        .chain(attempt_totals.keys())
        .chain(fb.keys())
        .collect();
    names.sort();
    names.dedup();
    let models: Vec<Value> = names
        .iter()
        .map(|m| {
            let d = decided.iter().find(|d| &d.model == *m);
            let (attempts, errors, usd) = attempt_totals.get(*m).copied().unwrap_or_default();
            let (n, s) = fb.get(*m).copied().unwrap_or_default();
            let chosen = d.map_or(0, |d| d.requests);
            json!({
                "model": m,
                "requests": chosen,
                "failed": d.map_or(0, |d| d.failed),
                "cached": d.map_or(0, |d| d.cached),
                "cache_saved_usd": d.map_or(0.0, |d| d.saved_usd),
                "share": if requests > 0 { chosen as f64 / requests as f64 } else { 0.0 },
                "attempts": attempts,
                "attempt_errors": errors,
                "spend_usd": usd,
                "feedback": n,
                "mean_reward": mean(n, s),
                "latency_ms": lat_models.get(*m).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();

    let mut by_tenant: BTreeMap<&str, f64> = BTreeMap::new();
    let mut by_key: BTreeMap<&str, f64> = BTreeMap::new();
    let mut by_day: BTreeMap<i64, f64> = BTreeMap::new();
    for g in &groups {
        *by_tenant.entry(&g.tenant).or_default() += g.usd;
        *by_key.entry(g.key_id.as_deref().unwrap_or("")).or_default() += g.usd;
        *by_day.entry(g.day * DAY_MS).or_default() += g.usd;
    }
    let (n_fb, s_fb) = fb.values().fold((0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1));

    let first = r.from_ms.div_euclid(bucket) * bucket;
    let ts: Vec<i64> = (0..)
        .map(|i| first + i * bucket)
        .take_while(|t| *t < r.to_ms)
        .collect();
    Ok(Json(json!({
        "from_ms": r.from_ms,
        "to_ms": r.to_ms,
        "bucket_ms": bucket,
        "totals": {
            "requests": requests,
            "failed": failed,
            "cache_hits": decided.iter().map(|d| d.cached).sum::<i64>(),
            "cache_saved_usd": decided.iter().map(|d| d.saved_usd).sum::<f64>(),
            "attempts": groups.iter().map(|g| g.attempts).sum::<i64>(),
            "attempt_errors": groups.iter().map(|g| g.errors).sum::<i64>(),
            "spend_usd": groups.iter().map(|g| g.usd).sum::<f64>(),
            "feedback": n_fb,
            "mean_reward": mean(n_fb, s_fb),
            "latency_ms": lat_all,
        },
        "models": models,
        "spend": {
            "by_tenant": by_tenant,
            "by_key": by_key,
            "by_day": by_day.into_iter().map(|(d, u)| json!({"day_ms": d, "usd": u})).collect::<Vec<_>>(),
        },
        "series": {
            "t_ms": ts,
            "requests": columns(&ts, &routing, |p| json!(p.n), json!(0)),
            "mean_reward": columns(&ts, &rewards, |p| json!(p.sum / p.n.max(1) as f64), Value::Null),
        },
    })))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    from: Option<i64>,
    to: Option<i64>,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    policy: String,
    /// "yes", "no" or "" (either).
    #[serde(default)]
    feedback: String,
    #[serde(default)]
    before: String,
    limit: Option<i64>,
}

/// `GET /admin/v1/decisions`: the log searched, newest first, a page at a
/// time (`next_before` fetches the next).
pub async fn decisions(
    State(app): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(&app, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let has_feedback = match q.feedback.as_str() {
        "" => None,
        "yes" => Some(true),
        "no" => Some(false),
        other => {
            return Err(ApiError::invalid(
                "feedback",
                format!("{other:?}: expected \"yes\", \"no\" or nothing"),
            ));
        }
    };
    let limit = limit(q.limit, 50, 500)?;
    let filter = DecisionFilter {
        range: match (q.from, q.to) {
            (None, None) => None,
            (f, t) => Some(range(f.or(Some(0)), t)?),
        },
        tenant: q.tenant,
        model: q.model,
        rule: q.rule,
        policy_version: q.policy,
        has_feedback,
        before: q.before,
        limit,
    };
    let rows = app
        .engine
        .store()
        .search_decisions(&filter)
        .await
        .map_err(store_err)?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(
        json!({"object": "list", "data": rows, "next_before": next}),
    ))
}

/// `GET /admin/v1/decisions/{id}`: the decision's explanation (every
/// candidate's numbers), its attempts and its feedback.
pub async fn decision(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read(&app, &headers)?;
    match app
        .engine
        .store()
        .decision_detail(&id)
        .await
        .map_err(store_err)?
    {
        Some(d) => Ok(Json(json!(d))),
        None => Err(ApiError::from(Error::not_found(
            "id",
            format!("no decision {id:?}"),
        ))),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PoliciesQuery {
    limit: Option<i64>,
}

/// `GET /admin/v1/policies`: promotions, newest (current) first, with the
/// off-policy estimate and its interval each was promoted on.
pub async fn policies(
    State(app): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PoliciesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(&app, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = limit(q.limit, 100, 1000)?;
    let store = app.engine.store();
    let rows = store.promotions(limit).await.map_err(store_err)?;
    let data: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let report: Value = serde_json::from_str(&p.report).unwrap_or_default();
            let dr = &report["objective"]["dr"];
            let mut v = json!(p);
            v["current"] = json!(i == 0);
            v["interval"] =
                json!({"value": dr["value"], "lower": dr["lower"], "upper": dr["upper"]});
            v["logging_estimate"] = report["objective"]["logging"]["value"].clone();
            v["decisions"] = report["rows"].clone();
            v
        })
        .collect();
    // What the service is deciding with now (a promotion that does not fit
    // the service is logged and not served).
    let latest = store
        .search_decisions(&DecisionFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(store_err)?;
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "latest_decision_policy": latest.first().map(|d| d.policy_version.clone()),
    })))
}

/// `POST /admin/v1/policies/{id}/promote`: makes promotion `id`'s policy
/// current again (a rollback), as a new promotion the service swaps in.
pub async fn promote(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.engine.gate.admin(super::secret(&headers))?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid("id", format!("{id:?} is not a promotion id")))?;
    let store = app.engine.store();
    let Some(mut row) = store.promotion_row(id).await.map_err(store_err)? else {
        return Err(ApiError::from(Error::not_found(
            "id",
            format!("no promotion {id}"),
        )));
    };
    row.at_ms = crate::clock::now_ms();
    let version = row.version.clone();
    let new_id = store.record_promotion(row).await.map_err(store_err)?;
    tracing::info!(from = id, id = new_id, %version, "policy promoted from the admin API");
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": new_id, "version": version, "promoted_from": id})),
    )
        .into_response())
}

/// `GET /admin/v1/providers`: breaker state, in-flight attempts, latency
/// EWMA and recent 429s per model and provider, and the retry budget.
pub async fn providers(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    read(&app, &headers)?;
    Ok(Json(json!(app.engine.health_snapshot())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_histogram_are_exact_ranks() {
        // 100 samples: 1..=100 ms, one each.
        let h: Vec<(i64, i64)> = (1..=100).map(|ms| (ms, 1)).collect();
        let p = percentiles(&h);
        assert_eq!(
            (p["p50"].clone(), p["p90"].clone(), p["p99"].clone()),
            (json!(50), json!(90), json!(99))
        );
        let skewed = [(5, 98), (1000, 2)];
        assert_eq!(percentiles(&skewed)["p99"], json!(1000));
        assert_eq!(percentiles(&skewed)["p50"], json!(5));
        assert!(percentiles(&[]).is_null());
    }

    #[test]
    fn buckets_keep_charts_under_about_sixty_points() {
        let r = |span| Range {
            from_ms: 0,
            to_ms: span,
        };
        assert_eq!(bucket_for(r(3_600_000)), 60_000);
        assert_eq!(bucket_for(r(DAY_MS)), 3_600_000);
        assert_eq!(bucket_for(r(30 * DAY_MS)), DAY_MS);
    }
}
