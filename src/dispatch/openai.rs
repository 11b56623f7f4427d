//! The OpenAI-compatible chat-completions wire protocol: request translation,
//! response and SSE-stream normalisation. Wire types stay private here.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{self, SseParser};
use super::{
    Adapter, ChatMessage, ChatRequest, ChatResponse, DispatchError, EventStream, Part,
    ResponseFormat, StreamEvent, Timeouts, Tool, ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use crate::catalog::Provider;

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'a str,
    /// `null` for an assistant turn that only called tools, as OpenAI sends it.
    content: Option<OutContent<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> From<&'a ChatMessage> for OutMessage<'a> {
    fn from(m: &'a ChatMessage) -> Self {
        let only_calls = m.content.is_empty() && !m.tool_calls.is_empty();
        let content = if m.parts.is_empty() {
            OutContent::Text(&m.content)
        } else {
            OutContent::Parts(m.parts.iter().map(OutPart::from).collect())
        };
        OutMessage {
            role: &m.role,
            content: (!only_calls).then_some(content),
            tool_calls: m
                .tool_calls
                .iter()
                .map(|c| OutCall {
                    id: &c.id,
                    kind: "function",
                    function: OutFunction {
                        name: &c.name,
                        arguments: &c.arguments,
                    },
                })
                .collect(),
            tool_call_id: m.tool_call_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(&'a str),
    Parts(Vec<OutPart<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: OutImage<'a> },
}

#[derive(Serialize)]
struct OutImage<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

impl<'a> From<&'a Part> for OutPart<'a> {
    fn from(p: &'a Part) -> Self {
        match p {
            Part::Text(text) => OutPart::Text { text },
            Part::Image { url, detail } => OutPart::ImageUrl {
                image_url: OutImage {
                    url,
                    detail: detail.as_deref(),
                },
            },
        }
    }
}

#[derive(Serialize)]
struct OutCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct OutTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutDefinition<'a>,
}

#[derive(Serialize)]
struct OutDefinition<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

impl<'a> From<&'a Tool> for OutTool<'a> {
    fn from(t: &'a Tool) -> Self {
        OutTool {
            kind: "function",
            function: OutDefinition {
                name: &t.name,
                description: t.description.as_deref(),
                parameters: t.parameters.as_ref(),
                strict: t.strict,
            },
        }
    }
}

/// OpenAI's `tool_choice`: a mode string, or the function to call.
fn tool_choice(c: &ToolChoice) -> Value {
    match c {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// `response_format` as OpenAI takes it.
fn response_format(f: &ResponseFormat) -> Value {
    match f {
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => {
            let mut spec = json!({"name": name});
            if let Some(d) = description {
                spec["description"] = json!(d);
            }
            if let Some(s) = schema {
                spec["schema"] = s.clone();
            }
            if let Some(s) = strict {
                spec["strict"] = json!(s);
            }
            json!({"type": "json_schema", "json_schema": spec})
        }
    }
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireMessage>,
    delta: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireCall>,
}

/// A tool call in an answer, or a piece of one in a stream's delta.
#[derive(Deserialize)]
struct WireCall {
    #[serde(default)]
    index: u32,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

impl WireCall {
    fn whole(self) -> Result<ToolCall, DispatchError> {
        let f = self.function.unwrap_or(WireFunction {
            name: None,
            arguments: None,
        });
        match (self.id, f.name) {
            (Some(id), Some(name)) => Ok(ToolCall {
                id,
                name,
                arguments: f.arguments.unwrap_or_default(),
            }),
            _ => Err(DispatchError::Malformed(
                "a tool call without its id or name".into(),
            )),
        }
    }

    fn delta(self) -> ToolCallDelta {
        let (name, arguments) = self
            .function
            .map_or((None, None), |f| (f.name, f.arguments));
        ToolCallDelta {
            index: self.index,
            id: self.id,
            name,
            arguments: arguments.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    prompt_tokens_details: Option<WireDetails>,
    completion_tokens_details: Option<WireCompletionDetails>,
}

#[derive(Deserialize, Clone, Copy)]
struct WireCompletionDetails {
    #[serde(default)]
    reasoning_tokens: u32,
}

#[derive(Deserialize, Clone, Copy)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            reasoning_tokens: u
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens),
            // OpenAI caches on its own and bills no writes.
            cache_write_tokens: 0,
        }
    }
}

#[derive(Deserialize)]
struct WireStreamChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

/// A client for OpenAI-compatible endpoints; cheap to clone.
#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
}

impl OpenAiClient {
    pub fn new(http: reqwest::Client) -> Self {
        OpenAiClient { http }
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
            .post(format!("{}/chat/completions", provider.base_url))
            .json(&body(upstream, req, stream));
        if let Some(key) = &provider.api_key {
            rb = rb.bearer_auth(key);
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
    WireRequest {
        model: upstream,
        messages: req.messages.iter().map(OutMessage::from).collect(),
        tools: req.tools.defs.iter().map(OutTool::from).collect(),
        tool_choice: req.tools.choice.as_ref().map(tool_choice),
        parallel_tool_calls: req.tools.parallel,
        response_format: req.response_format.as_ref().map(response_format),
        max_tokens: req.max_tokens.filter(|_| !req.max_completion_tokens),
        max_completion_tokens: req.max_tokens.filter(|_| req.max_completion_tokens),
        temperature: req.temperature,
        stop: &req.stop,
        top_p: req.sampling.top_p,
        seed: req.sampling.seed,
        frequency_penalty: req.sampling.frequency_penalty,
        presence_penalty: req.sampling.presence_penalty,
        reasoning_effort: super::reasoning::effort(&req.sampling),
        user: req.user.as_deref(),
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    }
}

/// A whole answer's body, read.
pub(super) fn answer(body: &[u8]) -> Result<ChatResponse, DispatchError> {
    let wire: WireResponse = http::decode(body)?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| DispatchError::Malformed("no choices".into()))?;
    let message = choice
        .message
        .filter(|m| m.content.is_some() || !m.tool_calls.is_empty())
        .ok_or_else(|| DispatchError::Malformed("choice has no message content".into()))?;
    let tool_calls = message
        .tool_calls
        .into_iter()
        .map(WireCall::whole)
        .collect::<Result<_, _>>()?;
    Ok(ChatResponse {
        content: message.content.unwrap_or_default(),
        tool_calls,
        finish_reason: choice.finish_reason.unwrap_or_else(|| "stop".into()),
        usage: wire.usage.map(Usage::from),
    })
}

impl Adapter for OpenAiClient {
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

/// Chunks carry deltas and, at the end, the finish reason and (with
/// `include_usage`) a usage-only chunk; `[DONE]` closes the stream.
#[derive(Default)]
pub(super) struct Parser {
    finish: Option<String>,
    usage: Option<Usage>,
}

impl SseParser for Parser {
    const TERMINATOR: &'static str = "[DONE]";

    fn feed(
        &mut self,
        _event: Option<&str>,
        data: &str,
    ) -> Result<(Vec<StreamEvent>, bool), DispatchError> {
        if data == "[DONE]" {
            return Ok((Vec::new(), true));
        }
        let chunk: WireStreamChunk = serde_json::from_str(data)
            .map_err(|e| DispatchError::Malformed(format!("bad stream chunk: {e}")))?;
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        let mut out = Vec::new();
        for c in chunk.choices {
            if let Some(r) = c.finish_reason {
                self.finish = Some(r);
            }
            let Some(delta) = c.delta else { continue };
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::Delta(text));
            }
            out.extend(
                delta
                    .tool_calls
                    .into_iter()
                    .map(|t| StreamEvent::ToolCall(t.delta())),
            );
        }
        Ok((out, false))
    }

    fn finish(&mut self) -> StreamEvent {
        StreamEvent::Done {
            finish_reason: self.finish.take().unwrap_or_else(|| "stop".into()),
            usage: self.usage.take(),
        }
    }
}
