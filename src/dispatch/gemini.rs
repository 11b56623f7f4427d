//! Google Gemini's `generateContent` / `streamGenerateContent?alt=sse`: the
//! system prompt is `systemInstruction`, turns are `contents` with roles
//! `user` / `model`, options go in `generationConfig`, usage in
//! `usageMetadata`. The key travels in `x-goog-api-key`, never in the URL
//! (URLs end up in logs). Wire types stay private here.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{self, SseParser};
use super::{
    Adapter, ChatMessage, ChatRequest, ChatResponse, DispatchError, EventStream, Part, StreamEvent,
    Timeouts, ToolCall, ToolCallDelta, ToolChoice, Tools, Usage, data_url,
};
use crate::catalog::Provider;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireContent>,
    contents: Vec<WireContent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    generation_config: WireGenConfig<'a>,
}

#[derive(Serialize, Deserialize)]
struct WireContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<WireCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_response: Option<WireCallResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_data: Option<WireBlob>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBlob {
    mime_type: String,
    data: String,
}

impl WirePart {
    fn text(text: String) -> WirePart {
        WirePart {
            text: Some(text),
            ..WirePart::default()
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WireCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Value,
}

impl WireCall {
    /// As an OpenAI call. Gemini may leave calls without ids; ours are then
    /// made up, unique, and sent back with the results.
    fn call(&self) -> ToolCall {
        ToolCall {
            id: self
                .id
                .clone()
                .unwrap_or_else(|| format!("call_{:016x}", rand::random::<u64>())),
            name: self.name.clone(),
            arguments: if self.args.is_null() {
                "{}".to_owned()
            } else {
                self.args.to_string()
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WireCallResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    name: String,
    response: Value,
}

/// The tools as one `functionDeclarations` list; schemas go as JSON Schema
/// (`parametersJsonSchema`), unchanged.
fn tools(t: &Tools) -> Vec<Value> {
    if t.defs.is_empty() {
        return Vec::new();
    }
    let decls: Vec<Value> = t
        .defs
        .iter()
        .map(|d| {
            let mut f = json!({"name": d.name});
            if let Some(desc) = &d.description {
                f["description"] = json!(desc);
            }
            if let Some(p) = &d.parameters {
                f["parametersJsonSchema"] = p.clone();
            }
            f
        })
        .collect();
    vec![json!({"functionDeclarations": decls})]
}

/// `tool_choice` as `functionCallingConfig`: `required` is `ANY`, a named
/// function is `ANY` limited to it.
fn tool_config(t: &Tools) -> Option<Value> {
    let config = match t.choice.as_ref().filter(|_| !t.defs.is_empty())? {
        ToolChoice::Auto => json!({"mode": "AUTO"}),
        ToolChoice::None => json!({"mode": "NONE"}),
        ToolChoice::Required => json!({"mode": "ANY"}),
        ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    };
    Some(json!({"functionCallingConfig": config}))
}

/// A tool's answer as a `functionResponse`: a JSON object is the response
/// itself, anything else its `output` (the key Gemini reads for one).
fn call_result(req: &ChatRequest, id: &str, content: &str) -> WirePart {
    let response = match serde_json::from_str::<Value>(content) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"output": content}),
    };
    WirePart {
        function_response: Some(WireCallResult {
            id: Some(id.to_owned()),
            // The front checked every result answers an earlier call.
            name: req.called(id).unwrap_or_default().to_owned(),
            response,
        }),
        ..WirePart::default()
    }
}

/// The turns as `contents`: the assistant is `model`, everyone else `user`;
/// tool calls are `functionCall` parts, and consecutive tool results one
/// user turn of `functionResponse` parts.
fn contents(req: &ChatRequest) -> Vec<WireContent> {
    let mut out: Vec<WireContent> = Vec::new();
    let mut results_open = false;
    for m in req.turns() {
        if let Some(id) = &m.tool_call_id {
            let part = call_result(req, id, &m.content);
            match out.last_mut() {
                Some(last) if results_open => last.parts.push(part),
                _ => out.push(WireContent {
                    role: Some("user".into()),
                    parts: vec![part],
                }),
            }
            results_open = true;
            continue;
        }
        results_open = false;
        out.push(turn(m));
    }
    out
}

/// A content part: images go inline (routing keeps `http(s)` image URLs
/// away from Gemini, which takes no URL but its own files').
fn part(p: &Part) -> WirePart {
    match p {
        Part::Text(t) => WirePart::text(t.clone()),
        Part::Image { url, .. } => match data_url(url) {
            Some((mime, data)) => WirePart {
                inline_data: Some(WireBlob {
                    mime_type: mime.to_owned(),
                    data: data.to_owned(),
                }),
                ..WirePart::default()
            },
            None => WirePart::text(url.clone()),
        },
    }
}

fn turn(m: &ChatMessage) -> WireContent {
    let role = if m.role == "assistant" {
        "model"
    } else {
        "user"
    };
    if !m.parts.is_empty() {
        return WireContent {
            role: Some(role.into()),
            parts: m.parts.iter().map(part).collect(),
        };
    }
    let text = (!m.content.is_empty() || m.tool_calls.is_empty())
        .then(|| WirePart::text(m.content.clone()));
    let calls = m.tool_calls.iter().map(|c| WirePart {
        function_call: Some(WireCall {
            id: Some(c.id.clone()),
            name: c.name.clone(),
            // The front checked the arguments are JSON.
            args: serde_json::from_str(&c.arguments).unwrap_or(Value::Null),
        }),
        ..WirePart::default()
    });
    WireContent {
        role: Some(role.into()),
        parts: text.into_iter().chain(calls).collect(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u32,
    candidates_token_count: Option<u32>,
    #[serde(default)]
    cached_content_token_count: u32,
    #[serde(default)]
    thoughts_token_count: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_token_count,
            // Gemini counts thoughts apart from the answer; OpenAI (and the
            // bill) counts them as completion tokens.
            completion_tokens: u
                .candidates_token_count
                .unwrap_or(0)
                .saturating_add(u.thoughts_token_count),
            cached_tokens: u.cached_content_token_count,
            reasoning_tokens: u.thoughts_token_count,
            // Implicit caching bills no writes (explicit caches are not used).
            cache_write_tokens: 0,
        }
    }
}

/// Gemini's finish reasons in OpenAI's vocabulary, which our API reports.
fn finish_reason(r: Option<&str>) -> String {
    match r {
        None | Some("STOP") => "stop",
        Some("MAX_TOKENS") => "length",
        Some("SAFETY") | Some("RECITATION") | Some("BLOCKLIST") | Some("PROHIBITED_CONTENT") => {
            "content_filter"
        }
        Some(other) => return other.to_ascii_lowercase(),
    }
    .to_owned()
}

fn text_of(c: &WireCandidate) -> String {
    c.content
        .as_ref()
        .map(|c| c.parts.iter().filter_map(|p| p.text.as_deref()).collect())
        .unwrap_or_default()
}

fn calls_of(c: &WireCandidate) -> impl Iterator<Item = ToolCall> + '_ {
    c.content
        .iter()
        .flat_map(|c| &c.parts)
        .filter_map(|p| p.function_call.as_ref().map(WireCall::call))
}

/// Gemini finishes a turn that calls functions with `STOP`; OpenAI says
/// `tool_calls`.
fn finish_with_calls(reason: String, called: bool) -> String {
    if called && reason == "stop" {
        "tool_calls".into()
    } else {
        reason
    }
}

/// A client for the Gemini API; cheap to clone.
#[derive(Clone)]
pub struct GeminiClient {
    http: reqwest::Client,
}

impl GeminiClient {
    pub fn new(http: reqwest::Client) -> Self {
        GeminiClient { http }
    }

    fn request(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        stream: bool,
    ) -> reqwest::RequestBuilder {
        let url = if stream {
            format!(
                "{}/models/{upstream}:streamGenerateContent?alt=sse",
                provider.base_url
            )
        } else {
            format!("{}/models/{upstream}:generateContent", provider.base_url)
        };
        let mut rb = self.http.post(url).json(&body(req));
        if let Some(key) = &provider.api_key {
            rb = rb.header("x-goog-api-key", key);
        }
        rb
    }
}

/// The request body (the model and whether to stream are in the URL).
pub(super) fn body(req: &ChatRequest) -> impl Serialize + '_ {
    WireRequest {
        system_instruction: req.system().map(|s| WireContent {
            role: None,
            parts: vec![WirePart::text(s)],
        }),
        contents: contents(req),
        tools: tools(&req.tools),
        tool_config: tool_config(&req.tools),
        generation_config: WireGenConfig {
            max_output_tokens: req.max_tokens,
            temperature: req.temperature,
            stop_sequences: &req.stop,
            top_p: req.sampling.top_p,
            top_k: req.sampling.top_k,
            seed: req.sampling.seed,
            frequency_penalty: req.sampling.frequency_penalty,
            presence_penalty: req.sampling.presence_penalty,
            // JSON mode natively; a schema as JSON Schema, unchanged.
            response_mime_type: req.response_format.as_ref().map(|_| "application/json"),
            response_json_schema: req.response_format.as_ref().map(|f| f.schema()),
            thinking_config: super::reasoning::budget(&req.sampling)
                .map(|b| json!({"thinkingBudget": b})),
        },
    }
}

/// A whole answer's body, read.
pub(super) fn answer(body: &[u8]) -> Result<ChatResponse, DispatchError> {
    let wire: WireResponse = http::decode(body)?;
    let c = wire
        .candidates
        .first()
        .ok_or_else(|| DispatchError::Malformed("no candidates".into()))?;
    let tool_calls: Vec<ToolCall> = calls_of(c).collect();
    Ok(ChatResponse {
        content: text_of(c),
        finish_reason: finish_with_calls(
            finish_reason(c.finish_reason.as_deref()),
            !tool_calls.is_empty(),
        ),
        tool_calls,
        usage: wire.usage_metadata.map(Usage::from),
    })
}

impl Adapter for GeminiClient {
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

/// Every SSE event is a whole `GenerateContentResponse` carrying the next
/// text; the one with a `finishReason` is the last (Gemini sends no separate
/// terminator), and the latest `usageMetadata` holds the totals.
#[derive(Default)]
pub(super) struct Parser {
    finish: Option<String>,
    usage: Option<Usage>,
    /// Function calls so far: each arrives whole, and is the next index.
    calls: u32,
}

impl SseParser for Parser {
    const TERMINATOR: &'static str = "a finishReason";

    fn feed(
        &mut self,
        _event: Option<&str>,
        data: &str,
    ) -> Result<(Vec<StreamEvent>, bool), DispatchError> {
        let wire: WireResponse = serde_json::from_str(data)
            .map_err(|e| DispatchError::Malformed(format!("bad stream chunk: {e}")))?;
        if let Some(u) = wire.usage_metadata {
            self.usage = Some(u.into());
        }
        let mut out = Vec::new();
        let mut done = false;
        for c in &wire.candidates {
            let text = text_of(c);
            if !text.is_empty() {
                out.push(StreamEvent::Delta(text));
            }
            for call in calls_of(c) {
                out.push(StreamEvent::ToolCall(ToolCallDelta {
                    index: self.calls,
                    id: Some(call.id),
                    name: Some(call.name),
                    arguments: call.arguments,
                }));
                self.calls += 1;
            }
            if let Some(r) = &c.finish_reason {
                self.finish = Some(r.clone());
                done = true;
            }
        }
        Ok((out, done))
    }

    fn finish(&mut self) -> StreamEvent {
        StreamEvent::Done {
            finish_reason: finish_with_calls(finish_reason(self.finish.as_deref()), self.calls > 0),
            usage: self.usage.take(),
        }
    }
}
