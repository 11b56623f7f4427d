//! Anthropic's Messages API: the system prompt is a top-level field,
//! `max_tokens` is required, stop sequences are `stop_sequences`, answers are
//! content blocks, and streams are typed SSE events (`message_start`,
//! `content_block_delta`, `message_delta`, `message_stop`). Wire types stay
//! private here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http::{self, SseParser};
use super::{Adapter, ChatRequest, ChatResponse, DispatchError, EventStream, StreamEvent, Usage};
use crate::catalog::Provider;

/// The API version we speak (the header is required).
const API_VERSION: &str = "2023-06-01";

/// `max_tokens` is required by the API; used when the caller sets none.
/// Large enough not to cut ordinary answers short.
const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
    stream: bool,
}

#[derive(Serialize)]
struct WireMetadata<'a> {
    user_id: &'a str,
}

/// The API's temperature range is [0, 1], OpenAI's [0, 2]; both scale the
/// same softmax, so a value is kept as is and only clamped to the range.
const MAX_TEMPERATURE: f64 = 1.0;

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct WireResponse {
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u32>,
}

impl WireUsage {
    /// Anthropic counts cached prompt tokens apart from `input_tokens`; our
    /// `prompt_tokens` is the whole prompt, with the cached part noted.
    fn normalise(self) -> Option<Usage> {
        let input = self.input_tokens?;
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        Some(Usage {
            prompt_tokens: input + cached + self.cache_creation_input_tokens.unwrap_or(0),
            completion_tokens: self.output_tokens?,
            cached_tokens: cached,
        })
    }
}

/// Anthropic's stop reasons in OpenAI's vocabulary, which our API reports.
fn finish_reason(r: Option<&str>) -> String {
    match r {
        None | Some("end_turn") | Some("stop_sequence") => "stop",
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        Some(other) => other,
    }
    .to_owned()
}

/// A client for the Messages API; cheap to clone.
#[derive(Clone)]
pub struct AnthropicClient {
    http: reqwest::Client,
}

impl AnthropicClient {
    pub fn new(http: reqwest::Client) -> Self {
        AnthropicClient { http }
    }

    fn request(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        stream: bool,
    ) -> reqwest::RequestBuilder {
        let body = WireRequest {
            model: upstream,
            system: req.system(),
            // The API knows two roles; anything that is not the assistant
            // speaks for the user.
            messages: req
                .turns()
                .map(|m| WireMessage {
                    role: if m.role == "assistant" {
                        "assistant"
                    } else {
                        "user"
                    },
                    content: &m.content,
                })
                .collect(),
            max_tokens: req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            temperature: req.temperature.map(|t| t.min(MAX_TEMPERATURE)),
            stop_sequences: &req.stop,
            top_p: req.sampling.top_p,
            metadata: req.user.as_deref().map(|user_id| WireMetadata { user_id }),
            stream,
        };
        let mut rb = self
            .http
            .post(format!("{}/messages", provider.base_url))
            .header("anthropic-version", API_VERSION)
            .json(&body);
        if let Some(key) = &provider.api_key {
            rb = rb.header("x-api-key", key);
        }
        rb
    }
}

impl Adapter for AnthropicClient {
    async fn complete(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatResponse, DispatchError> {
        let rb = self.request(provider, upstream, req, false);
        let wire: WireResponse = http::send_json(rb, timeout).await?;
        let content: String = wire
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .map(|b| b.text.as_str())
            .collect();
        Ok(ChatResponse {
            content,
            finish_reason: finish_reason(wire.stop_reason.as_deref()),
            usage: wire.usage.and_then(WireUsage::normalise),
        })
    }

    async fn stream(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<EventStream, DispatchError> {
        let resp = http::send(self.request(provider, upstream, req, true), timeout).await?;
        Ok(http::sse(resp, timeout, Parser::default()))
    }
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    message: Option<WireStartMessage>,
    delta: Option<WireDelta>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireStartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireDelta {
    text: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    message: String,
}

/// Usage arrives in two halves: input with `message_start`, output with
/// `message_delta`.
#[derive(Default)]
struct Parser {
    usage: WireUsage,
    stop_reason: Option<String>,
}

impl SseParser for Parser {
    const TERMINATOR: &'static str = "message_stop";

    fn feed(
        &mut self,
        _event: Option<&str>,
        data: &str,
    ) -> Result<(Vec<StreamEvent>, bool), DispatchError> {
        // The payload's own `type` names the event; the `event:` line repeats it.
        let ev: WireEvent = serde_json::from_str(data)
            .map_err(|e| DispatchError::Malformed(format!("bad stream event: {e}")))?;
        let mut out = Vec::new();
        match ev.kind.as_str() {
            "message_start" => {
                if let Some(u) = ev.message.and_then(|m| m.usage) {
                    self.usage = u;
                }
            }
            "content_block_delta" => {
                if let Some(t) = ev.delta.and_then(|d| d.text).filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::Delta(t));
                }
            }
            "message_delta" => {
                if let Some(r) = ev.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(r);
                }
                if let Some(u) = ev.usage {
                    self.usage.output_tokens = u.output_tokens.or(self.usage.output_tokens);
                }
            }
            "message_stop" => return Ok((out, true)),
            "error" => {
                let msg = ev.error.map_or_else(|| "unknown".into(), |e| e.message);
                return Err(DispatchError::Stream(format!(
                    "provider error event: {msg}"
                )));
            }
            _ => {} // ping, content_block_start/stop
        }
        Ok((out, false))
    }

    fn finish(&mut self) -> StreamEvent {
        StreamEvent::Done {
            finish_reason: finish_reason(self.stop_reason.as_deref()),
            usage: self.usage.normalise(),
        }
    }
}
