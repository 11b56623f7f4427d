//! The console's admin API through the real binary: a workload over the
//! mock, then the overview, the decision search and detail, promotions
//! (and a rollback), provider health and the console's own page, each
//! refused without the admin key and answering bad input with a 400 in
//! OpenAI's error shape.

use crate::auth::{ADMIN, ready, serve_with};
use crate::common::{self, Mock};

use serde_json::{Value, json};
use switchyard::store::PromotionRow;

async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// A chat completion pinned to `model`; its decision id, if it was answered.
async fn complete(http: &str, model: &str) -> Option<String> {
    let resp = reqwest::Client::new()
        .post(format!("{http}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    resp.headers()
        .get("x-switchyard-decision-id")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_console_api_reports_the_log_to_the_admin_only() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with(&mock, &dir, "");
    ready(&s).await;
    let http = s.http.as_str();
    let mut cheap = Vec::new();
    for _ in 0..3 {
        cheap.push(complete(http, "cheap").await.unwrap());
    }
    complete(http, "mid").await.unwrap();
    // Every attempt fails (503): logged all the same.
    assert!(complete(http, "broken").await.is_none());
    let fb = reqwest::Client::new()
        .post(format!("{http}/v1/feedback"))
        .json(&json!({"decision_id": cheap[0], "reward": 0.8}))
        .send()
        .await
        .unwrap();
    assert_eq!(fb.status(), 200);

    // Every read needs the admin key once one is configured.
    for path in [
        "overview",
        "decisions",
        "decisions/x",
        "policies",
        "providers",
    ] {
        let url = format!("{http}/admin/v1/{path}");
        let (status, body) = get(&url, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
        assert_eq!(get(&url, Some("wrong")).await.0, 401, "{path}");
    }

    let (status, o) = get(&format!("{http}/admin/v1/overview"), Some(ADMIN)).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["totals"]["requests"], 5, "{o}");
    assert_eq!(o["totals"]["failed"], 1, "{o}");
    assert_eq!(o["totals"]["feedback"], 1);
    assert_eq!(o["totals"]["mean_reward"], 0.8);
    let model = |name: &str| {
        o["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {o}"))
    };
    assert_eq!(model("cheap")["requests"], 3);
    assert_eq!(model("cheap")["share"], 0.6);
    assert_eq!(model("cheap")["mean_reward"], 0.8);
    assert!(model("cheap")["spend_usd"].as_f64().unwrap() > 0.0);
    assert!(
        model("broken")["attempt_errors"].as_i64().unwrap() >= 1,
        "{o}"
    );
    assert_eq!(model("cheap")["latency_ms"]["n"], 3);
    assert_eq!(model("broken")["failed"], 1);
    // The routing series holds every request of the range, once.
    let plotted: i64 = o["series"]["requests"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|c| c.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
        .sum();
    assert_eq!(plotted, 5);
    let spend: f64 = o["spend"]["by_tenant"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((spend - o["totals"]["spend_usd"].as_f64().unwrap()).abs() < 1e-12);

    // Search, paging, detail.
    let (_, list) = get(&format!("{http}/admin/v1/decisions"), Some(ADMIN)).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 5);
    let (_, cheap_only) = get(
        &format!("{http}/admin/v1/decisions?model=cheap&feedback=yes"),
        Some(ADMIN),
    )
    .await;
    let ids: Vec<&str> = cheap_only["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [cheap[0].as_str()]);
    let (_, page1) = get(&format!("{http}/admin/v1/decisions?limit=3"), Some(ADMIN)).await;
    let next = page1["next_before"].as_str().unwrap();
    let (_, page2) = get(
        &format!("{http}/admin/v1/decisions?limit=3&before={next}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(page2["data"].as_array().unwrap().len(), 2);
    assert!(page2["next_before"].is_null());

    let (_, broken) = get(
        &format!("{http}/admin/v1/decisions?model=broken"),
        Some(ADMIN),
    )
    .await;
    let broken = broken["data"][0]["id"].as_str().unwrap();
    let (status, d) = get(&format!("{http}/admin/v1/decisions/{broken}"), Some(ADMIN)).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["model"], "broken");
    assert!(d["served_model"].is_null(), "{d}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["model"], "broken");
    assert_eq!(attempts[0]["http_status"], 503);
    assert!(
        d["candidates"].as_array().is_some_and(|c| !c.is_empty()),
        "{d}"
    );
    assert!(d["prompt"].is_null(), "prompts are not stored by default");
    let (status, body) = get(&format!("{http}/admin/v1/decisions/nope"), Some(ADMIN)).await;
    assert_eq!(status, 404, "{body}");

    // Bad input: 400 in OpenAI's error shape.
    for q in [
        "overview?from=abc",
        "overview?from=10&to=5",
        "overview?bucket_ms=0",
        "overview?colour=red",
        "decisions?feedback=maybe",
        "decisions?limit=0",
        "policies?limit=5000",
    ] {
        let (status, body) = get(&format!("{http}/admin/v1/{q}"), Some(ADMIN)).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(
            body["error"]["type"], "invalid_request_error",
            "{q}: {body}"
        );
    }

    // Promotions: none yet; a rollback needs the admin key and a real id.
    let (_, p) = get(&format!("{http}/admin/v1/policies"), Some(ADMIN)).await;
    assert_eq!(p["data"], json!([]));
    let store = {
        let cfg = switchyard::config::Config::embedded().store;
        switchyard::store::Store::open(&dir.path().join("switchyard.db"), &cfg)
            .await
            .unwrap()
            .0
    };
    let report = json!({"rows": 40, "objective": {"dr": {"value": 0.7, "lower": 0.6, "upper": 0.8}, "logging": {"value": 0.5}}});
    let first = store
        .record_promotion(PromotionRow {
            version: "bandit-a".into(),
            at_ms: 1,
            forced: false,
            estimate: Some(0.7),
            lower_bound: Some(0.6),
            baseline: Some(0.5),
            report: report.to_string(),
            policy: "{}".into(),
        })
        .await
        .unwrap();
    let promote = |key: Option<&'static str>, id: String| {
        let url = format!("{http}/admin/v1/policies/{id}/promote");
        async move {
            let mut req = reqwest::Client::new().post(url);
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(promote(None, first.to_string()).await.0, 401);
    assert_eq!(promote(Some("wrong"), first.to_string()).await.0, 401);
    assert_eq!(promote(Some(ADMIN), "999".into()).await.0, 404);
    assert_eq!(promote(Some(ADMIN), "x".into()).await.0, 400);
    let (status, body) = promote(Some(ADMIN), first.to_string()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["promoted_from"], first);
    let (_, p) = get(&format!("{http}/admin/v1/policies"), Some(ADMIN)).await;
    let rows = p["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["current"].clone(), rows[0]["id"].clone()),
        (json!(true), body["id"].clone())
    );
    assert_eq!(
        rows[0]["interval"],
        json!({"value": 0.7, "lower": 0.6, "upper": 0.8})
    );
    assert_eq!(rows[0]["decisions"], 40);
    assert_eq!(rows[1]["current"], false);
    store.close().await;

    let (status, h) = get(&format!("{http}/admin/v1/providers"), Some(ADMIN)).await;
    assert_eq!(status, 200, "{h}");
    let broken_health = h["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "broken")
        .unwrap();
    assert!(broken_health["failures"].as_u64().unwrap() >= 1, "{h}");

    // The page itself needs no key (its data does) and is compiled in.
    let page = reqwest::get(format!("{http}/console/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("/console/assets/app.js")
    );
    let js = reqwest::get(format!("{http}/console/assets/uPlot.iife.min.js"))
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    let missing = reqwest::get(format!("{http}/console/assets/nope.js"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.json::<Value>().await.unwrap()["error"].is_object());
}

/// Without an admin key and without API keys the server is open anyway:
/// the console reads, but nothing is promoted; `server.console = false`
/// takes the page away.
#[tokio::test]
async fn an_open_server_shows_the_console_but_promotes_nothing() {
    let env = common::Env::start_with(|c| c.server.console = false).await;
    let http = format!("http://{}", env.server.http_addr);
    let (status, o) = get(&format!("{http}/admin/v1/overview"), None).await;
    assert_eq!(status, 200, "{o}");
    let resp = reqwest::Client::new()
        .post(format!("{http}/admin/v1/policies/1/promote"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        reqwest::get(format!("{http}/console/"))
            .await
            .unwrap()
            .status(),
        404
    );
}
