//! The failure policy end to end: the real server over the real mock (all
//! three protocols), a real SQLite file. A flaky primary with a healthy
//! fallback loses no request and its breaker opens then closes; all models
//! down fails fast; 429s wait for Retry-After; streams fall back only before
//! their first token; failures are logged as attempts and learned; a
//! request that does not fit a model (context, parameter) moves on to one it
//! fits, with no mark on the first.

use crate::common;

use std::time::{Duration, Instant};

use common::{Client, Mock, Server, complete_req, route_req};
use switchyard::config::Config;
use switchyard::pb;
use tonic::Code;

const DEADLINE_MS: u64 = 2000;

fn config(mock: &Mock, dir: &tempfile::TempDir) -> Config {
    let mut c = common::protocols_config(
        mock,
        dir,
        &format!(
            "[routing]\ncost_weight = 0.0\npolicy = \"prior\"\n\n\
             [dispatch]\nattempt_timeout_ms = 250\ndeadline_ms = {DEADLINE_MS}\nmax_retries = 1\n\
             backoff_base_ms = 10\nbackoff_max_ms = 50\nretry_budget_ratio = 0.5\n\
             breaker_consecutive_failures = 3\nbreaker_failure_rate = 0.5\nbreaker_window = 10\n\
             breaker_open_ms = 400\nbreaker_probes = 1\nshed_after_429s = 0\n"
        ),
        &[
            // 50% mixed failures (5xx, resets, hangs) for its first 60 requests.
            ("primary", "oa", "primary+flaky50+until60", 0.95),
            ("backup", "an", "backup", 0.6),
            ("gem", "ge", "gem", 0.5),
            ("down503", "oa", "down+fail503", 0.9),
            ("downhang", "ge", "downhang+hang", 0.9),
            ("limited", "an", "limited+429x1+ra300", 0.9),
            ("bad400", "oa", "bad+fail400", 0.99),
            ("nokey401", "ge", "nokey+fail401", 0.99),
            ("cutter", "an", "cutter+cutstream", 0.99),
            // Contexts of 40 tokens upstream (the catalog thinks 16,000).
            ("tiny_oa", "oa", "tiny+ctx40", 0.98),
            ("tiny_an", "an", "tiny+ctx40", 0.98),
            ("tiny_ge", "ge", "tiny+ctx40", 0.98),
            ("picky", "oa", "picky+rejectseed", 0.98),
            // Last: `tail` gives it a chain.
            ("chained", "oa", "chained+fail503", 0.99),
        ],
        "fallback = [\"gem\"]\n",
    );
    c.server.drain_timeout = Duration::from_millis(3000);
    c
}

async fn start() -> (Mock, Server, tempfile::TempDir, Client) {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(&mock, &dir)).await;
    let client = server.client().await;
    (mock, server, dir, client)
}

fn among(content: &str, candidates: &[&str]) -> pb::CompleteRequest {
    let mut r = complete_req(content, None);
    r.route.as_mut().unwrap().candidates = candidates.iter().map(|s| s.to_string()).collect();
    r
}

/// The reason Route gives for `model` among `candidates`.
async fn reason(c: &mut Client, model: &str, candidates: &[&str]) -> String {
    let mut r = route_req("x");
    r.candidates = candidates.iter().map(|s| s.to_string()).collect();
    let resp = c.route(r).await.unwrap().into_inner();
    resp.candidates
        .into_iter()
        .find(|x| x.model == model)
        .unwrap()
        .reason
}

#[tokio::test]
async fn a_flaky_primary_with_a_healthy_fallback_loses_nothing() {
    let (_mock, server, _dir, mut c) = start().await;
    let pair = ["primary", "backup"];
    let (mut by_backup, mut retried, mut saw_open) = (0, 0, false);
    for i in 0..40 {
        let started = Instant::now();
        let r = c
            .complete(among(&format!("request {i}"), &pair))
            .await
            .unwrap_or_else(|e| panic!("request {i} failed: {e:?}"))
            .into_inner();
        assert!(started.elapsed() < Duration::from_millis(DEADLINE_MS));
        assert!(r.content.ends_with(&format!("request {i}")));
        by_backup += usize::from(r.model == "backup");
        retried += usize::from(r.attempts.len() > 1);
        // Every attempt is in the log, and the reply says who served.
        let d = server_decision(&server, &r.decision_id).await;
        assert_eq!(d.attempts, r.attempts.len() as i64);
        assert_eq!(d.served_model.as_deref(), Some(r.model.as_str()));
        assert_eq!(r.attempts.last().unwrap().model, r.model);
        saw_open |= reason(&mut c, "primary", &pair)
            .await
            .contains("circuit open");
    }
    assert!(by_backup > 0 && retried > 0, "{by_backup} {retried}");
    assert!(saw_open, "the primary's breaker never opened");

    // The primary recovers (the mock stops failing it): after the cool-down
    // a probe succeeds, the breaker closes and the primary serves again.
    let mut recovered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let r = c
            .complete(among("again", &pair))
            .await
            .unwrap()
            .into_inner();
        if r.model == "primary" && reason(&mut c, "primary", &pair).await.is_empty() {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the primary's breaker never closed");

    // Its failures are bandit observations (replayed from the log at start).
    let store = switchyard::store::Store::open(&server.db, &Config::embedded().store)
        .await
        .unwrap()
        .0;
    let failures = switchyard::learn::failure_observations(&store)
        .await
        .unwrap();
    assert!(failures.iter().any(|(m, _)| m == "primary"));
    assert!(failures.iter().all(|(m, _)| m == "primary"), "{failures:?}");
}

async fn server_decision(server: &Server, id: &str) -> switchyard::store::StoredDecision {
    let store = switchyard::store::Store::open(&server.db, &Config::embedded().store)
        .await
        .unwrap()
        .0;
    common::logged_decision(&store, id).await
}

#[tokio::test]
async fn all_models_down_is_unavailable_quickly() {
    let (_mock, server, _dir, mut c) = start().await;
    let down = ["down503", "downhang"];
    // While breakers are closed: every model tried, still well within the deadline.
    let started = Instant::now();
    let e = c.complete(among("x", &down)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(DEADLINE_MS));
    assert!(e.message().contains("4 attempts"), "{}", e.message());
    let _ = c.complete(among("x", &down)).await.unwrap_err();
    // Both breakers open now: refused at once, naming why.
    let started = Instant::now();
    let e = c.complete(among("x", &down)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert!(e.message().contains("circuit open"), "{}", e.message());
    // /metrics shows what selection saw: both breakers open, the others closed.
    let metrics = reqwest::get(format!("http://{}/metrics", server.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let state = |model: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("switchyard_breaker_state{")
                    && l.contains(&format!("model=\"{model}\""))
            })
            .unwrap_or_else(|| panic!("no breaker gauge for {model} in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(state("down503"), 2.0);
    assert_eq!(state("downhang"), 2.0);
    assert!(metrics.contains("switchyard_provider_in_flight{provider=\"oa\"} 0"));
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let (_mock, _server, _dir, mut c) = start().await;
    let started = Instant::now();
    let r = c
        .complete(complete_req("x", Some("limited")))
        .await
        .unwrap()
        .into_inner();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let codes: Vec<u32> = r.attempts.iter().map(|a| a.http_status).collect();
    assert_eq!(codes, [429, 200]);
    assert_eq!(r.model, "limited");
}

#[tokio::test]
async fn request_errors_do_not_fall_back_but_provider_errors_do() {
    let (_mock, _server, _dir, mut c) = start().await;
    let e = c
        .complete(among("x", &["bad400", "backup"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("1 attempts"), "{}", e.message());
    // A 401 is that provider's problem: not retried, the next model answers.
    let r = c
        .complete(among("x", &["nokey401", "backup"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "backup");
    let codes: Vec<u32> = r.attempts.iter().map(|a| a.http_status).collect();
    assert_eq!(codes, [401, 200]);
}

#[tokio::test]
async fn a_configured_chain_comes_before_the_ranking() {
    let (_mock, _server, _dir, mut c) = start().await;
    // backup outranks gem, but chained's own fallback names gem.
    let r = c
        .complete(among("x", &["chained", "backup", "gem"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "gem");
    let models: Vec<&str> = r.attempts.iter().map(|a| a.model.as_str()).collect();
    assert_eq!(models, ["chained", "chained", "gem"]);
}

#[tokio::test]
async fn streams_fall_back_before_the_first_token_and_never_after() {
    let (_mock, _server, _dir, mut c) = start().await;
    // Fails before any text: the client sees only the backup's stream.
    let chunks = common::stream_chunks(&mut c, among("stream me", &["down503", "gem"])).await;
    assert_eq!(chunks[0].model, "gem");
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "[gem] stream me");
    let attempts = &chunks.last().unwrap().attempts;
    assert_eq!(
        common::outcomes(attempts),
        ["down503:error", "down503:error", "gem:ok"]
    );

    // Fails after text: a clear error, no second model's words spliced in.
    let mut s = c
        .complete_stream(among("one two three four", &["cutter", "backup"]))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let err = loop {
        match s.message().await {
            Ok(Some(ch)) => text.push_str(&ch.delta),
            Ok(None) => panic!("ended without an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(text, "[cutter] one ");
}

#[tokio::test]
async fn a_request_too_long_or_unsupported_for_a_model_moves_on_with_no_mark_on_it() {
    let (_mock, server, _dir, mut c) = start().await;
    let long = "Summarise the following report in detail, section by section. ".repeat(8);
    for tiny in ["tiny_oa", "tiny_an", "tiny_ge"] {
        // More misfits than the breaker's consecutive-failure limit (3).
        for _ in 0..4 {
            let r = c
                .complete(among(&long, &[tiny, "backup"]))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.model, "backup", "{tiny}");
            let a = &r.attempts;
            assert_eq!(a.len(), 2, "{tiny}: {a:?}");
            assert_eq!(
                (a[0].model.as_str(), a[0].http_status, a[0].outcome.as_str()),
                (tiny, 400, "error")
            );
            assert!(a[0].error.contains("40"), "{tiny}: {}", a[0].error);
            assert_eq!(
                (a[1].model.as_str(), a[1].outcome.as_str()),
                ("backup", "ok")
            );
        }
        // No breaker opened: a prompt that fits is the tiny model's again.
        let r = c
            .complete(among("hi", &[tiny, "backup"]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.model, tiny);
        assert_eq!(r.attempts.len(), 1);
    }
    // A parameter the model refuses: the next one that takes it answers.
    let mut seeded = among("hi", &["picky", "gem"]);
    seeded.seed = Some(7);
    let r = c.complete(seeded).await.unwrap().into_inner();
    assert_eq!(r.model, "gem");
    assert!(r.attempts[0].error.contains("seed"), "{:?}", r.attempts);
    // When no model fits, the request is at fault: INVALID_ARGUMENT.
    let e = c.complete(among(&long, &["tiny_oa"])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("maximum context length"),
        "{}",
        e.message()
    );
    server.stop().await;
}
