//! The HTTP front's model list, health, readiness and metrics endpoints and
//! its in-flight limit, against the real server and mock provider on loopback.

use crate::common;

use common::Env;
use common::http::{chat, error, post, url};
use serde_json::{Value, json};

#[tokio::test]
async fn models_health_readiness_and_metrics() {
    // Tenants named in the config get their own cost series; others are "other".
    let env = Env::start_with(|c| {
        c.telemetry.metric_tenants = vec!["t-http".into(), "acme".into()];
    })
    .await;
    let v: Value = reqwest::get(url(&env, "/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "switchyard/auto");
    assert!(ids.contains(&"cheap") && ids.contains(&"locked"));
    let one: Value = reqwest::get(url(&env, "/v1/models/strong"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["owned_by"], "mock");
    error(
        reqwest::get(url(&env, "/v1/models/zzz")).await.unwrap(),
        404,
        "model_not_found",
    )
    .await;

    assert_eq!(
        reqwest::get(url(&env, "/healthz")).await.unwrap().status(),
        200
    );
    let r = reqwest::get(url(&env, "/readyz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["classifier"].as_str(), v["database"].as_str()),
        (Some("loaded"), Some("writable"))
    );

    // One HTTP and one gRPC completion, one failure, one feedback: all counted.
    let resp = post(
        &env,
        "/v1/chat/completions",
        json!({
            "model": "mid", "messages": [{"role": "user", "content": "hi"}],
            "switchyard": {"tenant": "t-http"}
        }),
    )
    .await;
    let id = resp.headers()["x-switchyard-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    post(&env, "/v1/chat/completions", chat("broken", "hi")).await;
    post(
        &env,
        "/v1/feedback",
        json!({"decision_id": id, "reward": 1.0, "source": "s"}),
    )
    .await;
    let mut grpc = env.server.client().await;
    grpc.complete(common::complete_req("hello", Some("cheap")))
        .await
        .unwrap();

    let resp = reqwest::get(url(&env, "/metrics")).await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    for line in [
        "switchyard_requests_total{transport=\"http\",route=\"chat_completions\",code=\"200\"} 1",
        "switchyard_requests_total{transport=\"http\",route=\"chat_completions\",code=\"503\"} 1",
        "switchyard_requests_total{transport=\"grpc\",route=\"Complete\",code=\"Ok\"} 1",
        "switchyard_decisions_total{model=\"mid\",pinned=\"true\"} 1",
        "switchyard_provider_attempts_total{provider=\"mock\",model=\"cheap\",outcome=\"ok\"} 1",
        // A pinned model is retried (dispatch.max_retries = 2), never replaced.
        "switchyard_provider_errors_total{provider=\"mock\",model=\"broken\",outcome=\"error\"} 3",
        "switchyard_feedback_total{source=\"s\",replaced=\"false\"} 1",
        "switchyard_classify_queue_depth 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("switchyard_cost_usd_total{model=\"mid\",tenant=\"t-http\"} "));
    assert!(text.contains("switchyard_cost_usd_total{model=\"cheap\",tenant=\"acme\"} "));
    assert!(text.contains("switchyard_request_duration_seconds_bucket{transport=\"grpc\",route=\"Complete\",le=\"+Inf\"} 1"));
    env.server.stop().await;
}

#[tokio::test]
async fn over_the_in_flight_limit_is_a_429_and_a_dropped_stream_frees_its_slot() {
    let env = Env::start_with(|c| c.server.max_in_flight = 1).await;
    // `hang` never answers: this request holds the only slot until its
    // attempt times out (2 s in the test config).
    let held = tokio::spawn({
        let url = url(&env, "/v1/chat/completions");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&chat("hang", "wait"))
                .send()
                .await
        }
    });
    for _ in 0..200 {
        if env.mock.requests("hang+hang").await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(env.mock.requests("hang+hang").await, 1);
    let resp = post(&env, "/v1/chat/completions", chat("cheap", "hi")).await;
    assert_eq!(resp.headers()["retry-after"], "1");
    error(resp, 429, "too_many_requests").await;
    let resp = post(
        &env,
        "/v1/feedback",
        json!({"decision_id": "x", "reward": 1}),
    )
    .await;
    error(resp, 429, "too_many_requests").await;
    // The held request is retried until its deadline passes, then frees the slot.
    let r = held.await.unwrap().unwrap();
    assert_eq!(r.status(), 504);

    // A stream holds the slot while open; dropping it mid-way releases it.
    let mut body = chat("cheap", "hi");
    body["stream"] = json!(true);
    let resp = post(&env, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    drop(resp);
    let mut ok = false;
    for _ in 0..100 {
        if post(&env, "/v1/chat/completions", chat("cheap", "hi"))
            .await
            .status()
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "a dropped stream kept its slot");
}

/// `SWITCHYARD__SECTION__KEY` variables reach the binary's config: the
/// server comes up where they say, and a bad one is refused by name.
#[tokio::test]
async fn the_environment_sets_config_keys_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (common::free_port(), common::free_port());
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let refused = std::process::Command::new(bin)
        .arg("check-config")
        .env("SWITCHYARD__ROUTING__COST_WEIGHT", "-1")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("routing.cost_weight"), "{stderr}");

    let mut child = std::process::Command::new(bin)
        .arg("serve")
        .env(
            "SWITCHYARD__SERVER__GRPC_LISTEN",
            format!("127.0.0.1:{grpc}"),
        )
        .env(
            "SWITCHYARD__SERVER__HTTP_LISTEN",
            format!("127.0.0.1:{http}"),
        )
        .env("SWITCHYARD__SERVER__DATABASE", dir.path().join("env.db"))
        .env("SWITCHYARD__CLASSIFIER__ENABLED", "false")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ready = loop {
        let r = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await;
        if r.as_ref().is_ok_and(|r| r.status().is_success()) {
            break true;
        }
        if std::time::Instant::now() > until {
            break false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ready,
        "the server did not come up on the port the environment named"
    );
    assert!(
        dir.path().join("env.db").exists(),
        "the database is where the environment said"
    );
}
