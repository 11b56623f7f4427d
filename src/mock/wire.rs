//! The mock's three wire protocols: reading requests into [`MockRequest`]
//! and writing answers, errors and SSE streams the way each provider does.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde_json::{Value, json};

use super::{MockRequest, ToolsAllowed};
use crate::tokens::{estimate_prompt_tokens, estimate_text_tokens};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    OpenAi,
    Anthropic,
    Gemini,
}

/// Text of a string or of an array of `{text}` blocks.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text")?.as_str())
            .collect(),
        _ => String::new(),
    }
}

pub(super) fn parse(
    proto: Proto,
    v: &Value,
    gemini_call: Option<(String, bool)>,
) -> Result<MockRequest, String> {
    let str_field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let max = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let turns = |key: &str, content: &str| -> Result<Vec<(String, String)>, String> {
        v.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("missing {key}"))?
            .iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                Ok((
                    role.to_owned(),
                    text(m.get(content).unwrap_or(&Value::Null)),
                ))
            })
            .collect()
    };
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let (tools, tool_choice, tool_results) = tool_use(proto, v);
    let json = json_asked(proto, v);
    match proto {
        Proto::OpenAi => Ok(MockRequest {
            model: str_field("model").ok_or("missing model")?,
            messages: turns("messages", "content")?,
            stream,
            max_tokens: max("/max_completion_tokens").or(max("/max_tokens")),
            tools,
            tool_choice,
            tool_results,
            json,
        }),
        Proto::Anthropic => {
            let mut messages = Vec::new();
            if let Some(s) = v.get("system") {
                messages.push(("system".to_owned(), text(s)));
            }
            messages.extend(turns("messages", "content")?);
            Ok(MockRequest {
                model: str_field("model").ok_or("missing model")?,
                messages,
                stream,
                max_tokens: Some(max("/max_tokens").ok_or("max_tokens is required")?),
                tools,
                tool_choice,
                tool_results,
                json,
            })
        }
        Proto::Gemini => {
            let (model, stream) = gemini_call.ok_or("no model in the path")?;
            let mut messages = Vec::new();
            if let Some(parts) = v.pointer("/systemInstruction/parts") {
                messages.push(("system".to_owned(), text(parts)));
            }
            messages.extend(turns("contents", "parts")?);
            Ok(MockRequest {
                model,
                messages,
                stream,
                max_tokens: max("/generationConfig/maxOutputTokens"),
                tools,
                tool_choice,
                tool_results,
                json,
            })
        }
    }
}

type ToolUse = (Vec<(String, Option<Value>)>, ToolsAllowed, Vec<String>);

/// The schema of a JSON answer the protocol asks for natively (Anthropic
/// has no such field).
fn json_asked(proto: Proto, v: &Value) -> Option<Value> {
    let any = || json!({"type": "object"});
    match proto {
        Proto::OpenAi => match v.pointer("/response_format/type").and_then(Value::as_str) {
            Some("json_object") => Some(any()),
            Some("json_schema") => Some(
                v.pointer("/response_format/json_schema/schema")
                    .cloned()
                    .unwrap_or_else(any),
            ),
            _ => None,
        },
        Proto::Anthropic => None,
        Proto::Gemini => {
            let g = v.get("generationConfig")?;
            (g["responseMimeType"] == "application/json")
                .then(|| g.get("responseJsonSchema").cloned().unwrap_or_else(any))
        }
    }
}

/// The functions offered, what the tool choice allows, and the results the
/// last turn carries, read the protocol's way.
fn tool_use(proto: Proto, v: &Value) -> ToolUse {
    let names = |list: Option<&Value>, key: &str, schema: &str| -> Vec<(String, Option<Value>)> {
        list.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let name = t.pointer(key)?.as_str()?.to_owned();
                Some((name, t.pointer(schema).cloned()))
            })
            .collect()
    };
    let last = |key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or(Value::Null)
    };
    match proto {
        Proto::OpenAi => {
            let choice = match v.get("tool_choice") {
                Some(c) if c == "none" => ToolsAllowed::None,
                Some(c) if c == "required" => ToolsAllowed::Required,
                Some(c) => c
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .map_or(ToolsAllowed::Any, |n| ToolsAllowed::Only(n.to_owned())),
                None => ToolsAllowed::Any,
            };
            let messages = v.get("messages").and_then(Value::as_array);
            let results = messages
                .into_iter()
                .flat_map(|m| m.iter().rev().take_while(|m| m["role"] == "tool"))
                .map(|m| text(&m["content"]))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let tools = names(v.get("tools"), "/function/name", "/function/parameters");
            (tools, choice, results)
        }
        Proto::Anthropic => {
            let choice = match v.pointer("/tool_choice/type").and_then(Value::as_str) {
                Some("none") => ToolsAllowed::None,
                Some("any") => ToolsAllowed::Required,
                Some("tool") => ToolsAllowed::Only(
                    v.pointer("/tool_choice/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                ),
                _ => ToolsAllowed::Any,
            };
            let results = last("messages")["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| text(&b["content"]))
                .collect();
            (
                names(v.get("tools"), "/name", "/input_schema"),
                choice,
                results,
            )
        }
        Proto::Gemini => {
            let config = v.pointer("/toolConfig/functionCallingConfig");
            let choice = match config.and_then(|c| c["mode"].as_str()) {
                Some("NONE") => ToolsAllowed::None,
                mode => match config.and_then(|c| c.pointer("/allowedFunctionNames/0")) {
                    Some(Value::String(n)) => ToolsAllowed::Only(n.clone()),
                    _ if mode == Some("ANY") => ToolsAllowed::Required,
                    _ => ToolsAllowed::Any,
                },
            };
            let results = last("contents")["parts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("functionResponse"))
                .map(|r| r["response"].to_string())
                .collect();
            let decls = v.pointer("/tools/0/functionDeclarations");
            (
                names(decls, "/name", "/parametersJsonSchema"),
                choice,
                results,
            )
        }
    }
}

/// The images a request carries, each checked for the fields its protocol
/// requires (a real provider refuses one without them).
pub(super) fn images(proto: Proto, v: &Value) -> Result<usize, String> {
    let (turns, blocks) = match proto {
        Proto::OpenAi | Proto::Anthropic => ("messages", "content"),
        Proto::Gemini => ("contents", "parts"),
    };
    let mut n = 0;
    for t in v.get(turns).and_then(Value::as_array).into_iter().flatten() {
        for b in t[blocks].as_array().into_iter().flatten() {
            let ok = match proto {
                Proto::OpenAi if b["type"] == "image_url" => b["image_url"]["url"].is_string(),
                Proto::Anthropic if b["type"] == "image" => {
                    let s = &b["source"];
                    (s["type"] == "base64" && s["media_type"].is_string() && s["data"].is_string())
                        || (s["type"] == "url" && s["url"].is_string())
                }
                Proto::Gemini if b.get("inlineData").is_some() => {
                    b["inlineData"]["mimeType"].is_string() && b["inlineData"]["data"].is_string()
                }
                _ => continue,
            };
            if !ok {
                return Err(format!("malformed image: {b}"));
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Refuses tool traffic a real provider would: a result that answers no
/// earlier call (OpenAI, Anthropic: by id; Gemini: by a declared name).
pub(super) fn check_tool_traffic(proto: Proto, v: &Value) -> Result<(), String> {
    let list = |key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut called: Vec<String> = Vec::new();
    match proto {
        Proto::OpenAi => {
            for m in list("messages") {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    called.push(c["id"].as_str().unwrap_or_default().to_owned());
                }
                if m["role"] == "tool" {
                    let id = m["tool_call_id"].as_str().unwrap_or_default();
                    if !called.iter().any(|c| c == id) {
                        return Err(format!("tool_call_id {id:?} answers no tool call"));
                    }
                }
            }
        }
        Proto::Anthropic => {
            for m in list("messages") {
                for b in m["content"].as_array().into_iter().flatten() {
                    match b["type"].as_str() {
                        Some("tool_use") => {
                            called.push(b["id"].as_str().unwrap_or_default().to_owned())
                        }
                        Some("tool_result") => {
                            let id = b["tool_use_id"].as_str().unwrap_or_default();
                            if !called.iter().any(|c| c == id) {
                                return Err(format!("tool_use_id {id:?} answers no tool_use"));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Proto::Gemini => {
            let (declared, _, _) = tool_use(proto, v);
            for c in list("contents") {
                for p in c["parts"].as_array().into_iter().flatten() {
                    if let Some(r) = p.get("functionResponse") {
                        let name = r["name"].as_str().unwrap_or_default();
                        if !declared.iter().any(|(d, _)| d == name) {
                            return Err(format!("functionResponse names {name:?}, not declared"));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The answer's text, tool calls and usage.
pub(super) struct Answer {
    content: String,
    /// (name, arguments as JSON text).
    calls: Vec<(String, String)>,
    usage: Option<(u32, u32, u32)>,
    /// Thinking tokens reported beside the answer's.
    pub(super) reasoning: u32,
    /// Prompt tokens reported written to the cache (only Anthropic reports them).
    pub(super) cache_write: u32,
}

impl Answer {
    pub(super) fn new(
        base: &str,
        echo: &str,
        req: &MockRequest,
        with_usage: bool,
        cached: u32,
    ) -> Self {
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
        let usage = with_usage.then(|| {
            let p = estimate_prompt_tokens(req.messages.iter().map(|(_, t)| t.as_str()));
            (p, estimate_text_tokens(&content), cached.min(p))
        });
        Answer {
            content,
            calls: Vec::new(),
            usage,
            reasoning: 0,
            cache_write: 0,
        }
    }

    /// The prompt tokens reported written to the cache: at most those not read from it.
    fn written(&self, prompt: u32, cached: u32) -> u32 {
        self.cache_write.min(prompt - cached)
    }

    /// Answers with JSON matching `schema` instead of the echo.
    pub(super) fn json(&mut self, schema: &Value, echo: &str) {
        self.content = super::json::instance(schema, echo, 0).to_string();
        if let Some(u) = &mut self.usage {
            u.1 = estimate_text_tokens(&self.content);
        }
    }

    /// Answers with `n` calls instead of text, if tools are offered and
    /// allowed and the last turn is not already their results.
    pub(super) fn call_tools(&mut self, req: &MockRequest, n: u32, echo: &str) {
        if req.tools.is_empty() || !req.tool_results.is_empty() {
            return;
        }
        let tools: Vec<&(String, Option<Value>)> = match &req.tool_choice {
            ToolsAllowed::None => return,
            ToolsAllowed::Only(name) => req.tools.iter().filter(|(n, _)| n == name).collect(),
            ToolsAllowed::Any | ToolsAllowed::Required => req.tools.iter().collect(),
        };
        if tools.is_empty() {
            return;
        }
        // Arguments match the tool's schema; without properties, a query and
        // the call's index.
        self.calls = (0..n as usize)
            .map(|i| {
                let (name, schema) = tools[i % tools.len()];
                let described = schema
                    .as_ref()
                    .filter(|s| s.get("properties").is_some_and(|p| p != &json!({})));
                let args = match described {
                    Some(s) => super::json::instance(s, echo, i),
                    None => json!({"query": echo, "n": i}),
                };
                (name.clone(), args.to_string())
            })
            .collect();
        self.content.clear();
        if let Some(u) = &mut self.usage {
            u.1 = self
                .calls
                .iter()
                .map(|(n, a)| estimate_text_tokens(n) + estimate_text_tokens(a))
                .sum();
        }
    }
}

/// Usage the protocol's way; `r` thinking tokens are part of the output
/// for OpenAI (detailed) and Anthropic, apart from it for Gemini.
fn usage_json(proto: Proto, a: &Answer, (p, c, cached): (u32, u32, u32)) -> Value {
    let r = a.reasoning;
    match proto {
        Proto::OpenAi => json!({"prompt_tokens": p, "completion_tokens": c + r,
                                "total_tokens": p + c + r,
                                "prompt_tokens_details": {"cached_tokens": cached},
                                "completion_tokens_details": {"reasoning_tokens": r}}),
        // Anthropic counts cache reads and writes apart from input_tokens.
        Proto::Anthropic => {
            let written = a.written(p, cached);
            json!({"input_tokens": p - cached - written, "output_tokens": c + r,
                   "cache_read_input_tokens": cached, "cache_creation_input_tokens": written})
        }
        Proto::Gemini => json!({"promptTokenCount": p, "candidatesTokenCount": c,
                                "thoughtsTokenCount": r, "totalTokenCount": p + c + r,
                                "cachedContentTokenCount": cached}),
    }
}

/// Each protocol's id for call `i`: Gemini gives none.
fn call_id(proto: Proto, i: usize) -> Option<String> {
    match proto {
        Proto::OpenAi => Some(format!("call_mock_{i}")),
        Proto::Anthropic => Some(format!("toolu_mock_{i}")),
        Proto::Gemini => None,
    }
}

fn args(a: &str) -> Value {
    serde_json::from_str(a).unwrap_or(Value::Null)
}

fn plain_json(proto: Proto, model: &str, a: &Answer) -> Value {
    let calls = a.calls.iter().enumerate();
    let mut body = match proto {
        Proto::OpenAi if !a.calls.is_empty() => {
            let calls: Vec<Value> = calls
                .map(|(i, (name, arguments))| {
                    json!({"id": call_id(proto, i), "type": "function",
                    "function": {"name": name, "arguments": arguments}})
                })
                .collect();
            json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                             "tool_calls": calls}, "finish_reason": "tool_calls"}],
            })
        }
        Proto::OpenAi => json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": a.content},
                         "finish_reason": "stop"}],
        }),
        Proto::Anthropic if !a.calls.is_empty() => {
            let blocks: Vec<Value> = calls
                .map(|(i, (name, arguments))| {
                    json!({"type": "tool_use", "id": call_id(proto, i),
                    "name": name, "input": args(arguments)})
                })
                .collect();
            json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": blocks, "stop_reason": "tool_use",
            })
        }
        Proto::Anthropic => json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": a.content}], "stop_reason": "end_turn",
        }),
        Proto::Gemini => json!({
            "candidates": [{"content": {"role": "model", "parts": gemini_parts(a)},
                            "finishReason": "STOP", "index": 0}],
        }),
    };
    if let Some(u) = a.usage {
        let key = if proto == Proto::Gemini {
            "usageMetadata"
        } else {
            "usage"
        };
        body[key] = usage_json(proto, a, u);
    }
    body
}

fn gemini_parts(a: &Answer) -> Value {
    if a.calls.is_empty() {
        return json!([{"text": a.content}]);
    }
    a.calls
        .iter()
        .map(|(name, arguments)| json!({"functionCall": {"name": name, "args": args(arguments)}}))
        .collect()
}

pub(super) fn plain(proto: Proto, model: &str, a: &Answer) -> Response {
    axum::Json(plain_json(proto, model, a)).into_response()
}

pub(super) fn error(proto: Proto, status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match proto {
        Proto::OpenAi => {
            json!({"error": {"message": message, "type": "mock_error", "code": status}})
        }
        Proto::Anthropic => {
            json!({"type": "error", "error": {"type": "mock_error", "message": message}})
        }
        Proto::Gemini => {
            json!({"error": {"code": status, "message": message, "status": "MOCK_ERROR"}})
        }
    };
    (code, axum::Json(body)).into_response()
}

/// The 400 each protocol answers a prompt of `prompt` tokens over a
/// context of `context`, in its own words.
pub(super) fn context_exceeded(proto: Proto, prompt: u32, context: u32) -> Response {
    let message = match proto {
        Proto::OpenAi => format!(
            "This model's maximum context length is {context} tokens. However, your messages resulted in {prompt} tokens."
        ),
        Proto::Anthropic => format!("prompt is too long: {prompt} tokens > {context} maximum"),
        Proto::Gemini => format!(
            "The input token count ({prompt}) exceeds the maximum number of tokens allowed ({context})."
        ),
    };
    error(proto, 400, &message)
}

/// The first of `rejects` the request sets (at the top level, or in
/// Gemini's `generationConfig`), as the protocol refuses it.
pub(super) fn rejected(proto: Proto, v: &Value, rejects: &[String]) -> Option<Response> {
    let name = rejects.iter().find(|r| {
        v.get(r.as_str()).is_some() || v.pointer(&format!("/generationConfig/{r}")).is_some()
    })?;
    let message = match proto {
        Proto::OpenAi => {
            format!("Unsupported parameter: '{name}' is not supported with this model.")
        }
        Proto::Anthropic => format!("{name}: Extra inputs are not permitted"),
        Proto::Gemini => {
            format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
        }
    };
    Some(error(proto, 400, &message))
}

pub(super) fn rate_limited(proto: Proto, retry_after: Duration) -> Response {
    let mut resp = error(proto, 429, "rate limited (scripted)");
    let secs = format!("{}", retry_after.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&secs) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// Headers, then the connection drops: what a reset looks like to a client.
pub(super) fn reset() -> Response {
    let body = Body::from_stream(stream::once(async {
        Err::<bytes::Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "scripted reset",
        ))
    }));
    (StatusCode::OK, body).into_response()
}

pub(super) fn bad_json() -> Response {
    (StatusCode::OK, "{\"choices\": [ this is not json").into_response()
}

/// A well-formed answer cut in half.
pub(super) fn truncated(proto: Proto, model: &str, a: &Answer) -> Response {
    let mut full = plain_json(proto, model, a).to_string();
    full.truncate(full.len() / 2);
    (StatusCode::OK, [("content-type", "application/json")], full).into_response()
}

/// A JSON text in two pieces (split inside it), as providers stream arguments.
fn halves(s: &str) -> [&str; 2] {
    let mid = (0..=s.len() / 2)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    [&s[..mid], &s[mid..]]
}

/// The answer as the protocol's SSE stream; `cut` stops after two deltas
/// without the protocol's terminator.
pub(super) fn stream(proto: Proto, model: &str, a: Answer, cut: bool, delay: Duration) -> Response {
    let words: Vec<&str> = a.content.split_inclusive(' ').collect();
    let words = if cut {
        &words[..words.len().min(2)]
    } else {
        &words[..]
    };
    let mut events: Vec<(Option<&'static str>, Value)> = Vec::new();
    match proto {
        Proto::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                       "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            };
            events.push((
                None,
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            ));
            for w in words {
                events.push((None, chunk(json!({"content": w}), Value::Null)));
            }
            // Each call: its id and name first, then its arguments in two pieces.
            for (i, (name, arguments)) in a.calls.iter().enumerate() {
                events.push((
                    None,
                    chunk(
                        json!({"tool_calls": [{"index": i, "id": call_id(proto, i),
                    "type": "function", "function": {"name": name, "arguments": ""}}]}),
                        Value::Null,
                    ),
                ));
                for piece in halves(arguments) {
                    events.push((
                        None,
                        chunk(
                            json!({"tool_calls": [{"index": i,
                        "function": {"arguments": piece}}]}),
                            Value::Null,
                        ),
                    ));
                }
            }
            if !cut {
                let finish = if a.calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                };
                events.push((None, chunk(json!({}), json!(finish))));
                if let Some(u) = a.usage {
                    events.push((None, json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                        "created": 0, "model": model, "choices": [], "usage": usage_json(proto, &a, u)})));
                }
            }
        }
        Proto::Anthropic => {
            let mut start = json!({"type": "message_start", "message": {"id": "msg_mock",
                "type": "message", "role": "assistant", "model": model, "content": []}});
            if let Some((p, _, cached)) = a.usage {
                let written = a.written(p, cached);
                start["message"]["usage"] = json!({"input_tokens": p - cached - written,
                    "output_tokens": 1, "cache_read_input_tokens": cached,
                    "cache_creation_input_tokens": written});
            }
            events.push((Some("message_start"), start));
            events.push((
                Some("content_block_start"),
                json!({"type": "content_block_start",
                "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            events.push((Some("ping"), json!({"type": "ping"})));
            for w in words {
                events.push((
                    Some("content_block_delta"),
                    json!({"type": "content_block_delta",
                    "index": 0, "delta": {"type": "text_delta", "text": w}}),
                ));
            }
            if !cut {
                events.push((
                    Some("content_block_stop"),
                    json!({"type": "content_block_stop", "index": 0}),
                ));
                // Tool calls follow the (empty) text block, one block each.
                for (i, (name, arguments)) in a.calls.iter().enumerate() {
                    let index = i + 1;
                    events.push((
                        Some("content_block_start"),
                        json!({"type": "content_block_start",
                        "index": index, "content_block": {"type": "tool_use",
                        "id": call_id(proto, i), "name": name, "input": {}}}),
                    ));
                    for piece in halves(arguments) {
                        events.push((Some("content_block_delta"), json!({"type": "content_block_delta",
                            "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
                    }
                    events.push((
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": index}),
                    ));
                }
                let stop = if a.calls.is_empty() {
                    "end_turn"
                } else {
                    "tool_use"
                };
                let mut delta = json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null}});
                if let Some((_, c, _)) = a.usage {
                    delta["usage"] = json!({"output_tokens": c + a.reasoning});
                }
                events.push((Some("message_delta"), delta));
                events.push((Some("message_stop"), json!({"type": "message_stop"})));
            }
        }
        Proto::Gemini if !a.calls.is_empty() => {
            // Gemini sends each call whole.
            let mut chunk = json!({"candidates": [{"content": {"role": "model",
                "parts": gemini_parts(&a)}, "index": 0, "finishReason": "STOP"}]});
            if let Some(u) = a.usage {
                chunk["usageMetadata"] = usage_json(proto, &a, u);
            }
            events.push((None, chunk));
        }
        Proto::Gemini => {
            let n = words.len();
            for (i, w) in words.iter().enumerate() {
                let mut chunk = json!({"candidates": [{"content": {"role": "model",
                    "parts": [{"text": w}]}, "index": 0}]});
                if !cut && i + 1 == n {
                    chunk["candidates"][0]["finishReason"] = json!("STOP");
                    if let Some(u) = a.usage {
                        chunk["usageMetadata"] = usage_json(proto, &a, u);
                    }
                }
                events.push((None, chunk));
            }
        }
    }
    let mut data: Vec<(Option<&'static str>, String)> = events
        .into_iter()
        .map(|(e, v)| (e, v.to_string()))
        .collect();
    if proto == Proto::OpenAi && !cut {
        data.push((None, "[DONE]".into()));
    }
    // The pause is between events: the first goes out at once, as a real
    // provider's first chunk does while the rest are generated.
    let events = stream::unfold(
        (data.into_iter(), true),
        move |(mut it, first)| async move {
            let (name, payload) = it.next()?;
            if !first && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut ev = Event::default().data(payload);
            if let Some(n) = name {
                ev = ev.event(n);
            }
            Some((Ok::<_, Infallible>(ev), (it, false)))
        },
    );
    Sse::new(events).into_response()
}
