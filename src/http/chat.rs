//! `POST /v1/chat/completions`: the OpenAI wire format over the engine's
//! Complete and CompleteStream, plain JSON or server-sent events.
//!
//! The decision id and chosen model travel in `x-switchyard-decision-id` /
//! `x-switchyard-model` headers and in the body (`model`, `id` =
//! `chatcmpl-<decision id>`, and a `switchyard` object for plain answers).

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use super::errors::{ApiError, bad_body};
use super::wire;
use crate::auth::Principal;
use crate::cache::Status;
use crate::dispatch::Usage;
use crate::engine::{CompleteInput, Completed, StreamItem};
use crate::store::AttemptRow;

/// What a front gets from the engine for one request: a whole answer, or a
/// stream that has started.
pub(super) enum Answered {
    Plain(Box<Completed>),
    Stream(Started),
}

/// A stream whose first item named the decision: the rest of its items, and
/// the in-flight permit, to be held as long as the stream.
pub(super) struct Started {
    pub decision_id: String,
    pub model: String,
    pub provider: String,
    pub cache: Status,
    pub rx: mpsc::Receiver<Result<StreamItem, crate::error::Error>>,
    pub permit: OwnedSemaphorePermit,
}

/// The request under its API key (when keys are on): the key's tenant, and
/// its models only; with the headers the rules read.
pub(super) fn keyed(
    app: &AppState,
    input: &mut CompleteInput,
    headers: &HeaderMap,
    key: Option<axum::Extension<Principal>>,
) -> Result<(), ApiError> {
    input.route.headers = app
        .engine
        .rules
        .headers_of(|h| headers.get(h).and_then(|v| v.to_str().ok()));
    if let Some(axum::Extension(k)) = key {
        app.engine
            .apply_key(&k, &mut input.route, input.model.as_deref())?;
    }
    input.bypass_cache = bypasses_cache(|h| headers.get(h).and_then(|v| v.to_str().ok()));
    Ok(())
}

/// Whether the request asks to skip the response cache: `cache-control:
/// no-cache` (or `no-store`), or `x-switchyard-cache: bypass`. The gRPC
/// service reads the same names from the call's metadata.
pub fn bypasses_cache<'a>(header: impl Fn(&str) -> Option<&'a str>) -> bool {
    let no_cache = header("cache-control").is_some_and(|v| {
        v.split(',')
            .map(|d| d.trim().to_ascii_lowercase())
            .any(|d| d == "no-cache" || d == "no-store")
    });
    no_cache
        || header("x-switchyard-cache").is_some_and(|v| v.trim().eq_ignore_ascii_case("bypass"))
}

/// Admits `input` and runs it, plain or streamed, the same for both fronts;
/// the request's span gets the decision id.
pub(super) async fn answer(
    app: &AppState,
    input: &CompleteInput,
    streaming: bool,
) -> Result<Answered, ApiError> {
    let permit = app.admit()?;
    if !streaming {
        let c = app.engine.complete(input).await?;
        tracing::Span::current().record("decision_id", c.decision_id.as_str());
        return Ok(Answered::Plain(Box::new(c)));
    }
    let mut rx = app.engine.complete_stream(input).await?;
    // The engine sends Start first; its decision id goes into the headers.
    match rx.recv().await {
        Some(Ok(StreamItem::Start {
            decision_id,
            model,
            provider,
            cache,
        })) => {
            tracing::Span::current().record("decision_id", decision_id.as_str());
            Ok(Answered::Stream(Started {
                decision_id,
                model,
                provider,
                cache,
                rx,
                permit,
            }))
        }
        Some(Err(e)) => Err(e.into()),
        _ => Err(crate::error::Error::internal("the stream ended before it started").into()),
    }
}

pub async fn completions(
    State(app): State<AppState>,
    headers: HeaderMap,
    key: Option<axum::Extension<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(bad_body)?;
    let chat = wire::parse(&body)?;
    let streaming = chat.streaming();
    let include_usage = chat.include_usage();
    let mut input = chat.into_input(&headers)?;
    keyed(&app, &mut input, &headers, key)?;
    let Started {
        decision_id,
        model,
        provider,
        cache,
        rx,
        permit,
    } = match answer(&app, &input, streaming).await? {
        Answered::Plain(c) => return Ok(plain(*c)),
        Answered::Stream(s) => s,
    };
    // The request's span is entered for every item, so it ends (at its last
    // exit) with the stream, not with the headers.
    let span = tracing::Span::current();
    let items = ReceiverStream::new(rx).inspect(move |_| {
        let _held = &permit; // the in-flight permit lives as long as the stream
    });
    let stream = events(&decision_id, &model, include_usage, items).map(move |e| {
        let _entered = span.enter();
        e
    });
    let mut resp = Sse::new(stream).into_response();
    decision_headers(resp.headers_mut(), &decision_id, &model, &provider, cache);
    Ok(resp)
}

/// A streamed answer's SSE events: the assistant's opening chunk, then each
/// engine item's (see [`sse_events`]).
pub(super) fn events<I>(
    decision_id: &str,
    model: &str,
    include_usage: bool,
    items: I,
) -> impl futures::Stream<Item = Result<Event, Infallible>> + use<I>
where
    I: futures::Stream<Item = Result<StreamItem, crate::error::Error>>,
{
    let chunk = ChunkMaker {
        id: format!("chatcmpl-{decision_id}"),
        created: now_secs(),
        model: model.to_owned(),
    };
    let first = chunk.make(json!({"role": "assistant", "content": ""}), None);
    let rest =
        items.flat_map(move |item| futures::stream::iter(sse_events(&chunk, item, include_usage)));
    futures::stream::once(async move { Ok::<_, Infallible>(data(&first)) }).chain(rest)
}

struct ChunkMaker {
    id: String,
    created: u64,
    model: String,
}

impl ChunkMaker {
    fn make(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }
}

/// The SSE events for one engine item: a content delta; at the end the
/// finish chunk, the usage chunk when asked for, and `[DONE]`; on an error
/// after the stream started, an OpenAI error event and no `[DONE]` (SDKs
/// raise it as an APIError, so a cut answer is never taken for a whole one).
fn sse_events(
    c: &ChunkMaker,
    item: Result<StreamItem, crate::error::Error>,
    include_usage: bool,
) -> Vec<Result<Event, Infallible>> {
    match item {
        Ok(StreamItem::Start { .. }) => Vec::new(),
        Ok(StreamItem::Delta(d)) => vec![Ok(data(&c.make(json!({"content": d}), None)))],
        Ok(StreamItem::ToolCall(t)) => {
            // OpenAI's shape: id, type and name with a call's first piece.
            let mut call = json!({"index": t.index, "function": {"arguments": t.arguments}});
            if let Some(id) = t.id {
                call["id"] = json!(id);
                call["type"] = json!("function");
            }
            if let Some(name) = t.name {
                call["function"]["name"] = json!(name);
            }
            vec![Ok(data(&c.make(json!({"tool_calls": [call]}), None)))]
        }
        Ok(StreamItem::End {
            finish_reason,
            usage: u,
            ..
        }) => {
            let mut out = vec![Ok(data(&c.make(json!({}), Some(finish(&finish_reason)))))];
            if include_usage {
                let mut last = c.make(json!({}), None);
                last["choices"] = json!([]);
                last["usage"] = usage(u);
                out.push(Ok(data(&last)));
            }
            out.push(Ok(Event::default().data("[DONE]")));
            out
        }
        Err(e) => vec![Ok(data(&ApiError::from(e).body()))],
    }
}

fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

pub(super) fn plain(c: Completed) -> Response {
    let mut message = json!({"role": "assistant", "content": c.content, "refusal": null});
    if !c.tool_calls.is_empty() {
        if c.content.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = c
            .tool_calls
            .iter()
            .map(|t| {
                json!({"id": t.id, "type": "function",
                            "function": {"name": t.name, "arguments": t.arguments}})
            })
            .collect();
    }
    let body = json!({
        "id": format!("chatcmpl-{}", c.decision_id),
        "object": "chat.completion",
        "created": now_secs(),
        "model": c.model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish(&c.finish_reason),
        }],
        "usage": usage(c.usage),
    });
    answered(body, &c)
}

/// A plain answer in either front's shape, with what both add: the
/// `switchyard` object (decision, provider, cost, attempts) and the
/// decision headers.
pub(super) fn answered(mut body: Value, c: &Completed) -> Response {
    body["switchyard"] = json!({
        "decision_id": c.decision_id,
        "provider": c.provider,
        "cost_usd": c.cost_usd,
        "usage_estimated": c.usage_estimated,
        "attempts": c.attempts.iter().map(attempt).collect::<Vec<_>>(),
    });
    if c.cache != Status::Off {
        body["switchyard"]["cache"] = json!(c.cache.as_str());
    }
    // What the rules did, when they did anything.
    let x = &c.explained;
    if !x.rules.is_empty() {
        body["switchyard"]["rules"] = json!(x.rules);
    }
    if let Some(p) = &x.profile {
        body["switchyard"]["profile"] = json!(p);
    }
    if let Some(a) = &x.split {
        body["switchyard"]["ab"] =
            json!({"rule": a.rule, "arm": a.arm, "probability": a.probability});
    }
    let mut resp = axum::Json(body).into_response();
    decision_headers(
        resp.headers_mut(),
        &c.decision_id,
        &c.model,
        &c.provider,
        c.cache,
    );
    resp
}

fn finish(reason: &str) -> &str {
    if reason.is_empty() { "stop" } else { reason }
}

fn usage(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

fn attempt(a: &AttemptRow) -> Value {
    json!({
        "model": a.model,
        "provider": a.provider,
        "deployment": a.deployment,
        "outcome": a.outcome,
        "error": a.error,
        "http_status": a.http_status,
        "latency_ms": a.latency_ms,
    })
}

/// The decision's headers, and `x-switchyard-cache` when a cache is on.
pub(super) fn decision_headers(
    h: &mut HeaderMap,
    decision_id: &str,
    model: &str,
    provider: &str,
    cache: Status,
) {
    for (name, value) in [
        ("x-switchyard-decision-id", decision_id),
        ("x-switchyard-model", model),
        ("x-switchyard-provider", provider),
        ("x-switchyard-cache", cache.as_str()),
    ] {
        if value.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
