//! A model served by two deployments, end to end over the real mock: the
//! cheaper one is preferred; while it is rate-limited every call fails over
//! to the other deployment of the same model (never to another model), its
//! breaker moves traffic off it, and traffic shifts back once it recovers.
//! The decision log records which deployment served.

use crate::common;

use std::time::{Duration, Instant};

use sqlx::Row as _;

/// The cheap deployment answers 429 to its first this many calls.
const RATE_LIMITED_CALLS: u64 = 4;

#[tokio::test]
async fn a_rate_limited_deployment_sheds_traffic_to_the_other_and_gets_it_back() {
    let mock = common::Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let upstream_a = format!("llama-a+429x{RATE_LIMITED_CALLS}+ra1");
    let config = common::protocols_config(
        &mock,
        &dir,
        &format!(
            "[dispatch]\nmax_retries = 0\nbreaker_consecutive_failures = 2\nbreaker_open_ms = 300\n\
             shed_after_429s = 0\ndeployment_429_weight = 1.0\n\n\
             [[providers]]\nname = \"oa2\"\nkind = \"openai\"\nbase_url = \"{}\"\n",
            mock.base_url()
        ),
        &[("llama", "oa", &upstream_a, 0.9)],
        // Twice the price at the second host: the first is preferred.
        "\n[[models.deployments]]\nname = \"hostb\"\nprovider = \"oa2\"\nupstream = \"llama-b\"\n\
         input_usd_per_mtok = 2.0\noutput_usd_per_mtok = 2.0\n",
    );
    let server = common::Server::start(config).await;
    let mut c = server.client().await;
    // One call at a time until the cheap host has served ten in a row.
    let mut served: Vec<(String, Vec<String>)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let r = c
            .complete(common::complete_req(&format!("q{}", served.len()), None))
            .await
            .unwrap_or_else(|e| panic!("call {} failed: {e:?}", served.len()))
            .into_inner();
        assert_eq!(r.model, "llama", "every call is answered by the model");
        let attempts: Vec<String> = r
            .attempts
            .iter()
            .map(|a| format!("{}:{}", a.deployment, a.outcome))
            .collect();
        let last = r.attempts.last().expect("an attempt served");
        assert_eq!(last.outcome, "ok", "{attempts:?}");
        served.push((last.deployment.clone(), attempts));
        let tail = served.iter().rev().take(10);
        if served.len() >= 10 && tail.clone().all(|(d, a)| d == "oa" && a.len() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let direct_to_b = served
        .iter()
        .filter(|(_, a)| a == &["hostb:ok".to_owned()])
        .count();
    let failed_over = served.iter().filter(|(_, a)| a.len() == 2).count();
    eprintln!(
        "{} calls: {failed_over} failed over from oa to hostb, {direct_to_b} went straight to hostb, then oa again",
        served.len()
    );
    assert_eq!(
        served[0].1,
        ["oa:error", "hostb:ok"],
        "the cheap host first, then the other"
    );
    assert_eq!(
        failed_over as u64, RATE_LIMITED_CALLS,
        "only the rate-limited calls (two, then one half-open probe each) failed over: {served:?}"
    );
    assert!(
        direct_to_b >= 5,
        "with its breaker open, traffic went to the healthy host: {served:?}"
    );
    let tail: Vec<&(String, Vec<String>)> = served.iter().rev().take(10).collect();
    assert!(
        tail.iter().all(|(d, a)| d == "oa" && a.len() == 1),
        "traffic shifted back to the recovered host within 10 s: {served:?}"
    );
    let on_b = failed_over + direct_to_b;
    let on_a_ok = served.len() - on_b;
    assert_eq!(
        mock.requests(&upstream_a).await,
        RATE_LIMITED_CALLS + on_a_ok as u64,
        "the cheap host saw its rate-limited calls and the ones it served"
    );

    // The log records which deployment took each attempt.
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
    let rows = sqlx::query(
        "SELECT deployment, outcome, COUNT(*) AS n FROM attempts GROUP BY deployment, outcome \
         ORDER BY deployment, outcome",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let logged: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get("deployment"), r.get("outcome"), r.get("n")))
        .collect();
    assert_eq!(
        logged,
        [
            ("hostb".to_owned(), "ok".to_owned(), on_b as i64),
            (
                "oa".to_owned(),
                "error".to_owned(),
                RATE_LIMITED_CALLS as i64
            ),
            ("oa".to_owned(), "ok".to_owned(), on_a_ok as i64),
        ]
    );
}
