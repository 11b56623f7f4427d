//! Load-aware routing and stop sequences end to end: the real server over the
//! real mock (all three protocols), a real SQLite file, real gRPC and HTTP
//! clients. A slow model loses traffic to an equal fast one once its latency
//! is known, requests in flight spread concurrent load, weight 0 leaves
//! selection as it was; stop sequences reach every provider's wire body and
//! bad ones are refused with the field named.

use crate::common;

use std::time::Duration;

use common::{Client, Mock, Server, complete_req, route_req};
use serde_json::{Value, json};
use switchyard::config::Config;
use switchyard::pb;
use tonic::Code;

/// `slow` is listed first so that, without load signals, ties go to it.
fn config(mock: &Mock, dir: &tempfile::TempDir, policy: &str, latency_weight: f64) -> Config {
    let routing = format!(
        "[routing]\ncost_weight = 0.0\nlatency_weight = {latency_weight}\npolicy = \"{policy}\"\n\n\
         [bandit]\nseed = 7\n"
    );
    let models = [
        ("slow", "oa", "slow+slow120", 0.8),
        ("fast", "oa", "fast", 0.8),
        ("even1", "oa", "even1+slow60", 0.8),
        ("even2", "oa", "even2+slow60", 0.8),
        ("claude", "an", "claude", 0.8),
        ("gem", "ge", "gem", 0.8),
    ];
    common::protocols_config(mock, dir, &routing, &models, "")
}

async fn start(policy: &str, latency_weight: f64) -> (Mock, Server, tempfile::TempDir, Client) {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(&mock, &dir, policy, latency_weight)).await;
    let client = server.client().await;
    (mock, server, dir, client)
}

fn among(content: &str, candidates: &[&str]) -> pb::CompleteRequest {
    let mut r = complete_req(content, None);
    r.route.as_mut().unwrap().candidates = candidates.iter().map(|s| s.to_string()).collect();
    r
}

/// How many of `n` sequential Completes over {slow, fast} each model served.
async fn serve_sequentially(c: &mut Client, n: usize) -> (usize, usize) {
    let mut slow = 0;
    for i in 0..n {
        let r = c
            .complete(among(&format!("q{i}"), &["slow", "fast"]))
            .await
            .unwrap()
            .into_inner();
        slow += usize::from(r.model == "slow");
    }
    (slow, n - slow)
}

#[tokio::test]
async fn a_slow_model_loses_traffic_to_an_equal_fast_one() {
    // The bandit explores (σ = 0.3 on a 0.8 prior): a weight of 5 quality
    // points per second makes the slow model's 120 ms cost 0.6 points.
    let (_mock, server, _dir, mut c) = start("bandit", 5.0).await;
    let (slow, fast) = serve_sequentially(&mut c, 40).await;
    eprintln!("bandit, latency_weight 5: fast {fast}, slow {slow} of 40");
    assert!(fast >= 30, "fast {fast}, slow {slow}");

    // The Route explanation shows the signals and the penalty in the score.
    let mut r = route_req("explain");
    r.candidates = vec!["slow".into(), "fast".into()];
    let resp = c.route(r).await.unwrap().into_inner();
    let cand = |m: &str| resp.candidates.iter().find(|x| x.model == m).unwrap();
    let s = cand("slow");
    assert!(s.latency_ms_ewma >= 100.0, "{s:?}");
    assert!((s.load_penalty - 5.0 * s.latency_ms_ewma / 1000.0).abs() < 1e-9);
    assert!((s.score - (s.expected_quality - s.load_penalty)).abs() < 1e-9);
    assert!(cand("fast").latency_ms_ewma < 60.0);

    // The decision log carries them, as off-policy evaluation decodes them.
    let db = server.db.clone();
    server.stop().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (json,): (String,) =
        sqlx::query_as("SELECT candidates FROM decisions ORDER BY created_at_ms DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let logged: Vec<switchyard::offline::logset::LoggedCandidate> =
        serde_json::from_str(&json).unwrap();
    let raw: Value = serde_json::from_str(&json).unwrap();
    let slow = logged.iter().position(|x| x.model == "slow").unwrap();
    let ewma = raw[slow]["latency_ms_ewma"].as_f64().unwrap();
    assert!((ewma - s.latency_ms_ewma).abs() < 1e-9);
    assert!((logged[slow].load_penalty - s.load_penalty).abs() < 1e-12);
}

#[tokio::test]
async fn with_weight_zero_selection_ignores_latency() {
    // The prior policy breaks the tie by catalog order: `slow` every time,
    // however slow it is, exactly as before load signals existed.
    let (_mock, server, _dir, mut c) = start("prior", 0.0).await;
    let (slow, _) = serve_sequentially(&mut c, 6).await;
    assert_eq!(slow, 6);
    let resp = c.route(route_req("x")).await.unwrap().into_inner();
    assert!(resp.candidates.iter().all(|x| x.load_penalty == 0.0));
    server.stop().await;

    // With a weight, the same policy leaves `slow` once it has measured it.
    let (_mock, server, _dir, mut c) = start("prior", 0.02).await;
    let (slow, fast) = serve_sequentially(&mut c, 6).await;
    assert_eq!((slow, fast), (1, 5));
    server.stop().await;
}

#[tokio::test]
async fn requests_in_flight_spread_concurrent_load() {
    let (mock, server, _dir, mut c) = start("prior", 1.0).await;
    // Warm both equal models so each has a latency EWMA.
    for m in ["even1", "even2"] {
        c.complete(complete_req("warm", Some(m))).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.complete(among(&format!("c{i}"), &["even1", "even2"]))
                .await
                .unwrap()
                .into_inner()
                .model
        }));
        // Stagger so each decision sees the attempts already in flight.
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    let mut even1 = 0;
    for t in tasks {
        even1 += usize::from(t.await.unwrap() == "even1");
    }
    // Without in-flight, the prior policy would send all 8 to one model.
    assert!((2..=6).contains(&even1), "even1 served {even1} of 8");
    assert_eq!(
        mock.requests("even1+slow60").await + mock.requests("even2+slow60").await,
        10
    );
    server.stop().await;
}

#[tokio::test]
async fn stop_sequences_reach_every_protocol() {
    let (mock, server, _dir, mut c) = start("prior", 0.0).await;
    let stop = vec!["END".to_owned(), "\n\n".to_owned()];
    for (model, pointer) in [
        ("fast", "/stop"),
        ("claude", "/stop_sequences"),
        ("gem", "/generationConfig/stopSequences"),
    ] {
        let mut r = complete_req("hello", Some(model));
        r.stop = stop.clone();
        c.complete(r).await.unwrap();
        let body = mock.stats().await["last_body"].clone();
        assert_eq!(body.pointer(pointer), Some(&json!(stop)), "{model}: {body}");
    }
    // No stop sequences: the field is absent upstream.
    c.complete(complete_req("hello", Some("fast")))
        .await
        .unwrap();
    assert_eq!(mock.stats().await["last_body"].get("stop"), None);

    // Over the HTTP front: a string or an array, as OpenAI takes them.
    let url = format!("http://{}/v1/chat/completions", server.http_addr);
    let post = |stop: Value| {
        let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "stop": stop});
        reqwest::Client::new().post(&url).json(&body).send()
    };
    assert_eq!(post(json!("STOP")).await.unwrap().status(), 200);
    assert_eq!(
        mock.stats().await["last_body"]["stop_sequences"],
        json!(["STOP"])
    );
    assert_eq!(post(json!(["a", "b"])).await.unwrap().status(), 200);
    assert_eq!(
        mock.stats().await["last_body"]["stop_sequences"],
        json!(["a", "b"])
    );
    for (bad, param) in [
        (json!(["1", "2", "3", "4", "5"]), "stop"),
        (json!([""]), "stop[0]"),
        (json!(["ok", "x".repeat(300)]), "stop[1]"),
        (json!(7), "stop"),
        (json!(["ok", 3]), "stop"),
    ] {
        let resp = post(bad.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{bad}: {v}");
    }

    // Over gRPC: INVALID_ARGUMENT naming the field, nothing sent upstream.
    let before = mock.requests("fast").await;
    for (bad, field) in [(vec!["a"; 5], "stop"), (vec!["ok", ""], "stop[1]")] {
        let mut r = complete_req("hello", Some("fast"));
        r.stop = bad.into_iter().map(str::to_owned).collect();
        let e = c.complete(r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(field), "{}", e.message());
    }
    assert_eq!(mock.requests("fast").await, before);
    server.stop().await;
}
