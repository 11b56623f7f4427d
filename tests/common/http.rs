//! Helpers for tests of the OpenAI-compatible HTTP front: URLs on the test
//! server, JSON posts, a minimal chat body, and the OpenAI error-body check.

use serde_json::{Value, json};

use super::Env;

pub fn url(env: &Env, path: &str) -> String {
    format!("http://{}{path}", env.server.http_addr)
}

pub async fn post(env: &Env, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(env, path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 32})
}

/// Asserts an OpenAI error body with this status and code; returns it.
pub async fn error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(v["error"]["type"].is_string());
    v
}
