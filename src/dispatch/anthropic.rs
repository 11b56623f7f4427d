//! Anthropic's Messages API: the system prompt is a top-level field,
//! `max_tokens` is required, stop sequences are `stop_sequences`, answers are
//! content blocks, and streams are typed SSE events (`message_start`,
//! `content_block_delta`, `message_delta`, `message_stop`). Wire types stay
//! private here.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{self, SseParser};
use super::{
    Adapter, ChatMessage, ChatRequest, ChatResponse, DispatchError, EventStream, Part, StreamEvent,
    Timeouts, ToolCall, ToolCallDelta, ToolChoice, Usage, data_url,
};
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
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    stream: bool,
}

#[derive(Serialize)]
struct OutTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Value,
}

/// The Messages API has no JSON mode: a JSON answer is asked for as a call
/// to this tool, whose input schema is the answer's, with the call forced;
/// its input comes back as the answer's text.
pub const RESPONSE_TOOL: &str = "switchyard_response";

/// The tool definitions: `input_schema` is required, so a function without
/// parameters takes an empty object.
fn tools(req: &ChatRequest) -> Vec<OutTool<'_>> {
    let mut out: Vec<OutTool<'_>> = req
        .tools
        .defs
        .iter()
        .map(|d| OutTool {
            name: &d.name,
            description: d.description.as_deref(),
            input_schema: d
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        })
        .collect();
    if let Some(f) = &req.response_format {
        out.push(OutTool {
            name: RESPONSE_TOOL,
            description: Some("Give your answer: the input is the whole response."),
            input_schema: f.schema(),
        });
    }
    out
}

/// OpenAI's `tool_choice` and `parallel_tool_calls` as one `tool_choice`:
/// `required` is `any`, a named function is `tool`, and no parallel calls
/// is `disable_parallel_tool_use`. A JSON answer forces the response tool,
/// or, beside tools the model may call, any tool (so it answers by one).
fn tool_choice(req: &ChatRequest) -> Option<Value> {
    let t = &req.tools;
    if req.response_format.is_some() {
        return Some(match &t.choice {
            Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
            _ if t.defs.is_empty() || t.choice == Some(ToolChoice::None) => {
                json!({"type": "tool", "name": RESPONSE_TOOL})
            }
            _ => json!({"type": "any"}),
        });
    }
    if t.defs.is_empty() {
        return None;
    }
    let mut choice = match &t.choice {
        None if t.parallel != Some(false) => return None,
        None | Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::None) => return Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
    };
    if t.parallel == Some(false) {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    Some(choice)
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
    content: OutContent<'a>,
}

/// A plain turn stays a string; tool traffic needs blocks.
#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(&'a str),
    Blocks(Vec<OutBlock<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: Value,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
    },
}

/// A content part as a block: an image from a `data:` URL is `base64`
/// data, from an `http(s)` URL a `url` source.
fn block(p: &Part) -> OutBlock<'_> {
    match p {
        Part::Text(text) => OutBlock::Text { text },
        Part::Image { url, .. } => OutBlock::Image {
            source: match data_url(url) {
                Some((media_type, data)) => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                None => json!({"type": "url", "url": url}),
            },
        },
    }
}

/// The turns in the API's two roles: anything that is not the assistant
/// speaks for the user; an assistant's tool calls become `tool_use` blocks
/// and `tool` messages `tool_result` blocks, consecutive ones in one user
/// turn (the API wants every result of a turn's calls together).
fn messages<'a>(turns: impl Iterator<Item = &'a ChatMessage>) -> Vec<WireMessage<'a>> {
    let mut out: Vec<WireMessage<'a>> = Vec::new();
    for m in turns {
        if let Some(id) = &m.tool_call_id {
            let block = OutBlock::ToolResult {
                tool_use_id: id,
                content: &m.content,
            };
            match out.last_mut() {
                Some(WireMessage {
                    role: "user",
                    content: OutContent::Blocks(blocks),
                }) if blocks
                    .iter()
                    .all(|b| matches!(b, OutBlock::ToolResult { .. })) =>
                {
                    blocks.push(block)
                }
                _ => out.push(WireMessage {
                    role: "user",
                    content: OutContent::Blocks(vec![block]),
                }),
            }
            continue;
        }
        let role = if m.role == "assistant" {
            "assistant"
        } else {
            "user"
        };
        let content = if !m.parts.is_empty() {
            OutContent::Blocks(m.parts.iter().map(block).collect())
        } else if m.tool_calls.is_empty() {
            OutContent::Text(&m.content)
        } else {
            let text = (!m.content.is_empty()).then_some(OutBlock::Text { text: &m.content });
            let calls = m.tool_calls.iter().map(|c| OutBlock::ToolUse {
                id: &c.id,
                name: &c.name,
                // The front checked the arguments are JSON.
                input: serde_json::from_str(&c.arguments)
                    .unwrap_or_else(|_| Value::String(c.arguments.clone())),
            });
            OutContent::Blocks(text.into_iter().chain(calls).collect())
        };
        out.push(WireMessage { role, content });
    }
    out
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
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
}

impl WireBlock {
    /// A `tool_use` block as a call, its input as JSON text.
    fn call(&self) -> Option<ToolCall> {
        (self.kind == "tool_use").then(|| ToolCall {
            id: self.id.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
            arguments: self
                .input
                .as_ref()
                .map_or_else(|| "{}".to_owned(), Value::to_string),
        })
    }
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
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        Some(Usage {
            prompt_tokens: input + cached + written,
            completion_tokens: self.output_tokens?,
            cached_tokens: cached,
            // Thinking is billed as output and not reported apart.
            reasoning_tokens: 0,
            cache_write_tokens: written,
        })
    }
}

/// Anthropic's stop reasons in OpenAI's vocabulary, which our API reports;
/// a turn that stopped to call only the response tool just stopped.
fn finish_reason(r: Option<&str>, called: bool) -> String {
    match r {
        None | Some("end_turn") | Some("stop_sequence") => "stop",
        Some("max_tokens") => "length",
        Some("tool_use") if !called => "stop",
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
        let mut rb = self
            .http
            .post(format!("{}/messages", provider.base_url))
            .header("anthropic-version", API_VERSION)
            .json(&body(upstream, req, stream));
        if let Some(key) = &provider.api_key {
            rb = rb.header("x-api-key", key);
        }
        rb
    }
}

/// The request body for `upstream`.
pub(super) fn body<'a>(
    upstream: &'a str,
    req: &'a ChatRequest,
    stream: bool,
) -> impl Serialize + 'a {
    let thinking = super::reasoning::budget_within(&req.sampling, req.max_tokens);
    WireRequest {
        model: upstream,
        system: req.system(),
        messages: messages(req.turns()),
        // The budget counts within max_tokens: without a limit of the
        // caller's, the default leaves the answer its usual room.
        max_tokens: req
            .max_tokens
            .unwrap_or(DEFAULT_MAX_TOKENS + thinking.unwrap_or(0)),
        temperature: req.temperature.map(|t| t.min(MAX_TEMPERATURE)),
        stop_sequences: &req.stop,
        top_p: req.sampling.top_p,
        top_k: req.sampling.top_k,
        thinking: thinking.map(|b| json!({"type": "enabled", "budget_tokens": b})),
        metadata: req.user.as_deref().map(|user_id| WireMetadata { user_id }),
        tools: tools(req),
        tool_choice: tool_choice(req),
        stream,
    }
}

/// A whole answer's body, read.
pub(super) fn answer(body: &[u8]) -> Result<ChatResponse, DispatchError> {
    let wire: WireResponse = http::decode(body)?;
    let (answer, tool_calls): (Vec<ToolCall>, Vec<ToolCall>) = wire
        .content
        .iter()
        .filter_map(WireBlock::call)
        .partition(|c| c.name == RESPONSE_TOOL);
    // A JSON answer is the response tool's input, and only that.
    let content: String = match answer.into_iter().next() {
        Some(a) => a.arguments,
        None => wire
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .map(|b| b.text.as_str())
            .collect(),
    };
    Ok(ChatResponse {
        content,
        finish_reason: finish_reason(wire.stop_reason.as_deref(), !tool_calls.is_empty()),
        tool_calls,
        usage: wire.usage.and_then(WireUsage::normalise),
    })
}

impl Adapter for AnthropicClient {
    async fn complete(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        t: Timeouts,
    ) -> Result<ChatResponse, DispatchError> {
        let rb = self.request(provider, upstream, req, false);
        answer(&http::send_body(rb, t).await?)
    }

    async fn stream(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        t: Timeouts,
    ) -> Result<EventStream, DispatchError> {
        let resp = http::send(self.request(provider, upstream, req, true), t.first_byte).await?;
        Ok(http::sse(resp, t, Parser::default()))
    }
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    index: Option<u32>,
    message: Option<WireStartMessage>,
    content_block: Option<WireBlock>,
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
    /// A fragment of a `tool_use` block's input (`input_json_delta`).
    partial_json: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    message: String,
}

/// Usage arrives in two halves: input with `message_start`, output with
/// `message_delta`. Tool calls are numbered in the order their blocks start,
/// as OpenAI numbers its streamed calls.
#[derive(Default)]
pub(super) struct Parser {
    usage: WireUsage,
    stop_reason: Option<String>,
    /// The content-block index of each tool call so far.
    tool_blocks: Vec<u32>,
    /// The block of the response tool's call, whose input is the answer.
    answer_block: Option<u32>,
}

impl Parser {
    fn tool_index(&self, block: Option<u32>) -> Option<u32> {
        let i = self.tool_blocks.iter().position(|b| Some(*b) == block)?;
        u32::try_from(i).ok()
    }
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
            "content_block_start" => {
                let call = ev.content_block.as_ref().and_then(WireBlock::call);
                if call.as_ref().is_some_and(|c| c.name == RESPONSE_TOOL) {
                    self.answer_block = Some(ev.index.unwrap_or(0));
                } else if let Some(call) = call {
                    self.tool_blocks.push(ev.index.unwrap_or(0));
                    out.push(StreamEvent::ToolCall(ToolCallDelta {
                        index: u32::try_from(self.tool_blocks.len() - 1).unwrap_or(u32::MAX),
                        id: Some(call.id),
                        name: Some(call.name),
                        arguments: String::new(),
                    }));
                }
            }
            "content_block_delta" => {
                let Some(delta) = ev.delta else {
                    return Ok((out, false));
                };
                if let Some(t) = delta.text.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::Delta(t));
                }
                if let Some(json) = delta.partial_json.filter(|j| !j.is_empty()) {
                    if ev.index.is_some() && ev.index == self.answer_block {
                        out.push(StreamEvent::Delta(json));
                        return Ok((out, false));
                    }
                    let index = self.tool_index(ev.index).ok_or_else(|| {
                        DispatchError::Malformed("input_json_delta outside a tool_use block".into())
                    })?;
                    out.push(StreamEvent::ToolCall(ToolCallDelta {
                        index,
                        id: None,
                        name: None,
                        arguments: json,
                    }));
                }
            }
            "message_delta" => {
                if let Some(r) = ev.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(r);
                }
                // Its counts are cumulative: whichever it carries (output
                // always; input and cache counts from some senders, this
                // service's Messages front among them) replace the start's.
                if let Some(u) = ev.usage {
                    let mine = &mut self.usage;
                    mine.input_tokens = u.input_tokens.or(mine.input_tokens);
                    mine.output_tokens = u.output_tokens.or(mine.output_tokens);
                    mine.cache_read_input_tokens =
                        u.cache_read_input_tokens.or(mine.cache_read_input_tokens);
                    mine.cache_creation_input_tokens = u
                        .cache_creation_input_tokens
                        .or(mine.cache_creation_input_tokens);
                }
            }
            "message_stop" => return Ok((out, true)),
            "error" => {
                let msg = ev.error.map_or_else(|| "unknown".into(), |e| e.message);
                return Err(DispatchError::Stream(format!(
                    "provider error event: {msg}"
                )));
            }
            _ => {} // ping, content_block_stop
        }
        Ok((out, false))
    }

    fn finish(&mut self) -> StreamEvent {
        StreamEvent::Done {
            finish_reason: finish_reason(self.stop_reason.as_deref(), !self.tool_blocks.is_empty()),
            usage: self.usage.normalise(),
        }
    }
}
