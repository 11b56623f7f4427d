//! `POST /v1/messages`: the Anthropic Messages front over the same engine
//! (and routing) as `/v1/chat/completions`, so clients built on the
//! `anthropic` SDKs use Switchyard unchanged, whatever protocol the chosen
//! model speaks. Answers are Anthropic messages, plain or as its typed SSE
//! events; errors are Anthropic's `{"type": "error", "error": {...}}`.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use super::chat::{Answered, Started, answer, answered, decision_headers, keyed};
use super::errors::{ApiError, bad_body};
use super::messages_wire;
use crate::dispatch::{ToolCall, ToolCallDelta, Usage};
use crate::engine::{Completed, StreamItem};

/// An [`ApiError`] answered in Anthropic's shape.
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

impl From<crate::error::Error> for AnthropicError {
    fn from(e: crate::error::Error) -> Self {
        AnthropicError(e.into())
    }
}

impl AnthropicError {
    fn body(&self) -> Value {
        json!({"type": "error", "error": {"type": error_type(self.0.status), "message": self.0.message}})
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let mut resp = (self.0.status, axum::Json(self.body())).into_response();
        self.0.rate_headers(resp.headers_mut());
        resp
    }
}

/// Anthropic's error types by status.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

pub async fn messages(
    State(app): State<AppState>,
    headers: HeaderMap,
    key: Option<axum::Extension<crate::auth::Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let body = body.map_err(bad_body)?;
    let req = messages_wire::parse(&body)?;
    let streaming = req.streaming();
    let mut input = req.into_input(&headers)?;
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
    let span = tracing::Span::current();
    let items = ReceiverStream::new(rx).inspect(move |_| {
        let _held = &permit; // the in-flight permit lives as long as the stream
    });
    let stream = events(&decision_id, &model, items).map(move |e| {
        let _entered = span.enter();
        e
    });
    let mut resp = Sse::new(stream).into_response();
    decision_headers(resp.headers_mut(), &decision_id, &model, &provider, cache);
    Ok(resp)
}

/// A streamed answer's SSE events: `message_start`, then each engine item's
/// content-block events (see [`Blocks`]).
pub(super) fn events<I>(
    decision_id: &str,
    model: &str,
    items: I,
) -> impl futures::Stream<Item = Result<Event, Infallible>> + use<I>
where
    I: futures::Stream<Item = Result<StreamItem, crate::error::Error>>,
{
    let start = event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": message_id(decision_id), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            // The prompt's real count comes with message_delta, at the end.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }}),
    );
    let mut blocks = Blocks::default();
    let rest =
        items.flat_map(move |item| futures::stream::iter(blocks.events(item).into_iter().map(Ok)));
    futures::stream::once(async move { Ok(start) }).chain(rest)
}

fn message_id(decision_id: &str) -> String {
    format!("msg_{}", decision_id.replace('-', ""))
}

fn event(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// Our finish reasons (OpenAI's vocabulary) in Anthropic's.
fn stop_reason(finish: &str) -> &str {
    match finish {
        "" | "stop" => "end_turn",
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        "content_filter" => "refusal",
        other => other,
    }
}

/// Anthropic's usage: `input_tokens` leaves out what was read from or
/// written to the cache, which it reports apart.
fn usage(u: &Usage) -> Value {
    let cached = u.cached_tokens.min(u.prompt_tokens);
    let written = u.cache_write_tokens.min(u.prompt_tokens - cached);
    json!({
        "input_tokens": u.prompt_tokens - cached - written,
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
    })
}

/// A call's arguments as the `input` object (an upstream that sent
/// arguments that are not JSON has them kept as a string).
fn input(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

fn tool_use(c: &ToolCall) -> Value {
    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input(&c.arguments)})
}

pub(super) fn plain(c: Completed) -> Response {
    let mut content: Vec<Value> = Vec::new();
    if !c.content.is_empty() || c.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": c.content}));
    }
    content.extend(c.tool_calls.iter().map(tool_use));
    let body = json!({
        "id": message_id(&c.decision_id),
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": stop_reason(&c.finish_reason),
        "stop_sequence": null,
        "usage": usage(&c.usage),
    });
    answered(body, &c)
}

/// The content blocks of a streamed answer: text deltas and tool-call
/// pieces become `content_block_start` / `_delta` / `_stop` events, one
/// block open at a time, numbered in order.
#[derive(Default)]
struct Blocks {
    /// The index of the open block, if one is open.
    open: Option<u32>,
    /// Blocks started so far.
    count: u32,
    /// Whether the open block is text (else a tool call's).
    text: bool,
    /// The block of each tool call, by its OpenAI index.
    calls: Vec<(u32, u32)>,
}

impl Blocks {
    fn start(&mut self, out: &mut Vec<Event>, block: Value, text: bool) -> u32 {
        self.close(out);
        let index = self.count;
        self.count += 1;
        self.open = Some(index);
        self.text = text;
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        if let Some(index) = self.open.take() {
            out.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn delta(index: u32, delta: Value) -> Event {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    }

    fn events(&mut self, item: Result<StreamItem, crate::error::Error>) -> Vec<Event> {
        let mut out = Vec::new();
        match item {
            Ok(StreamItem::Start { .. }) => {}
            Ok(StreamItem::Delta(text)) => {
                let index = match self.open {
                    Some(i) if self.text => i,
                    _ => self.start(&mut out, json!({"type": "text", "text": ""}), true),
                };
                out.push(Self::delta(
                    index,
                    json!({"type": "text_delta", "text": text}),
                ));
            }
            Ok(StreamItem::ToolCall(c)) => self.tool_piece(&mut out, c),
            Ok(StreamItem::End {
                finish_reason,
                usage: u,
                ..
            }) => {
                if self.count == 0 {
                    // An empty answer is still one (empty) text block.
                    self.start(&mut out, json!({"type": "text", "text": ""}), true);
                }
                self.close(&mut out);
                out.push(event(
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": stop_reason(&finish_reason), "stop_sequence": null},
                           "usage": usage(&u)}),
                ));
                out.push(event("message_stop", json!({"type": "message_stop"})));
            }
            // After the stream started: an error event, and no message_stop,
            // so SDKs raise instead of taking a cut answer for a whole one.
            Err(e) => out.push(event("error", AnthropicError::from(e).body())),
        }
        out
    }

    fn tool_piece(&mut self, out: &mut Vec<Event>, c: ToolCallDelta) {
        let known = self
            .calls
            .iter()
            .find(|(i, _)| *i == c.index)
            .map(|(_, b)| *b);
        let block = match known {
            Some(b) => b,
            None => {
                let block = json!({"type": "tool_use", "id": c.id.clone().unwrap_or_default(),
                                   "name": c.name.clone().unwrap_or_default(), "input": {}});
                let b = self.start(out, block, false);
                self.calls.push((c.index, b));
                b
            }
        };
        if !c.arguments.is_empty() {
            // Pieces of a call whose block was closed (calls interleaved by
            // the upstream) are refused by SDKs: that never happens with the
            // three protocols, which stream one call at a time.
            out.push(Self::delta(
                block,
                json!({"type": "input_json_delta", "partial_json": c.arguments}),
            ));
        }
    }
}
