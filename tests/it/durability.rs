//! What the server acknowledged survives `kill -9`, and SIGTERM drains
//! in-flight requests before exiting. These run the real `switchyard` binary.
//! Also: a write that fails inside a group commit fails alone.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Mock, complete_req, free_port, route_req};
use switchyard::pb;
use switchyard::pb::router_client::RouterClient;
use switchyard::store::{AttemptRow, DecisionRow, Store};

pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(mock: &Mock, dir: &tempfile::TempDir) -> Proc {
    spawn_server_with(mock, dir, "")
}

/// [`spawn_server`] with `extra` TOML appended to the mock catalog's config.
fn spawn_server_with(mock: &Mock, dir: &tempfile::TempDir, extra: &str) -> Proc {
    let db = dir.path().join("switchyard.db");
    spawn_toml(
        dir,
        &(common::mock_config_toml(&mock.base_url(), &db) + extra),
    )
}

/// The real binary serving `toml` (written into `dir`) on a free port.
pub(crate) fn spawn_toml(dir: &tempfile::TempDir, toml: &str) -> Proc {
    let cfg = dir.path().join("switchyard.toml");
    std::fs::write(&cfg, toml).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc {
        child,
        addr: format!("http://127.0.0.1:{port}"),
    }
}

pub(crate) async fn connect(p: &Proc) -> RouterClient<tonic::transport::Channel> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = RouterClient::connect(p.addr.clone()).await {
            return c;
        }
        assert!(Instant::now() < until, "server did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_fsynced() {
    acknowledged_writes_survive_kill_9("full").await;
}

/// The default, "normal": Routes and feedback are still answered after their
/// commit (fsynced only for feedback), Completes from the journal.
#[tokio::test]
async fn acknowledged_writes_survive_kill_9_journaled() {
    acknowledged_writes_survive_kill_9("normal").await;
}

/// 200 Routes with feedback and 40 Completes from 8 concurrent clients, then
/// SIGKILL: every one of them is in the log once it is opened again.
async fn acknowledged_writes_survive_kill_9(synchronous: &str) {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("\n[store]\nsynchronous = \"{synchronous}\"\n");
    let mut server = spawn_server_with(&mock, &dir, &extra);
    let client = connect(&server).await;

    // Concurrent writers so that group commits really batch.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut completed = Vec::new();
            for i in 0..25 {
                if i % 5 == 0 {
                    completed.push(complete(&mut c, w, i).await);
                }
                let id = c
                    .route(route_req(&format!("writer {w} request {i}")))
                    .await
                    .unwrap_or_else(|e| panic!("route {w}/{i}: {e:?}"))
                    .into_inner()
                    .decision_id;
                let reward = f64::from(i) / 25.0;
                c.feedback(pb::FeedbackRequest {
                    decision_id: id.clone(),
                    reward,
                    source: "k".into(),
                })
                .await
                .unwrap_or_else(|e| panic!("feedback {w}/{i}: {e:?}"));
                acked.push((id, reward));
            }
            (acked, completed)
        }));
    }
    let (mut acked, mut completed) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, c) = t.await.unwrap();
        acked.extend(a);
        completed.extend(c);
    }
    server.child.kill().unwrap(); // SIGKILL: no chance to flush anything
    server.child.wait().unwrap();
    // Under "full" every answer waited for its commit: no journal at all.
    let journal = dir.path().join("switchyard.db-acks");
    assert_eq!(journal.exists(), synchronous == "normal", "{synchronous}");

    let cfg = switchyard::config::Config::embedded().store;
    let (store, _w) = switchyard::store::Store::open(&dir.path().join("switchyard.db"), &cfg)
        .await
        .unwrap();
    assert_eq!(acked.len(), 200);
    for (id, reward) in &acked {
        assert!(
            store.decision(id).await.unwrap().is_some(),
            "decision {id} lost"
        );
        assert_eq!(
            store.feedback(id).await.unwrap(),
            vec![("k".to_owned(), *reward)],
            "feedback of {id}"
        );
    }
    // A completion's decision commits with its attempts, before the answer.
    assert_eq!(completed.len(), 40);
    assert_completions_logged(&store, &completed).await;
}

/// With `synchronous = "normal"` a Complete is acknowledged from the
/// acknowledgement journal, before SQLite commits it: what was acknowledged
/// right up to a SIGKILL is in the log once it is opened again.
#[tokio::test]
async fn journaled_completions_survive_kill_9() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_server_with(&mock, &dir, "\n[store]\nsynchronous = \"normal\"\n");
    let client = connect(&server).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..15 {
                acked.push(complete(&mut c, w, i).await);
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let cfg = switchyard::config::Config::embedded().store;
    let (store, _w) = Store::open(&dir.path().join("switchyard.db"), &cfg)
        .await
        .unwrap();
    assert_eq!(acked.len(), 120);
    assert_completions_logged(&store, &acked).await;
}

/// One Complete from writer `w`; its (decision id, model).
async fn complete(c: &mut Client, w: u32, i: u32) -> (String, String) {
    let r = c
        .complete(complete_req(&format!("writer {w} completion {i}"), None))
        .await
        .unwrap_or_else(|e| panic!("complete {w}/{i}: {e:?}"))
        .into_inner();
    (r.decision_id, r.model)
}

/// Each acknowledged completion is in the log with its served model and attempt.
async fn assert_completions_logged(store: &Store, completed: &[(String, String)]) {
    for (id, model) in completed {
        let d = store.decision(id).await.unwrap();
        let d = d.unwrap_or_else(|| panic!("completion {id} lost"));
        assert_eq!(d.served_model.as_deref(), Some(model.as_str()), "{id}");
        assert_eq!(d.attempts, 1, "attempts of {id}");
    }
}

fn decision_row(id: &str) -> DecisionRow {
    DecisionRow {
        id: id.into(),
        created_at_ms: 1,
        tenant: "t".into(),
        rpc: "complete",
        model: "m".into(),
        provider: "p".into(),
        pinned: false,
        propensity: 0.5,
        explored: false,
        policy_version: "v".into(),
        cost_weight: 1.0,
        max_cost_usd: None,
        prompt_tokens: 3,
        output_tokens: 4,
        message_count: 1,
        features: None,
        context: Some(vec![1, 2, 3, 4]),
        intent: None,
        candidates: "[]".into(),
        metadata: "{}".into(),
        prompt: None,
        served_model: Some("m".into()),
        key_id: None,
        rules: None,
        profile: None,
        split: None,
        cached_from: None,
    }
}

fn attempt_row(outcome: &'static str) -> AttemptRow {
    AttemptRow {
        model: "m".into(),
        provider: "p".into(),
        deployment: None,
        outcome,
        error: None,
        http_status: Some(200),
        started_at_ms: 2,
        latency_ms: 5,
        prompt_tokens: Some(3),
        completion_tokens: Some(4),
        usage_estimated: false,
        cost_usd: Some(0.001),
    }
}

/// Decisions with their attempts commit as one script per batch; a batch
/// holding a write that cannot commit (attempts of an unknown decision)
/// falls back to job by job, and only that job fails.
#[tokio::test]
async fn a_failing_write_fails_alone_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = switchyard::config::Config::embedded().store;
    let (store, _w) = Store::open(&dir.path().join("s.db"), &cfg).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 8 == 3 {
                let r = s
                    .record_attempts(format!("missing-{i}"), vec![attempt_row("ok")], None)
                    .await;
                (i, r.is_ok())
            } else {
                let attempts = vec![attempt_row("error"), attempt_row("ok")];
                let r = s
                    .record_decision_with_attempts(decision_row(&format!("d-{i}")), attempts)
                    .await;
                (i, r.is_ok())
            }
        }));
    }
    for t in tasks {
        let (i, ok) = t.await.unwrap();
        assert_eq!(ok, i % 8 != 3, "write {i}");
    }
    for i in (0..40).filter(|i| i % 8 != 3) {
        let d = store.decision(&format!("d-{i}")).await.unwrap().unwrap();
        assert_eq!((d.attempts, d.served_model.as_deref()), (2, Some("m")));
        assert_eq!(d.propensity, 0.5);
    }
    // Every bind lands in its own column.
    let file = dir.path().join("s.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let d: (
        i64,
        String,
        String,
        i64,
        i64,
        i64,
        Vec<u8>,
        String,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT created_at_ms, tenant, rpc, prompt_tokens, output_tokens, message_count, context,
                candidates, metadata, served_model FROM decisions WHERE id = 'd-0'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let want = (
        1,
        "t",
        "complete",
        3,
        4,
        1,
        vec![1u8, 2, 3, 4],
        "[]",
        "{}",
        "m",
    );
    assert_eq!(
        (
            d.0,
            d.1.as_str(),
            d.2.as_str(),
            d.3,
            d.4,
            d.5,
            d.6,
            d.7.as_str(),
            d.8.as_str(),
            d.9.as_str()
        ),
        want
    );
    let a: (i64, String, String, i64, i64, i64, i64, i64, bool, f64) = sqlx::query_as(
        "SELECT seq, outcome, provider, http_status, started_at_ms, latency_ms, prompt_tokens,
                completion_tokens, usage_estimated, cost_usd
         FROM attempts WHERE decision_id = 'd-0' ORDER BY seq DESC",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        a,
        (1, "ok".into(), "p".into(), 200, 2, 5, 3, 4, false, 0.001)
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_server(&mock, &dir);
    let mut c = connect(&server).await;
    c.route(route_req("warm up")).await.unwrap();

    // A slow completion is in flight when SIGTERM arrives.
    // A completion the mock holds for 400 ms is in flight when SIGTERM arrives.
    let mut c2 = c.clone();
    let inflight =
        tokio::spawn(async move { c2.complete(complete_req("slow one", Some("slow"))).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = server.child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let r = inflight.await.unwrap();
    assert!(r.is_ok(), "in-flight request failed during drain: {r:?}");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < until, "server did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
