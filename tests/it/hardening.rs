//! Hung and slow providers, end to end over the real mock: a primary that
//! accepts the call and then sends nothing is abandoned after the first-byte
//! timeout and the request moves on to the fallback at once (plain and
//! streamed, many at a time); a stream that goes quiet after it started
//! fails after the idle timeout instead of holding the client to the deadline.

use crate::common;

use std::time::{Duration, Instant};

use common::{Client, Mock, Server, complete_req, outcomes, route_req, stream_chunks};
use tonic::Code;

const FIRST_BYTE_MS: u64 = 1000;
const IDLE_MS: u64 = 300;

async fn start() -> (Mock, Server, tempfile::TempDir, Client) {
    // The attempt timeout and the deadline are far longer than the first-byte
    // bound: without it, each stalled call would wait 30 s.
    start_with(
        &format!("first_byte_timeout_ms = {FIRST_BYTE_MS}\nstream_idle_timeout_ms = {IDLE_MS}\n"),
        &[
            ("stalled", "oa", "stalled+hang", 0.95),
            ("backup", "an", "backup", 0.6),
            ("quiet", "ge", "quiet+slowstream3000", 0.99),
        ],
    )
    .await
}

async fn start_with(
    dispatch: &str,
    models: &[common::MockModel<'_>],
) -> (Mock, Server, tempfile::TempDir, Client) {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::protocols_config(
        &mock,
        &dir,
        &format!(
            "[routing]\ncost_weight = 0.0\npolicy = \"prior\"\n\n\
             [dispatch]\nattempt_timeout_ms = 30000\ndeadline_ms = 60000\n{dispatch}"
        ),
        models,
        "",
    );
    let server = Server::start(config).await;
    let client = server.client().await;
    (mock, server, dir, client)
}

fn among(content: &str, candidates: &[&str]) -> switchyard::pb::CompleteRequest {
    let mut r = complete_req(content, None);
    r.route.as_mut().unwrap().candidates = candidates.iter().map(|s| s.to_string()).collect();
    r
}

#[tokio::test]
async fn a_hung_primary_is_abandoned_after_the_first_byte_timeout() {
    let (mock, _server, _dir, mut c) = start().await;
    let pair = ["stalled", "backup"];
    // 60 at once: all of them choose the primary before its breaker opens.
    let calls = (0..60).map(|i| {
        let mut c = c.clone();
        async move {
            let started = Instant::now();
            let r = c
                .complete(among(&format!("request {i}"), &pair))
                .await
                .unwrap_or_else(|e| panic!("request {i} failed: {e:?}"))
                .into_inner();
            (started.elapsed(), r)
        }
    });
    let answered = futures::future::join_all(calls).await;
    let mut took: Vec<Duration> = answered.iter().map(|(t, _)| *t).collect();
    took.sort();
    let p99 = took[(took.len() * 99).div_ceil(100) - 1];
    let bound = Duration::from_millis(FIRST_BYTE_MS + 1000);
    eprintln!(
        "hung primary, 60 at once: p50 {:?}, p99 {p99:?}, max {:?}",
        took[29], took[59]
    );
    assert!(p99 <= bound, "p99 {p99:?} over {bound:?}: {took:?}");
    let mut stalled = 0u64;
    for (i, (_, r)) in answered.iter().enumerate() {
        assert_eq!(r.model, "backup", "request {i}");
        assert!(r.content.ends_with(&format!("request {i}")));
        let on_primary: Vec<_> = r.attempts.iter().filter(|a| a.model == "stalled").collect();
        // Never retried: a second wait on it would double the delay.
        assert!(on_primary.len() <= 1, "{:?}", r.attempts);
        for a in on_primary {
            assert_eq!(a.outcome, "timeout", "{a:?}");
            assert!(a.error.contains("no response within"), "{a:?}");
            stalled += 1;
        }
    }
    assert!(stalled > 0, "the primary was never tried");
    assert_eq!(mock.requests("stalled+hang").await, stalled);

    // The stalls opened its breaker: the next request does not wait at all.
    let mut r = route_req("x");
    r.candidates = pair.iter().map(|s| s.to_string()).collect();
    let why = c.route(r).await.unwrap().into_inner().candidates;
    let primary = why.iter().find(|x| x.model == "stalled").unwrap();
    assert!(primary.reason.contains("circuit open"), "{primary:?}");
}

#[tokio::test]
async fn a_stream_from_a_hung_primary_opens_on_the_fallback() {
    let (_mock, _server, _dir, mut c) = start().await;
    let started = Instant::now();
    let chunks = stream_chunks(&mut c, among("stream me", &["stalled", "backup"])).await;
    assert!(started.elapsed() <= Duration::from_millis(FIRST_BYTE_MS + 1000));
    assert_eq!(chunks[0].model, "backup");
    let attempts = &chunks.last().unwrap().attempts;
    assert_eq!(outcomes(attempts), ["stalled:timeout", "backup:ok"]);
}

#[tokio::test]
async fn a_stream_that_goes_quiet_fails_after_the_idle_timeout() {
    let (_mock, server, _dir, mut c) = start().await;
    let started = Instant::now();
    let mut s = c
        .complete_stream(among("one two three", &["quiet"]))
        .await
        .unwrap()
        .into_inner();
    let (mut text, mut decision) = (String::new(), String::new());
    let err = loop {
        match s.message().await {
            Ok(Some(ch)) => {
                text.push_str(&ch.delta);
                if decision.is_empty() {
                    decision = ch.decision_id.clone();
                }
            }
            Ok(None) => panic!("ended without an error"),
            Err(e) => break e,
        }
    };
    // The mock pauses 3 s between deltas; the idle bound cuts that short.
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("stalled"), "{}", err.message());
    assert_eq!(text, "[quiet] ");
    let store =
        switchyard::store::Store::open(&server.db, &switchyard::config::Config::embedded().store)
            .await
            .unwrap()
            .0;
    let d = common::logged_decision(&store, &decision).await;
    assert_eq!(d.attempts, 1);
    assert_eq!(d.served_model, None);
}

/// A first attempt slower than the hedge delay races the next model's; the
/// first answer wins and the slow call is logged as cancelled. A fast first
/// attempt is never hedged.
#[tokio::test]
async fn a_slow_first_attempt_is_hedged_and_the_first_answer_wins() {
    let (mock, _server, _dir, mut c) = start_with(
        "hedge_after_ms = 200\nhedge_quantile = 0\n",
        &[
            ("slowpoke", "oa", "slowpoke+slow2000", 0.95),
            ("quick", "an", "quick", 0.6),
            ("fast", "ge", "fast", 0.99),
        ],
    )
    .await;
    let started = Instant::now();
    let r = c
        .complete(among("hedge me", &["slowpoke", "quick"]))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(r.model, "quick");
    assert_eq!(r.content, "[quick] hedge me");
    assert_eq!(outcomes(&r.attempts), ["slowpoke:cancelled", "quick:ok"]);
    assert!(r.attempts[0].error.contains("quick answered first"));
    assert_eq!(mock.requests("slowpoke+slow2000").await, 1);

    // Streams race to their first event the same way.
    let chunks = stream_chunks(&mut c, among("stream me", &["slowpoke", "quick"])).await;
    assert_eq!(chunks[0].model, "quick");
    let last = chunks.last().unwrap();
    assert_eq!(outcomes(&last.attempts), ["slowpoke:cancelled", "quick:ok"]);

    // A first attempt that answers within the delay runs alone.
    let r = c
        .complete(among("no hedge", &["fast", "quick"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcomes(&r.attempts), ["fast:ok"]);
    assert_eq!(mock.requests("quick").await, 2);
}

/// A client that goes away (a gRPC deadline, an HTTP client that hangs up)
/// takes its provider call with it: the call is dropped, not waited out, and
/// logged as cancelled with no model served.
#[tokio::test]
async fn a_client_that_goes_away_cancels_the_provider_call() {
    let (mock, server, _dir, mut c) = start_with(
        "",
        &[
            ("slowpoke", "oa", "slowpoke+slow3000", 0.95),
            ("quick", "an", "quick", 0.6),
        ],
    )
    .await;
    let mut r = tonic::Request::new(among("too slow for me", &["slowpoke", "quick"]));
    r.set_timeout(Duration::from_millis(300));
    let e = c.complete(r).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{e:?}"
    );
    let http = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", server.http_addr))
        .timeout(Duration::from_millis(300))
        .json(&serde_json::json!({"model": "slowpoke",
            "messages": [{"role": "user", "content": "hang up on it"}]}))
        .send()
        .await;
    assert!(http.unwrap_err().is_timeout());

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.db.display()))
        .await
        .unwrap();
    let mut logged: Vec<(String, i64, Option<String>)> = Vec::new();
    for _ in 0..100 {
        logged = sqlx::query_as(
            "SELECT a.outcome, a.latency_ms, d.served_model FROM attempts a
             JOIN decisions d ON d.id = a.decision_id ORDER BY a.started_at_ms",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if logged.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logged.len(), 2, "{logged:?}");
    for (outcome, latency_ms, served) in &logged {
        assert_eq!(outcome, "cancelled");
        // Dropped when the client went, not after the provider's 3 s.
        assert!(*latency_ms < 1500, "{logged:?}");
        assert_eq!(served, &None);
    }
    // Nothing fell back to another model for a client that is gone.
    assert_eq!(mock.requests("quick").await, 0);
    assert_eq!(mock.requests("slowpoke+slow3000").await, 2);
}
