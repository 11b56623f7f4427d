//! The OpenAI-compatible HTTP front against the real server and the real mock
//! provider on loopback, through a real HTTP client: answers, streams, every
//! error body, feedback idempotency (`tests/http_ops.rs`: models, readiness,
//! metrics, limits).

use crate::common;

use common::Env;
use common::http::{chat, error, post, url};
use serde_json::{Value, json};

#[tokio::test]
async fn pinned_and_auto_answers_carry_the_decision() {
    let env = Env::start().await;
    let resp = post(&env, "/v1/chat/completions", chat("mid", "Say hello.")).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-switchyard-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mid");
    assert_eq!(v["id"], format!("chatcmpl-{id}"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "[mid-1] Say hello.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    let (model, _, propensity) = env.server_store_decision(&id).await;
    assert_eq!((model.as_str(), propensity), ("mid", 1.0));

    // Auto with a huge cost weight from a header picks the cheapest healthy
    // candidate; the tenant header reaches the log.
    let resp = reqwest::Client::new()
        .post(url(&env, "/v1/chat/completions"))
        .header("x-switchyard-cost-weight", "1000000")
        .header("x-switchyard-tenant", "hdr-tenant")
        .json(&json!({
            "model": "switchyard/auto",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "switchyard": {"candidates": ["cheap", "strong"]},
            "top_p": 0.9, "seed": 3, "user": "u-1", "stream_options": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-switchyard-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "cheap");
    assert_eq!(v["switchyard"]["decision_id"], id);
    let (model, tenant, _) = env.server_store_decision(&id).await;
    assert_eq!((model.as_str(), tenant.as_str()), ("cheap", "hdr-tenant"));
}

/// Parses an SSE body into its `data:` payloads.
pub(crate) fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn streams_follow_the_openai_wire_format() {
    let env = Env::start().await;
    let mut body = chat("strong", "one two three four");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&env, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let id = resp.headers()["x-switchyard-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = sse_data(&resp.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"
        && c["id"] == format!("chatcmpl-{id}")
        && c["model"] == "strong"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "[strong-1] one two three four");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // Without include_usage there is no usage chunk.
    let mut body = chat("strong", "hi");
    body["stream"] = json!(true);
    let events = sse_data(
        &post(&env, "/v1/chat/completions", body)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(!events.iter().any(|e| e.contains("\"usage\"")));

    // A stream cut by the provider after it started ends with an error event, never [DONE].
    let mut body = chat("cut", "a b c d e f g h");
    body["stream"] = json!(true);
    let events = sse_data(
        &post(&env, "/v1/chat/completions", body)
            .await
            .text()
            .await
            .unwrap(),
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_unavailable");
    assert!(!events.iter().any(|e| e == "[DONE]"));
}

#[tokio::test]
async fn every_bad_input_gets_an_openai_error_body() {
    let env = Env::start_with(|c| c.server.max_request_bytes = 4096).await;
    let raw = |body: &'static str| {
        reqwest::Client::new()
            .post(url(&env, "/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    error(raw("{not json").await.unwrap(), 400, "invalid_json").await;
    error(
        raw(r#"{"model": "mid"}"#).await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    let big =
        json!({"model": "mid", "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    error(
        post(&env, "/v1/chat/completions", big).await,
        413,
        "request_too_large",
    )
    .await;
    let v = error(
        post(&env, "/v1/chat/completions", chat("nope", "hi")).await,
        404,
        "model_not_found",
    )
    .await;
    assert_eq!(v["error"]["param"], "model");
    let mut n2 = chat("mid", "hi");
    n2["n"] = json!(2);
    let v = error(
        post(&env, "/v1/chat/completions", n2).await,
        400,
        "unsupported_parameter",
    )
    .await;
    assert_eq!(v["error"]["param"], "n");
    let empty = json!({"model": "mid", "messages": []});
    error(
        post(&env, "/v1/chat/completions", empty).await,
        400,
        "invalid_value",
    )
    .await;
    let mut hot = chat("mid", "hi");
    hot["temperature"] = json!(7);
    let v = error(
        post(&env, "/v1/chat/completions", hot).await,
        400,
        "invalid_value",
    )
    .await;
    assert_eq!(v["error"]["param"], "temperature");
    let image = json!({"model": "mid", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]});
    let v = error(
        post(&env, "/v1/chat/completions", image).await,
        400,
        "invalid_value",
    )
    .await;
    assert_eq!(v["error"]["param"], "messages[0].content[0].image_url.url");
    let audio = json!({"model": "mid", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]});
    let v = error(
        post(&env, "/v1/chat/completions", audio).await,
        400,
        "unsupported_parameter",
    )
    .await;
    assert_eq!(v["error"]["param"], "messages[0].content[0].type");
    // The provider failing (503) and a pinned model whose key is unset.
    error(
        post(&env, "/v1/chat/completions", chat("broken", "hi")).await,
        503,
        "upstream_unavailable",
    )
    .await;
    error(
        post(&env, "/v1/chat/completions", chat("locked", "hi")).await,
        422,
        "no_eligible_model",
    )
    .await;
    let resp = reqwest::get(url(&env, "/v1/nothing")).await.unwrap();
    error(resp, 404, "unknown_url").await;
    let resp = reqwest::get(url(&env, "/v1/chat/completions"))
        .await
        .unwrap();
    error(resp, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn feedback_over_http_is_idempotent_per_source() {
    let env = Env::start().await;
    let resp = post(&env, "/v1/chat/completions", chat("cheap", "hi")).await;
    let id = resp.headers()["x-switchyard-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let fb = |reward: Value| json!({"decision_id": id, "reward": reward, "source": "thumbs"});
    let v: Value = post(&env, "/v1/feedback", fb(json!(0.8)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["replaced"], false);
    let v: Value = post(&env, "/v1/feedback", fb(json!(0.3)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["replaced"], true);
    assert_eq!(
        env.store().await.feedback(&id).await.unwrap(),
        vec![("thumbs".to_string(), 0.3)]
    );
    error(
        post(&env, "/v1/feedback", fb(json!(1.5))).await,
        400,
        "invalid_value",
    )
    .await;
    error(
        post(&env, "/v1/feedback", fb(json!("good"))).await,
        400,
        "invalid_json",
    )
    .await;
    let unknown = json!({"decision_id": uuid::Uuid::now_v7().to_string(), "reward": 0.5});
    error(
        post(&env, "/v1/feedback", unknown).await,
        404,
        "decision_not_found",
    )
    .await;
    let bad = json!({"decision_id": "abc", "reward": 0.5});
    error(post(&env, "/v1/feedback", bad).await, 400, "invalid_value").await;
}
