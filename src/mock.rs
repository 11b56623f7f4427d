//! `switchyard mock-provider`: a real OpenAI-compatible HTTP server for tests
//! and demos, so the service can be tried with no API key.
//!
//! Answers are deterministic: `[<model>] <echo of the last user message>`.
//! Behaviour is set per server (flags: base latency, random failure rate) and
//! per request by directives appended to the model id after `+`, so one server
//! can play a healthy model and a broken one at once:
//!
//! | directive      | effect                                              |
//! |----------------|-----------------------------------------------------|
//! | `+fail<code>`  | answer HTTP `<code>` with an OpenAI error body      |
//! | `+hang`        | never answer (until the client gives up)            |
//! | `+slow<ms>`    | wait `<ms>` before answering                        |
//! | `+nousage`     | omit `usage`                                        |
//! | `+badjson`     | a 200 with a body that is not JSON                  |
//! | `+cutstream`   | streams stop after two deltas, without `[DONE]`     |
//!
//! `GET /mock/stats` returns the requests seen per model, for tests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::tokens::{estimate_prompt_tokens, estimate_text_tokens};

/// Server-wide behaviour.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// Added to every answer.
    pub latency: Duration,
    /// Probability that a request fails with `fail_status`.
    pub fail_rate: f64,
    pub fail_status: u16,
    /// Pause between streamed deltas.
    pub stream_delay: Duration,
    pub seed: u64,
}

#[derive(Default)]
struct Stats {
    requests: BTreeMap<String, u64>,
    last_authorization: Option<String>,
}

struct Shared {
    opts: MockOptions,
    rng: Mutex<rand::rngs::StdRng>,
    stats: Mutex<Stats>,
}

#[derive(Deserialize)]
struct Request {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: String,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    opts: MockOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(opts.seed)),
        opts,
        stats: Mutex::default(),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/mock/stats", get(stats))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    let st = s.stats.lock().expect("stats lock");
    Json(json!({"requests": st.requests, "last_authorization": st.last_authorization}))
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (
        code,
        Json(json!({"error": {"message": message, "type": "mock_error", "code": status}})),
    )
        .into_response();
    if status == 429 {
        resp.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    resp
}

async fn chat(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(400, &format!("invalid request body: {e}")),
    };
    {
        let mut st = s.stats.lock().expect("stats lock");
        *st.requests.entry(req.model.clone()).or_default() += 1;
        st.last_authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
    }
    if req.messages.is_empty() {
        return error(400, "messages must not be empty");
    }
    let mut parts = req.model.split('+');
    let base = parts.next().unwrap_or_default().to_owned();
    let directives: Vec<&str> = parts.collect();
    let has = |d: &str| directives.contains(&d);

    let mut delay = s.opts.latency;
    for d in &directives {
        if let Some(ms) = d.strip_prefix("slow").and_then(|v| v.parse().ok()) {
            delay += Duration::from_millis(ms);
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if has("hang") {
        std::future::pending::<()>().await;
    }
    for d in &directives {
        if let Some(code) = d.strip_prefix("fail").and_then(|v| v.parse().ok()) {
            return error(code, &format!("scripted failure {code}"));
        }
    }
    let random_fail = s.opts.fail_rate > 0.0
        && s.rng
            .lock()
            .expect("rng lock")
            .random_bool(s.opts.fail_rate.min(1.0));
    if random_fail {
        return error(s.opts.fail_status, "random failure");
    }
    if has("badjson") {
        return (StatusCode::OK, "{\"choices\": [ this is not json").into_response();
    }

    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let echo: String = last_user.chars().take(200).collect();
    let mut content = format!("[{base}] {echo}");
    if let Some(max) = req.max_tokens {
        // Honour max_tokens roughly, as a real model would by stopping early.
        let limit = usize::try_from(max).unwrap_or(usize::MAX).saturating_mul(4);
        if content.len() > limit {
            let cut = (0..=limit)
                .rev()
                .find(|i| content.is_char_boundary(*i))
                .unwrap_or(0);
            content.truncate(cut);
        }
    }
    let usage = (!has("nousage")).then(|| {
        let p = estimate_prompt_tokens(req.messages.iter().map(|m| m.content.as_str()));
        let c = estimate_text_tokens(&content);
        json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
    });
    if req.stream {
        return stream_answer(
            &req.model,
            content,
            usage,
            has("cutstream"),
            s.opts.stream_delay,
        );
    }
    let mut body = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": req.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    });
    if let Some(u) = usage {
        body["usage"] = u;
    }
    Json(body).into_response()
}

fn stream_answer(
    model: &str,
    content: String,
    usage: Option<Value>,
    cut: bool,
    delay: Duration,
) -> Response {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for (i, word) in content.split_inclusive(' ').enumerate() {
        if cut && i == 2 {
            break;
        }
        events.push(chunk(json!({"content": word}), Value::Null));
    }
    if !cut {
        events.push(chunk(json!({}), json!("stop")));
        if let Some(u) = usage {
            events.push(
                json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                               "created": 0, "model": model, "choices": [], "usage": u}),
            );
        }
    }
    let mut data: Vec<String> = events.into_iter().map(|e| e.to_string()).collect();
    if !cut {
        data.push("[DONE]".into());
    }
    let events = stream::unfold(data.into_iter(), move |mut it| async move {
        let next = it.next()?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, Infallible>(Event::default().data(next)), it))
    });
    Sse::new(events).into_response()
}
