//! The exact response cache over the real server and the mock provider: a
//! repeated request is answered without a provider call, plain or streamed,
//! on both HTTP fronts and over gRPC; what tells requests apart (tenant,
//! model, tools, response format, settings) keeps their answers apart;
//! bypass and expiry work; hits are logged with no attempt and no cost.

use std::time::Duration;

use crate::common;
use crate::http::sse_data;

use common::http::{chat, post, url};
use common::{Env, Mock, Server, complete_req};
use serde_json::{Value, json};
use switchyard::config::Capability;

const REDIS: &str = "redis://127.0.0.1:6379";

async fn cached_env(ttl: Duration) -> Env {
    Env::start_with(|c| {
        c.cache.enabled = true;
        c.cache.ttl = ttl;
        for m in c.models.iter_mut().filter(|m| m.name == "mid") {
            m.capabilities = vec![
                Capability::Tools,
                Capability::JsonSchema,
                Capability::Vision,
            ];
        }
    })
    .await
}

/// Sends `body` with `headers`; returns the cache header, the decision id
/// and the body.
async fn send(
    env: &Env,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (String, String, reqwest::Response) {
    send_to(&env.server, path, body, headers).await
}

async fn send_to(
    server: &Server,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (String, String, reqwest::Response) {
    let address = format!("http://{}{path}", server.http_addr);
    let mut req = reqwest::Client::new().post(address).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path} {body}");
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (h("x-switchyard-cache"), h("x-switchyard-decision-id"), resp)
}

fn text_of(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A streamed answer's text, from OpenAI chunks.
fn streamed_text(body: &str) -> String {
    let events = sse_data(body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_repeated_request_is_answered_without_a_provider_call_plain_and_streamed() {
    let env = cached_env(Duration::from_secs(600)).await;
    let body = chat("mid", "Say hello.");
    let (cache, first_id, resp) = send(&env, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(cache, "miss");
    let first: Value = resp.json().await.unwrap();
    assert_eq!(text_of(&first), "[mid-1] Say hello.");
    assert_eq!(env.mock.requests("mid-1").await, 1);

    let (cache, id, resp) = send(&env, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(cache, "hit");
    assert_ne!(id, first_id, "a hit is a decision of its own");
    let hit: Value = resp.json().await.unwrap();
    assert_eq!(text_of(&hit), text_of(&first));
    assert_eq!(hit["usage"], first["usage"]);
    assert_eq!(hit["switchyard"]["cache"], "hit");
    assert_eq!(hit["switchyard"]["cost_usd"], 0.0);
    assert_eq!(hit["switchyard"]["attempts"], json!([]));
    assert_eq!(env.mock.requests("mid-1").await, 1, "no provider call");
    let d = env.logged_decision(&id).await;
    assert_eq!(
        (
            d.attempts,
            d.policy_version.as_str(),
            d.served_model.as_deref()
        ),
        (0, switchyard::engine::CACHE_POLICY, Some("mid"))
    );
    assert_eq!(d.features, None, "a hit carries no context to learn from");

    // The same request streamed is replayed as a stream, text byte for byte.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (cache, _, resp) = send(&env, "/v1/chat/completions", &streamed, &[]).await;
    assert_eq!(cache, "hit");
    assert_eq!(streamed_text(&resp.text().await.unwrap()), text_of(&first));
    assert_eq!(env.mock.requests("mid-1").await, 1);

    // A streamed miss is kept whole, and served again streamed and plain.
    let mut streamed = chat("mid", "one two three four");
    streamed["stream"] = json!(true);
    let (cache, _, resp) = send(&env, "/v1/chat/completions", &streamed, &[]).await;
    assert_eq!(cache, "miss");
    let original = streamed_text(&resp.text().await.unwrap());
    assert_eq!(original, "[mid-1] one two three four");
    let (cache, _, resp) = send(&env, "/v1/chat/completions", &streamed, &[]).await;
    assert_eq!(cache, "hit");
    assert_eq!(streamed_text(&resp.text().await.unwrap()), original);
    let (cache, _, resp) = send(
        &env,
        "/v1/chat/completions",
        &chat("mid", "one two three four"),
        &[],
    )
    .await;
    assert_eq!(cache, "hit");
    assert_eq!(text_of(&resp.json().await.unwrap()), original);
    assert_eq!(env.mock.requests("mid-1").await, 2);

    // The same request through the Anthropic front is the same request.
    let msg = json!({"model": "mid", "max_tokens": 32,
        "messages": [{"role": "user", "content": "Say hello."}]});
    let (cache, _, resp) = send(&env, "/v1/messages", &msg, &[]).await;
    assert_eq!(cache, "hit");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "[mid-1] Say hello.");
    let mut msg = msg;
    msg["max_tokens"] = json!(33);
    let (cache, _, _) = send(&env, "/v1/messages", &msg, &[]).await;
    assert_eq!(cache, "miss");

    let metrics = reqwest::get(url(&env, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "switchyard_cache_requests_total{outcome=\"hit\"} 5",
        "switchyard_cache_requests_total{outcome=\"miss\"} 3",
        "switchyard_cache_entries 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let saved: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_cache_saved_usd_total{model=\"mid\"} "))
        .expect("saved spend is counted")
        .parse()
        .unwrap();
    assert!(saved > 0.0);

    // The console's overview counts the same hits, and what they saved from
    // the first answers' attempts in the log.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let o: Value = reqwest::get(url(&env, "/admin/v1/overview"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let t = &o["totals"];
        if t["requests"] == 8 {
            assert_eq!(t["cache_hits"], 5, "{o}");
            let logged = t["cache_saved_usd"].as_f64().unwrap();
            assert!((logged - saved).abs() < 1e-12, "{logged} vs {saved}");
            let mid = o["models"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["model"] == "mid");
            assert_eq!(mid.unwrap()["cached"], 5);
            break;
        }
        assert!(std::time::Instant::now() < until, "{o}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn answers_stay_apart_by_tenant_model_tools_format_and_settings() {
    let env = cached_env(Duration::from_secs(600)).await;
    let body = chat("mid", "What is 2+2?");
    let (cache, _, _) = send(&env, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(cache, "miss");
    let (cache, _, _) = send(&env, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(cache, "hit");

    let tools = json!([{"type": "function", "function": {"name": "add",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}]);
    let mut other = Vec::new();
    other.push(chat("strong", "What is 2+2?"));
    let mut b = body.clone();
    b["tools"] = tools.clone();
    other.push(b);
    let mut b = body.clone();
    b["tools"] = tools;
    b["tools"][0]["function"]["name"] = json!("plus");
    other.push(b);
    let mut b = body.clone();
    b["response_format"] = json!({"type": "json_object"});
    other.push(b);
    let mut b = body.clone();
    b["temperature"] = json!(0.5);
    other.push(b);
    let mut b = body.clone();
    b["max_tokens"] = json!(31);
    other.push(b);
    let mut b = body.clone();
    b["messages"][0]["content"] = json!("What is 2+3?");
    other.push(b);
    // Images: the same text with an image, then with another image.
    let picture = |data: &str| {
        let mut b = body.clone();
        b["messages"][0]["content"] = json!([
            {"type": "text", "text": "What is 2+2?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
        ]);
        b
    };
    other.push(picture("iVBORw0KGgo="));
    other.push(picture("R0lGODlhAQ=="));
    for b in &other {
        let (cache, _, resp) = send(&env, "/v1/chat/completions", b, &[]).await;
        assert_eq!(cache, "miss", "{b}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v["switchyard"]["attempts"].as_array().unwrap().len(),
            1,
            "{b}"
        );
    }
    // Another tenant asking the same is a miss; then a hit of its own.
    let tenant = [("x-switchyard-tenant", "other-tenant")];
    let (cache, _, _) = send(&env, "/v1/chat/completions", &body, &tenant).await;
    assert_eq!(cache, "miss");
    let (cache, _, _) = send(&env, "/v1/chat/completions", &body, &tenant).await;
    assert_eq!(cache, "hit");

    // Bypass: neither served from the cache nor counted as a hit.
    let before = env.mock.requests("mid-1").await;
    for h in [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0, no-store"),
        ("x-switchyard-cache", "bypass"),
    ] {
        let (cache, _, resp) = send(&env, "/v1/chat/completions", &body, &[h]).await;
        assert_eq!(cache, "bypass", "{h:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["switchyard"]["attempts"].as_array().unwrap().len(), 1);
    }
    assert_eq!(env.mock.requests("mid-1").await, before + 3);
}

#[tokio::test]
async fn an_answer_expires_after_its_ttl() {
    let env = cached_env(Duration::from_millis(400)).await;
    let body = chat("mid", "Say hello.");
    let (cache, _, _) = send(&env, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(cache, "miss");
    let (cache, _, _) = send(&env, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(cache, "hit");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (cache, _, resp) = send(&env, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(cache, "miss");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["switchyard"]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(env.mock.requests("mid-1").await, 2);
}

#[tokio::test]
async fn grpc_calls_say_what_the_cache_did() {
    let env = cached_env(Duration::from_secs(600)).await;
    let mut c = env.server.client().await;
    let first = c
        .complete(complete_req("Say hello.", Some("mid")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.cache, "miss");
    let hit = c
        .complete(complete_req("Say hello.", Some("mid")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (hit.cache.as_str(), hit.content.as_str()),
        ("hit", first.content.as_str())
    );
    assert_eq!((hit.cost_usd, hit.attempts.len()), (0.0, 0));
    let mut chunks = c
        .complete_stream(complete_req("Say hello.", Some("mid")))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let start = chunks.message().await.unwrap().unwrap();
    assert_eq!(start.cache, "hit");
    while let Some(ch) = chunks.message().await.unwrap() {
        text.push_str(&ch.delta);
    }
    assert_eq!(text, first.content);
    let mut req = tonic::Request::new(complete_req("Say hello.", Some("mid")));
    req.metadata_mut()
        .insert("cache-control", "no-cache".parse().unwrap());
    let bypassed = c.complete(req).await.unwrap().into_inner();
    assert_eq!(
        (bypassed.cache.as_str(), bypassed.attempts.len()),
        ("bypass", 1)
    );
    assert_eq!(env.mock.requests("mid-1").await, 2);
}

#[tokio::test]
async fn without_a_cache_nothing_is_said_and_every_request_is_called() {
    let env = Env::start().await;
    for _ in 0..2 {
        let resp = post(&env, "/v1/chat/completions", chat("mid", "Say hello.")).await;
        assert!(resp.headers().get("x-switchyard-cache").is_none());
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["switchyard"].get("cache"), None);
    }
    assert_eq!(env.mock.requests("mid-1").await, 2);
}

/// With `cache.redis_url`, one replica's answer is a hit on another, with no
/// provider call; with Redis unreachable each replica still caches its own.
#[tokio::test]
async fn replicas_share_answers_through_redis() {
    let mock = Mock::start().await;
    let replica = |redis: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Env::config_for(&mock, &dir);
        config.cache.enabled = true;
        config.cache.redis_url = Some(redis.into());
        (config, dir)
    };
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for redis in [REDIS, REDIS, "redis://127.0.0.1:1"] {
        let (config, dir) = replica(redis);
        servers.push(Server::start(config).await);
        dirs.push(dir);
    }
    // A tenant of this run only: Redis outlives the test.
    let tenant = format!("cache-{}", uuid::Uuid::new_v4());
    let headers = [("x-switchyard-tenant", tenant.as_str())];
    let body = chat("mid", "Say hello.");
    let (cache, _, _) = send_to(&servers[0], "/v1/chat/completions", &body, &headers).await;
    assert_eq!(cache, "miss");
    // The answer reaches Redis off the request path.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (cache, _, resp) = send_to(&servers[1], "/v1/chat/completions", &body, &headers).await;
        if cache == "hit" {
            let v: Value = resp.json().await.unwrap();
            assert_eq!(text_of(&v), "[mid-1] Say hello.");
            break;
        }
        assert!(std::time::Instant::now() < until, "never shared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let called = mock.requests("mid-1").await;
    // Without Redis: a miss, then its own hit; requests are answered throughout.
    let (cache, _, _) = send_to(&servers[2], "/v1/chat/completions", &body, &headers).await;
    assert_eq!(cache, "miss");
    let (cache, _, _) = send_to(&servers[2], "/v1/chat/completions", &body, &headers).await;
    assert_eq!(cache, "hit");
    assert_eq!(mock.requests("mid-1").await, called + 1);
    for s in servers {
        s.stop().await;
    }
}

/// The semantic cache: a question asked again in other words takes the
/// first answer, within its scope (tenant, model, instructions, settings);
/// another question, another scope, a tenant that did not opt in, or a
/// sampling request does not.
#[tokio::test]
async fn a_question_asked_in_other_words_takes_the_cached_answer() {
    let env = Env::start_with(|c| {
        c.cache.enabled = true;
        c.cache.semantic_threshold = Some(0.8);
        c.cache.semantic_tenants = vec!["faq".into()];
    })
    .await;
    let ask = |text: &str, temperature: f64| {
        json!({"model": "mid", "max_tokens": 32, "temperature": temperature,
            "messages": [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": text}]})
    };
    let faq = [("x-switchyard-tenant", "faq")];
    let first = ask("What is the capital of France?", 0.0);
    let (cache, _, _) = send(&env, "/v1/chat/completions", &first, &faq).await;
    assert_eq!(cache, "miss");
    let (cache, id, resp) = send(
        &env,
        "/v1/chat/completions",
        &ask("what's the capital city of France", 0.0),
        &faq,
    )
    .await;
    assert_eq!(cache, "hit");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(text_of(&v), "[mid-1] What is the capital of France?");
    assert_eq!(env.logged_decision(&id).await.attempts, 0);
    assert_eq!(env.mock.requests("mid-1").await, 1);

    // Not the same question; not the same instructions; another tenant; sampling.
    let mut other_instructions = ask("what's the capital city of France", 0.0);
    other_instructions["messages"][0]["content"] = json!("Answer in French.");
    for (body, headers) in [
        (ask("How do I bake sourdough bread?", 0.0), &faq[..]),
        (other_instructions, &faq[..]),
        (
            ask("what's the capital city of France", 0.0),
            &[("x-switchyard-tenant", "other")][..],
        ),
        (ask("what's the capital city of France", 0.7), &faq[..]),
    ] {
        let (cache, _, resp) = send(&env, "/v1/chat/completions", &body, headers).await;
        assert_eq!(cache, "miss", "{body} {headers:?}");
        let v: Value = resp.json().await.unwrap();
        assert_ne!(
            text_of(&v),
            "[mid-1] What is the capital of France?",
            "{body}"
        );
    }
}
