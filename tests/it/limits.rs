//! Rate limits shared by replicas through the real Redis on 127.0.0.1:6379
//! (`limits.backend = "redis"`): three servers, each with its own log but
//! the same key, hold one rpm limit between them with requests spread
//! round-robin; with Redis unreachable a key fails open or closed as it
//! says. Redis must be running (CI's `.ci/run` starts it): these tests fail,
//! never skip, without it.

use crate::common;

use common::{Mock, Server, mock_config_toml};
use serde_json::{Value, json};
use switchyard::config::{Config, LimitsBackend};
use switchyard::store::{KeyRow, Store};

const REDIS: &str = "redis://127.0.0.1:6379";

async fn redis_is_up() {
    let client = redis::Client::open(REDIS).unwrap();
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!("Redis is not reachable at {REDIS} ({e}): start it (see .ci/run)")
        });
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// A server over `mock` with keys on, Redis-shared limits at `redis_url`,
/// and `keys` in its own fresh log.
struct Replica {
    server: Server,
    _dir: tempfile::TempDir,
}

async fn replica(mock: &Mock, redis_url: &str, keys: &[KeyRow]) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchyard.db");
    let mut config = Config::from_toml(&mock_config_toml(&mock.base_url(), &db)).unwrap();
    config.auth.mode = switchyard::config::AuthMode::Keys;
    config.limits.backend = LimitsBackend::Redis;
    config.limits.redis_url = redis_url.into();
    config.classifier.enabled = false;
    let (store, _w) = Store::open(&db, &Config::embedded().store).await.unwrap();
    for k in keys {
        store.insert_key(k).await.unwrap();
    }
    store.close().await;
    let server = Server::start(config).await;
    server.client().await;
    Replica { server, _dir: dir }
}

/// A key made once and copied into every replica's log (as one shared
/// key table would hold it); a fresh id, so Redis holds no count for it yet.
async fn shared_key(rpm: u32, on_unreachable: Option<&str>) -> (KeyRow, String) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _w) = Store::open(&dir.path().join("k.db"), &Config::embedded().store)
        .await
        .unwrap();
    let settings = switchyard::auth::KeySettings {
        tenant: Some("acme".into()),
        rpm: Some(rpm),
        on_unreachable: on_unreachable.map(str::to_owned),
        ..Default::default()
    };
    let made = switchyard::auth::create(&store, settings).await.unwrap();
    store.close().await;
    made
}

async fn chat(r: &Replica, key: &str) -> (u16, Value, Option<String>) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", r.server.http_addr))
        .bearer_auth(key)
        .json(&json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}))
        .send()
        .await
        .unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), resp.json().await.unwrap(), retry)
}

#[tokio::test]
async fn one_rpm_limit_holds_across_three_replicas() {
    redis_is_up().await;
    let mock = Mock::start().await;
    let (key, secret) = shared_key(5, None).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&mock, REDIS, std::slice::from_ref(&key)).await);
    }
    for i in 0..5 {
        let (status, body, _) = chat(&replicas[i % 3], &secret).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    // The sixth, on whichever replica, is over the one shared limit.
    for r in &replicas {
        let (status, body, retry) = chat(r, &secret).await;
        assert_eq!(status, 429, "{body}");
        assert!(retry.is_some(), "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("5 requests per minute"), "{msg}");
    }
}

#[tokio::test]
async fn an_unreachable_limiter_fails_open_or_closed_per_key() {
    let mock = Mock::start().await;
    let (open, open_secret) = shared_key(5, None).await;
    let (closed, closed_secret) = shared_key(5, Some("closed")).await;
    // Nothing listens on port 1.
    let r = replica(&mock, "redis://127.0.0.1:1", &[open, closed]).await;
    let (status, body, _) = chat(&r, &open_secret).await;
    assert_eq!(status, 200, "fails open by default: {body}");
    // Within the outage (Redis is left alone a second after a failure),
    // every request meets its key's choice at once.
    for _ in 0..3 {
        let (status, body, _) = chat(&r, &closed_secret).await;
        assert_eq!(status, 503, "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("fail closed"), "{msg}");
        let (status, body, _) = chat(&r, &open_secret).await;
        assert_eq!(status, 200, "{body}");
    }
}
