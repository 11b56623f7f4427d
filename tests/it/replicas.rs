//! Replicas on one PostgreSQL (`store.backend = "postgres"`): decisions made
//! on one replica take feedback on another, every replica's learner follows
//! the shared log to the posterior of a fresh rebuild from it, `kill -9` of a
//! replica and a crash of PostgreSQL itself lose nothing acknowledged, and a
//! key's rpm limit (Redis) and budget (PostgreSQL) hold across replicas.
//! PostgreSQL (127.0.0.1:5432) and Redis must be running (CI's `.ci/run`
//! starts them): these tests fail, never skip, without them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common;
use crate::durability::{Proc, connect, spawn_toml};

use common::pg::{PgDb, PrivatePg};
use common::{Client, Mock, Server, mock_config_toml, route_req};
use serde_json::{Value, json};
use switchyard::config::{AuthMode, Config, LimitsBackend, StoreBackend};
use switchyard::pb;
use switchyard::store::Store;

/// The mock catalog on PostgreSQL at `url`, learning (bandit) without the
/// classifier, following the shared log every 20 ms.
fn replica_toml(mock: &Mock, dir: &tempfile::TempDir, url: &str) -> String {
    let db = dir.path().join("switchyard.db");
    mock_config_toml(&mock.base_url(), &db)
        .replace("policy = \"prior\"", "policy = \"bandit\"")
        .replace("[classifier]\n", "[classifier]\nenabled = false\n")
        + &format!("\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nfollow_interval_ms = 20\n")
}

async fn shared_store(url: &str) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::embedded().store;
    cfg.backend = StoreBackend::Postgres;
    cfg.url = url.into();
    let (store, _w) = Store::open(&dir.path().join("reader.db"), &cfg)
        .await
        .unwrap();
    store
}

async fn route(c: &mut Client, text: &str) -> Result<pb::RouteResponse, tonic::Status> {
    c.route(route_req(text)).await.map(|r| r.into_inner())
}

async fn feedback(c: &mut Client, id: &str, reward: f64) -> Result<(), tonic::Status> {
    c.feedback(pb::FeedbackRequest {
        decision_id: id.into(),
        reward,
        source: "judge".into(),
    })
    .await
    .map(|_| ())
}

/// The bandit state a replica decides with now: its version (from a Route
/// on it) and that version's sums, as every replica records them in the log.
async fn posterior(c: &mut Client, db: &PgDb) -> (String, Value) {
    let version = route(c, "which state?").await.unwrap().policy_version;
    let params: String = db
        .scalar(&format!(
            "SELECT params FROM policy_versions WHERE version = '{version}'"
        ))
        .await;
    let params: Value = serde_json::from_str(&params).unwrap();
    (version, params["state"].clone())
}

/// Equal as JSON, numbers to `tol` relative (sums taken in another order).
fn assert_close(a: &Value, b: &Value, tol: f64, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let scale = 1f64.max(x.abs()).max(y.abs());
            assert!((x - y).abs() <= tol * scale, "{at}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, tol, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: HashSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (x, y) = (&x.get(k), &y.get(k));
                let (Some(x), Some(y)) = (x, y) else {
                    panic!("{at}.{k}: only on one side");
                };
                assert_close(x, y, tol, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// Waits until every replica decides with `observations` in its posterior.
async fn quiesce(clients: &mut [Client], db: &PgDb, observations: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let mut states = Vec::new();
        for c in clients.iter_mut() {
            let (version, state) = posterior(c, db).await;
            if version.contains(&format!("-{observations}obs-")) {
                states.push(state);
            }
        }
        if states.len() == clients.len() {
            return states;
        }
        assert!(Instant::now() < until, "replicas did not converge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decisions on A, their feedback on B and C, `kill -9` of A while it is
/// answering, A restarted, more of the same; then every replica's posterior
/// equals a fresh rebuild from the whole log, and nothing acknowledged is lost.
#[tokio::test]
async fn three_replicas_learn_one_posterior_through_a_kill_9() {
    let db = PgDb::create().await;
    let mock = Mock::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut procs: Vec<Proc> = dirs
        .iter()
        .map(|d| spawn_toml(d, &replica_toml(&mock, d, &db.url)))
        .collect();
    let mut clients = Vec::new();
    for p in &procs {
        clients.push(connect(p).await);
    }
    let mut acked: Vec<(String, f64)> = Vec::new();
    let mut decided: Vec<String> = Vec::new();
    for round in 0..2 {
        // Four writers routing on A; feedback alternately on B and C.
        let mut tasks = Vec::new();
        for w in 0..4 {
            let mut a = clients[0].clone();
            let mut others = [clients[1].clone(), clients[2].clone()];
            tasks.push(tokio::spawn(async move {
                let (mut fed, mut made) = (Vec::new(), Vec::new());
                for i in 0..100 {
                    let text = format!("round {round} writer {w} request {i} {}", "x".repeat(i));
                    let Ok(r) = route(&mut a, &text).await else {
                        break; // A was killed: this one was never acknowledged
                    };
                    made.push(r.decision_id.clone());
                    let reward = ((w * 100 + i) % 11) as f64 / 10.0;
                    let on = &mut others[i % 2];
                    feedback(on, &r.decision_id, reward).await.unwrap();
                    fed.push((r.decision_id, reward));
                }
                (fed, made)
            }));
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            procs[0].child.kill().unwrap(); // SIGKILL mid-load
            procs[0].child.wait().unwrap();
        }
        for t in tasks {
            let (fed, made) = t.await.unwrap();
            acked.extend(fed);
            decided.extend(made);
        }
        if round == 0 {
            assert!(decided.len() < 400, "A was killed mid-load");
            procs[0] = spawn_toml(&dirs[0], &replica_toml(&mock, &dirs[0], &db.url));
            clients[0] = connect(&procs[0]).await;
        }
    }
    assert!(acked.len() > 100, "{} acknowledged", acked.len());

    let states = quiesce(&mut clients, &db, acked.len()).await;
    let store = shared_store(&db.url).await;
    for id in &decided {
        assert!(
            store.decision(id).await.unwrap().is_some(),
            "decision {id} lost"
        );
    }
    for (id, reward) in &acked {
        assert_eq!(
            store.feedback(id).await.unwrap(),
            [("judge".to_string(), *reward)],
            "feedback of {id}"
        );
    }
    let dim = states[0]["dim"].as_u64().unwrap() as usize;
    let rebuilt = switchyard::learn::rebuild(&store, dim, None).await.unwrap();
    let rebuilt = serde_json::to_value(&rebuilt).unwrap();
    // The same sums taken in another order (commit order on the replicas,
    // decision order in a rebuild): equal to rounding.
    for (i, s) in states.iter().enumerate() {
        assert_close(s, &rebuilt, 1e-9, &format!("replica {i}"));
    }
    store.close().await;
    drop(procs);
    db.drop_db().await;
}

/// PostgreSQL crashes and restarts while two replicas take Routes, pinned
/// Completes and feedback: every request is answered throughout, and once
/// it is back every acknowledged row lands from the replicas' journals.
#[tokio::test]
async fn replicas_answer_through_a_postgres_restart() {
    let pg = tokio::task::spawn_blocking(PrivatePg::start).await.unwrap();
    let db = PgDb::create_on(&pg.url()).await;
    let mock = Mock::start().await;
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(&replica_toml(&mock, &dir, &db.url)).unwrap();
        let server = Server::start(config).await;
        server.client().await;
        servers.push(server);
        dirs.push(dir);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..3 {
        let mut a = servers[0].client().await;
        let mut b = servers[1].client().await;
        let stop = std::sync::Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let (mut fed, mut completed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = route(&mut a, &format!("writer {w} request {i}"))
                    .await
                    .unwrap_or_else(|e| panic!("route {w}/{i}: {e:?}"));
                let reward = (i % 5) as f64 / 4.0;
                feedback(&mut b, &r.decision_id, reward)
                    .await
                    .unwrap_or_else(|e| panic!("feedback {w}/{i}: {e:?}"));
                fed.push((r.decision_id, reward));
                if i % 4 == 0 {
                    let reply = b
                        .complete(common::complete_req("hello", Some("cheap")))
                        .await
                        .unwrap_or_else(|e| panic!("complete {w}/{i}: {e:?}"))
                        .into_inner();
                    completed.push(reply.decision_id);
                }
                i += 1;
            }
            (fed, completed)
        }));
    }
    // The largest either replica's journal grows: > 0 once writes were
    // acknowledged from it while the database was away.
    let journals: Vec<_> = dirs
        .iter()
        .map(|d| d.path().join("switchyard.db-pg-journal"))
        .collect();
    let watching = std::sync::Arc::clone(&stop);
    let most = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&most);
    let journaled = tokio::spawn(async move {
        while !watching.load(std::sync::atomic::Ordering::Relaxed) {
            for j in &journals {
                seen.fetch_max(
                    std::fs::metadata(j).map_or(0, |m| m.len()),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen.load(std::sync::atomic::Ordering::Relaxed)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Down for at least 1.5 s and until some write was journaled (a write
    // may wait out the connect timeout before it is), at most 20 s.
    let pg = tokio::task::spawn_blocking(move || {
        pg.crash();
        let until = Instant::now() + Duration::from_secs(20);
        std::thread::sleep(Duration::from_millis(1500));
        while most.load(std::sync::atomic::Ordering::Relaxed) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        pg.up();
        pg
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut fed, mut completed) = (Vec::new(), Vec::new());
    for t in tasks {
        let (f, c) = t.await.unwrap();
        fed.extend(f);
        completed.extend(c);
    }
    assert!(fed.len() > 30, "{} answered", fed.len());
    assert!(
        journaled.await.unwrap() > 0,
        "writes were journaled in the outage"
    );
    // The journals drain into the database once it is back.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = db
            .scalar("SELECT COUNT(*) FROM feedback WHERE source = 'judge'")
            .await;
        if n as usize == fed.len() {
            break;
        }
        assert!(Instant::now() < until, "{n} of {} feedback rows", fed.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = shared_store(&db.url).await;
    for (id, reward) in &fed {
        assert_eq!(
            store.feedback(id).await.unwrap(),
            [("judge".to_string(), *reward)],
            "feedback of {id}"
        );
    }
    for id in &completed {
        let d = store.decision(id).await.unwrap();
        assert_eq!(d.map(|d| d.attempts), Some(1), "completion {id}");
    }
    store.close().await;
    for s in servers {
        s.stop().await;
    }
    drop(pg);
}

/// Feedback that reaches PostgreSQL before its decision (which another
/// replica may still hold in its journal after an outage) is kept, and lands
/// once the decision does. Feedback for an id that is not a recent decision
/// id, or for another tenant's decision, is refused at once.
#[tokio::test]
async fn feedback_that_arrives_before_its_decision_lands_after_it() {
    use crate::store_conformance::{decision, feedback};
    use switchyard::store::{FeedbackRow, StoreError};
    let db = PgDb::create().await;
    let (a, b) = (shared_store(&db.url).await, shared_store(&db.url).await);
    let id = uuid::Uuid::now_v7().to_string();
    b.record_feedback(feedback(&id, "judge", 0.75, 1))
        .await
        .expect("feedback for a decision made a moment ago is kept");
    a.record_decision(decision(&id, 2, &[1.0])).await.unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while b.feedback(&id).await.unwrap().is_empty() {
        assert!(Instant::now() < until, "the kept feedback never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.feedback(&id).await.unwrap(), [("judge".into(), 0.75)]);

    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let old = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, hour_ago, 0));
    let foreign = FeedbackRow {
        tenant: Some("other".into()),
        ..feedback(&id, "judge", 0.0, 3)
    };
    for f in [
        feedback("not-a-decision-id", "judge", 0.5, 4),
        feedback(&uuid::Uuid::new_v4().to_string(), "judge", 0.5, 5),
        feedback(&old.to_string(), "judge", 0.5, 6),
        foreign,
    ] {
        let id = f.decision_id.clone();
        let err = b.record_feedback(f).await.unwrap_err();
        assert!(
            matches!(err, StoreError::DecisionNotFound(_)),
            "{id}: {err}"
        );
    }
    assert_eq!(b.feedback(&id).await.unwrap(), [("judge".into(), 0.75)]);
    a.close().await;
    b.close().await;
    db.drop_db().await;
}

/// Keys live in the shared database: one key's rpm (through Redis) and
/// another's daily budget (through PostgreSQL's spend counters) hold across
/// three replicas with requests spread round-robin.
#[tokio::test]
async fn a_keys_limit_and_budget_hold_across_three_replicas() {
    let db = PgDb::create().await;
    let mock = Mock::start().await;
    let store = shared_store(&db.url).await;
    let settings = |rpm: Option<u32>, budget: Option<f64>| switchyard::auth::KeySettings {
        tenant: Some(format!("t{}", uuid::Uuid::new_v4().simple())),
        rpm,
        budget_day_usd: budget,
        ..Default::default()
    };
    let (limited_key, limited) = switchyard::auth::create(&store, settings(Some(5), None))
        .await
        .unwrap();
    let (budget_key, budgeted) = switchyard::auth::create(&store, settings(None, Some(1.0)))
        .await
        .unwrap();
    let mut replicas = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_toml(&replica_toml(&mock, &dir, &db.url)).unwrap();
        config.auth.mode = AuthMode::Keys;
        config.limits.backend = LimitsBackend::Redis;
        config.limits.redis_url = "redis://127.0.0.1:6379".into();
        let server = Server::start(config).await;
        server.client().await;
        replicas.push(server);
        dirs.push(dir);
    }
    let chat = |i: usize, key: &str, model: &str| {
        let url = format!("http://{}/v1/chat/completions", replicas[i % 3].http_addr);
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16});
        let req = reqwest::Client::new()
            .post(url)
            .bearer_auth(key)
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let mut ok = 0;
    for i in 0..12 {
        let (status, body) = chat(i, &limited, "strong").await;
        match status {
            200 => ok += 1,
            429 => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("per minute")
            ),
            _ => panic!("{status}: {body}"),
        }
    }
    assert_eq!(ok, 5, "one limit of 5 rpm over three replicas");

    // A budget of 3.5 calls (as the limited key's five cost): it takes three
    // calls in all, where three replicas counting apart would take nine.
    let spent = |id: String| {
        let db = &db;
        async move {
            let sql = format!("SELECT COALESCE(SUM(usd), 0) FROM key_spend WHERE id = '{id}'");
            db.scalar::<f64>(&sql).await
        }
    };
    let per_call = spent(limited_key.id.clone()).await / 5.0;
    assert!(per_call > 0.0);
    let mut key = budget_key.clone();
    key.budget_day_usd = Some(3.5 * per_call);
    assert!(store.update_key(&key).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await; // auth.reload_interval_ms
    let (mut answered, mut refused) = (0, 0);
    for i in 0..12 {
        let (status, body) = chat(i, &budgeted, "strong").await;
        match status {
            200 => answered += 1,
            429 => {
                assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
                refused += 1;
            }
            _ => panic!("{status}: {body}"),
        }
    }
    assert!(
        (1..=3).contains(&answered) && refused == 12 - answered,
        "{answered} answered, {refused} refused"
    );
    let total = spent(budget_key.id.clone()).await;
    assert!(
        total <= 3.5 * per_call * (1.0 + 1e-9),
        "spent {total} of {}",
        3.5 * per_call
    );
    for r in replicas {
        r.stop().await;
    }
    store.close().await;
    db.drop_db().await;
}
