//! API keys through the real binary: keys made by `switchyard keys`, a
//! server with `auth.mode = "keys"` refusing calls without a valid key on
//! both HTTP fronts and gRPC, the tenant taken from the key (never from a
//! header), a key limited to some models, feedback only for the key's own
//! tenant, revocation by the CLI and by the admin API taking effect without
//! a restart, and the refusal to serve an open port without keys.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mock, free_port};
use serde_json::{Value, json};
use switchyard::pb;
use switchyard::pb::router_client::RouterClient;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
pub(crate) const ADMIN: &str = "admin-secret-for-tests";

pub(crate) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `switchyard keys ARGS --database DB`: its standard output.
fn keys(db: &std::path::Path, args: &[&str]) -> String {
    let args: Vec<&str> = std::iter::once("keys")
        .chain(args.iter().copied())
        .collect();
    common::cli(db, &args)
}

pub(crate) struct Served {
    _proc: Proc,
    pub(crate) http: String,
    grpc: String,
}

fn serve(mock: &Mock, dir: &tempfile::TempDir) -> Served {
    serve_with(mock, dir, "mode = \"keys\"\n")
}

/// The binary over the mock's catalog, with `auth` lines added to its
/// `[auth]` table and the admin key [`ADMIN`] in its environment.
pub(crate) fn serve_with(mock: &Mock, dir: &tempfile::TempDir, auth: &str) -> Served {
    let db = dir.path().join("switchyard.db");
    let cfg = dir.path().join("switchyard.toml");
    let toml = common::mock_config_toml(&mock.base_url(), &db)
        + "\n[auth]\nreload_interval_ms = 100\nadmin_key_env = \"SY_TEST_ADMIN_KEY\"\n"
        + auth;
    std::fs::write(&cfg, toml).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{grpc}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .env("SY_TEST_ADMIN_KEY", ADMIN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Served {
        _proc: Proc(child),
        http: format!("http://127.0.0.1:{http}"),
        grpc: format!("http://127.0.0.1:{grpc}"),
    }
}

pub(crate) async fn ready(s: &Served) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(format!("{}/readyz", s.http)).await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < until, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(s: &Served, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", s.http))
        .header("x-switchyard-tenant", "someone-else")
        .json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
}

fn with_key<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

/// Waits until `key`'s chat requests get `status` (the server re-reads keys
/// every 100 ms).
async fn until_status(s: &Served, key: &str, status: u16) -> Value {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (got, body) = post(s, "/v1/chat/completions", Some(key), chat("cheap")).await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < until, "still {got}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn keys_gate_both_fronts_and_carry_the_tenant() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchyard.db");
    let acme = keys(
        &db,
        &[
            "create", "--tenant", "acme", "--name", "ci", "--tier", "pro",
        ],
    );
    let acme = acme.trim();
    let globex = keys(&db, &["create", "--tenant", "globex", "--models", "cheap"]);
    let globex = globex.trim();
    assert!(acme.starts_with("sy-") && globex.starts_with("sy-"));
    let listed = keys(&db, &["list"]);
    assert!(
        listed.contains("acme") && listed.contains("globex"),
        "{listed}"
    );
    assert!(!listed.contains(acme), "a secret was listed");

    let s = serve(&mock, &dir);
    ready(&s).await;

    // No key, a wrong key: 401 in each front's own shape.
    let (status, body) = post(&s, "/v1/chat/completions", None, chat("cheap")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{body}"
    );
    let (status, body) = post(&s, "/v1/chat/completions", Some("sy-nope"), chat("cheap")).await;
    assert_eq!(status, 401, "{body}");
    let messages =
        json!({"model": "cheap", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = post(&s, "/v1/messages", None, messages.clone()).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("authentication_error")),
        "{body}"
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", s.http))
        .header("x-api-key", acme)
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "x-api-key is a key too");

    // The tenant is the key's, whatever the header said.
    let (status, body) = post(&s, "/v1/chat/completions", Some(acme), chat("cheap")).await;
    assert_eq!(status, 200, "{body}");
    let decision = body["switchyard"]["decision_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = switchyard::store::Store::open(&db, &switchyard::config::Config::embedded().store)
        .await
        .unwrap()
        .0;
    assert_eq!(
        common::logged_decision(&store, &decision).await.tenant,
        "acme"
    );

    // A key limited to some models: others are refused, routing stays within.
    let (status, body) = post(&s, "/v1/chat/completions", Some(globex), chat("mid")).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (403, Some("permission_error")),
        "{body}"
    );
    let (status, body) = post(
        &s,
        "/v1/chat/completions",
        Some(globex),
        chat("switchyard/auto"),
    )
    .await;
    assert_eq!(
        (status, body["model"].as_str()),
        (200, Some("cheap")),
        "{body}"
    );

    // gRPC: the same keys in `authorization` metadata.
    let mut c = RouterClient::connect(s.grpc.clone()).await.unwrap();
    let e = c.route(common::route_req("hi")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let r = c
        .route(with_key(common::route_req("hi"), acme))
        .await
        .unwrap()
        .into_inner();
    // Feedback only for the key's own tenant: another's decision is not found.
    let feedback = |key: &str, id: &str| {
        with_key(
            pb::FeedbackRequest {
                decision_id: id.to_owned(),
                reward: 1.0,
                source: "test".into(),
            },
            key,
        )
    };
    let e = c
        .feedback(feedback(globex, &r.decision_id))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    c.feedback(feedback(acme, &r.decision_id)).await.unwrap();
    let (status, _) = post(
        &s,
        "/v1/feedback",
        Some(globex),
        json!({"decision_id": decision, "reward": 0.5}),
    )
    .await;
    assert_eq!(status, 404);

    // Revoked by the CLI beside the running server: refused within a reload.
    let id = listed
        .lines()
        .find(|l| l.contains("acme"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    keys(&db, &["revoke", &id]);
    let body = until_status(&s, acme, 401).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    assert_eq!(
        c.route(with_key(common::route_req("hi"), acme))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn the_admin_api_manages_keys_with_the_admin_key_only() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = serve(&mock, &dir);
    ready(&s).await;
    let http = reqwest::Client::new();
    let keys_url = format!("{}/admin/v1/keys", s.http);

    let resp = http.get(&keys_url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(&keys_url)
        .bearer_auth("not-the-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = http
        .post(&keys_url)
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "initech", "tier": "free", "rpm": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (created["tenant"].as_str(), created["rpm"].as_u64()),
        (Some("initech"), Some(60))
    );
    assert!(created.get("hash").is_none(), "{created}");
    // In force at once: no reload interval to wait out.
    let (status, body) = post(&s, "/v1/chat/completions", Some(&secret), chat("cheap")).await;
    assert_eq!(status, 200, "{body}");

    let listed: Value = http
        .get(&keys_url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&secret), "a secret was listed");

    let updated: Value = http
        .patch(format!("{keys_url}/{id}"))
        .bearer_auth(ADMIN)
        .json(&json!({"tier": "pro"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (updated["tier"].as_str(), updated["rpm"].as_u64()),
        (Some("pro"), Some(60))
    );

    let resp = http
        .delete(format!("{keys_url}/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _) = post(&s, "/v1/chat/completions", Some(&secret), chat("cheap")).await;
    assert_eq!(status, 401, "a revoked key still served");
    let resp = http
        .delete(format!("{keys_url}/key_missing"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn an_open_port_without_keys_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &format!("0.0.0.0:{}", free_port())])
        .args(["--http-listen", ""])
        .env("SWITCHYARD__SERVER__DATABASE", dir.path().join("open.db"))
        .env("SWITCHYARD__CLASSIFIER__ENABLED", "false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without API keys") && stderr.contains("auth.mode"),
        "{stderr}"
    );
}

#[tokio::test]
async fn rate_limits_are_per_key_with_retry_after() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchyard.db");
    let limited = keys(&db, &["create", "--tenant", "a", "--rpm", "3"]);
    let limited = limited.trim();
    let free = keys(&db, &["create", "--tenant", "b"]);
    let free = free.trim();
    let tokens = keys(&db, &["create", "--tenant", "c", "--tpm", "120"]);
    let tokens = tokens.trim();
    let s = serve(&mock, &dir);
    ready(&s).await;

    for _ in 0..3 {
        let (status, body) = post(&s, "/v1/chat/completions", Some(limited), chat("cheap")).await;
        assert_eq!(status, 200, "{body}");
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.http))
        .bearer_auth(limited)
        .json(&chat("cheap"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=21).contains(&retry), "{retry}");
    assert_eq!(h["x-ratelimit-limit-requests"], "3");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    // Another key is served all the while.
    let (status, _) = post(&s, "/v1/chat/completions", Some(free), chat("cheap")).await;
    assert_eq!(status, 200);
    // gRPC: RESOURCE_EXHAUSTED with when to retry.
    let mut c = RouterClient::connect(s.grpc.clone()).await.unwrap();
    let e = c
        .route(with_key(common::route_req("hi"), limited))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.metadata().get("retry-after").is_some(), "{e:?}");

    // Tokens: charged the prompt up front, settled with the answer's usage;
    // a prompt over the whole minute's tokens is refused outright.
    let long = "many words here ".repeat(100);
    let body = json!({"model": "cheap", "max_tokens": 8,
                      "messages": [{"role": "user", "content": long}]});
    let (status, body) = post(&s, "/v1/chat/completions", Some(tokens), body).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens per minute"),
        "{body}"
    );
    let mut refused = None;
    for _ in 0..20 {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", s.http))
            .bearer_auth(tokens)
            .json(&json!({"model": "cheap", "max_tokens": 8,
                          "messages": [{"role": "user", "content": "one two three four ".repeat(10)}]}))
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            refused = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let resp = refused.expect("the token limit never refused");
    assert_eq!(resp.headers()["x-ratelimit-limit-tokens"], "120");
}

/// A day's budget stops its key once spent, naming the budget; the spend is
/// rebuilt from the log after `kill -9`, so the key stays stopped; and
/// `switchyard spend` reports what the answers cost.
#[tokio::test]
async fn a_budget_stops_its_key_and_survives_kill_9() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchyard.db");
    let key = keys(
        &db,
        &["create", "--tenant", "acme", "--budget-day-usd", "0.001"],
    );
    let key = key.trim();
    let other = keys(&db, &["create", "--tenant", "acme"]);
    let other = other.trim();
    let s = serve(&mock, &dir);
    ready(&s).await;
    // Route spends nothing, and shows the cost weight the key routes with.
    let weight = |s: &Served| {
        let (grpc, key) = (s.grpc.clone(), key.to_owned());
        async move {
            let mut c = RouterClient::connect(grpc).await.unwrap();
            let r = c
                .route(with_key(common::route_req("hi"), &key))
                .await
                .unwrap();
            r.into_inner().cost_weight
        }
    };
    assert_eq!(
        weight(&s).await,
        10.0,
        "nothing spent: the configured weight"
    );

    let mut spent = 0.0;
    let refusal = loop {
        let (status, body) = post(&s, "/v1/chat/completions", Some(key), chat("strong")).await;
        if status != 200 {
            break (status, body);
        }
        spent += body["switchyard"]["cost_usd"].as_f64().unwrap();
        assert!(spent < 0.002, "the budget never stopped the key");
    };
    assert!(spent > 0.0 && spent <= 0.001, "{spent}");
    // Near its budget the key routes with a heavier cost weight:
    // 10 / (1 - spent share).
    let steered = weight(&s).await;
    let want = 10.0 / (1.0 - (spent / 0.001).min(0.95));
    assert!((steered - want).abs() < 1e-6 * want, "{steered} vs {want}");
    let (status, body) = refusal;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget_day_usd"),
        "{body}"
    );
    // Another key of the same tenant has its own budget (none).
    let (status, _) = post(&s, "/v1/chat/completions", Some(other), chat("strong")).await;
    assert_eq!(status, 200);

    drop(s); // SIGKILL
    let s = serve(&mock, &dir);
    ready(&s).await;
    let (status, body) = post(&s, "/v1/chat/completions", Some(key), chat("strong")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("insufficient_quota")),
        "{body}"
    );
    assert!(
        (weight(&s).await - steered).abs() < 1e-6 * steered,
        "the steer was lost on restart"
    );

    let report = Command::new(BIN)
        .args(["spend", "--database"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(report.status.success());
    let report = String::from_utf8(report.stdout).unwrap();
    let id = keys(&db, &["list"])
        .lines()
        .find(|l| l.contains("0.001"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let total: f64 = report
        .lines()
        .find(|l| l.starts_with("total key") && l.contains(&id))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert!((total - spent).abs() < 1e-6, "{total} vs {spent}\n{report}");
    let admin: Value = reqwest::Client::new()
        .get(format!("{}/admin/v1/spend", s.http))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_key: f64 = admin["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key_id"] == id.as_str())
        .map(|r| r["usd"].as_f64().unwrap())
        .sum();
    assert!((by_key - spent).abs() < 1e-9, "{admin}");
}
