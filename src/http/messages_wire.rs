//! The Anthropic Messages request as the `anthropic` SDKs send it, and its
//! conversion into the engine's `CompleteInput` (the same translation layer
//! the OpenAI front and gRPC feed, so any upstream protocol can answer it).
//!
//! Fields we honour: `model` (a catalog model or `switchyard/auto`),
//! `messages` (text, `image` by base64 or URL, `tool_use`, `tool_result`
//! with text content and `is_error`), `system` (a string or text blocks),
//! `max_tokens` (required, as Anthropic requires it), `stop_sequences`,
//! `temperature`, `top_p`, `top_k`, `tools` (custom tools with
//! `input_schema`), `tool_choice` (`auto`, `any`, `tool`, `none`, and
//! `disable_parallel_tool_use`), `thinking` (`enabled` with its budget, or
//! `disabled`), `metadata.user_id`, `stream`, `service_tier` (`auto`,
//! `standard_only`), and our `switchyard` object. `cache_control` markers
//! are accepted and not forwarded (docs/wire-conformance.md). Anything else
//! is refused by name with a 400, as Anthropic refuses extra inputs.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::errors::{ApiError, bad_json};
use super::wire::{Extension, pinned_model};
use crate::config::unknown_key;
use crate::dispatch::{ChatMessage, Part, Sampling, Tool, ToolCall, ToolChoice, Tools};
use crate::engine::CompleteInput;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesBody {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub system: Option<Content>,
    pub stop_sequences: Option<Vec<String>>,
    pub stream: Option<bool>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub tools: Option<Vec<WireTool>>,
    pub tool_choice: Option<WireToolChoice>,
    pub thinking: Option<Thinking>,
    pub metadata: Option<Metadata>,
    pub service_tier: Option<String>,
    pub switchyard: Option<Extension>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// A content block: its fields by `type` (checked in [`blocks`]).
#[derive(Debug, Deserialize)]
pub struct Block {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub source: Option<Value>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub input: Option<Value>,
    pub tool_use_id: Option<String>,
    pub content: Option<Content>,
    pub is_error: Option<bool>,
    /// A prompt-caching marker: accepted, not forwarded.
    #[allow(dead_code)]
    pub cache_control: Option<Value>,
    pub citations: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTool {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub input_schema: Option<Value>,
    #[allow(dead_code)]
    pub cache_control: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: String,
    pub budget_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub user_id: Option<String>,
}

/// Parses a request body; an unknown field is refused by name.
pub fn parse(body: &[u8]) -> Result<MessagesBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| match unknown_key(&e.to_string()) {
        Some(name) => ApiError::unsupported(&name, "Extra inputs are not permitted"),
        None => bad_json(e),
    })
}

impl MessagesBody {
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Converts into the engine's input; the engine validates values further.
    pub fn into_input(self, headers: &HeaderMap) -> Result<CompleteInput, ApiError> {
        if headers.contains_key("anthropic-beta") {
            return Err(ApiError::unsupported(
                "anthropic-beta",
                "beta features are not supported; send the request without the header",
            ));
        }
        if let Some(t) = self
            .service_tier
            .as_deref()
            .filter(|t| !matches!(*t, "auto" | "standard_only"))
        {
            return Err(ApiError::invalid(
                "service_tier",
                format!("{t:?} is not one of auto, standard_only"),
            ));
        }
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if let Some(system) = self.system {
            let text = text_only(system, "system")?;
            messages.push(ChatMessage::text("system", text));
        }
        for (i, m) in self.messages.into_iter().enumerate() {
            turn(i, m, &mut messages)?;
        }
        let tools = tools(self.tools, self.tool_choice)?;
        let user = self
            .metadata
            .and_then(|m| m.user_id)
            .filter(|u| !u.is_empty());
        let mut metadata = BTreeMap::new();
        if let Some(u) = &user {
            metadata.insert("user".to_owned(), u.clone());
        }
        let ext = self.switchyard.unwrap_or_default();
        let deadline_ms = ext.deadline_ms(headers)?;
        let mut route = ext.route_input(headers, metadata)?;
        route.messages = messages;
        Ok(CompleteInput {
            route,
            model: pinned_model(&self.model)?,
            max_tokens: Some(self.max_tokens),
            max_completion_tokens: false,
            temperature: self.temperature,
            deadline_ms,
            stop: self.stop_sequences.unwrap_or_default(),
            sampling: Sampling {
                top_p: self.top_p,
                top_k: self.top_k,
                reasoning_budget: thinking(self.thinking)?,
                ..Sampling::default()
            },
            user,
            tools,
            response_format: None,
            // Set from the headers with the key (`chat::keyed`).
            bypass_cache: false,
        })
    }
}

/// `thinking`: a budget when enabled, nothing when disabled.
fn thinking(t: Option<Thinking>) -> Result<Option<u32>, ApiError> {
    let Some(t) = t else { return Ok(None) };
    match (t.kind.as_str(), t.budget_tokens) {
        ("enabled", Some(b)) => Ok(Some(b)),
        ("enabled", None) => Err(ApiError::invalid(
            "thinking.budget_tokens",
            "Field required",
        )),
        ("disabled", _) => Ok(None),
        (other, _) => Err(ApiError::invalid(
            "thinking.type",
            format!("{other:?} is not one of enabled, disabled"),
        )),
    }
}

/// The tools and the choice, in our terms.
fn tools(defs: Option<Vec<WireTool>>, choice: Option<WireToolChoice>) -> Result<Tools, ApiError> {
    let defs = defs
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t.kind.as_deref() {
            None | Some("custom") => Ok(Tool {
                name: t.name,
                description: t.description,
                parameters: t.input_schema,
                strict: None,
            }),
            Some(other) => Err(ApiError::unsupported(
                &format!("tools[{i}].type"),
                &format!("{other:?} tools (run by Anthropic) are not supported; only custom tools"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (choice, parallel) = match choice {
        None => (None, None),
        Some(c) => {
            let choice = match (c.kind.as_str(), c.name) {
                ("auto", _) => ToolChoice::Auto,
                ("any", _) => ToolChoice::Required,
                ("none", _) => ToolChoice::None,
                ("tool", Some(name)) => ToolChoice::Function(name),
                ("tool", None) => {
                    return Err(ApiError::invalid("tool_choice.name", "Field required"));
                }
                (other, _) => {
                    return Err(ApiError::invalid(
                        "tool_choice.type",
                        format!("{other:?} is not one of auto, any, tool, none"),
                    ));
                }
            };
            let parallel = c.disable_parallel_tool_use.map(|d| !d);
            (Some(choice), parallel)
        }
    };
    Ok(Tools {
        defs,
        choice,
        parallel,
    })
}

/// One Anthropic turn as our messages: a user turn's `tool_result` blocks
/// become `tool` messages (in order, before the rest of the turn); an
/// assistant turn's `tool_use` blocks its tool calls.
fn turn(i: usize, m: Message, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    let blocks = match m.content {
        Content::Text(t) => {
            out.push(ChatMessage::text(role(&m.role, &field)?, t));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    let role = role(&m.role, &field)?;
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let at = |f: &str| field(&format!("content[{j}].{f}"));
        if b.citations.as_ref().is_some_and(|c| !c.is_null()) {
            return Err(ApiError::unsupported(
                &at("citations"),
                "citations are not supported",
            ));
        }
        match (role, b.kind.as_str()) {
            (_, "text") => parts
                .push(Part::Text(b.text.ok_or_else(|| {
                    ApiError::invalid(at("text"), "Field required")
                })?)),
            ("user", "image") => parts.push(image(b.source, &at)?),
            ("user", "tool_result") => {
                let id = b
                    .tool_use_id
                    .ok_or_else(|| ApiError::invalid(at("tool_use_id"), "Field required"))?;
                let mut text = match b.content {
                    Some(c) => text_only(c, &at("content"))?,
                    None => String::new(),
                };
                // Only Anthropic has the flag: the text says it for all.
                if b.is_error == Some(true) {
                    text = format!("Error: {text}");
                }
                out.push(ChatMessage {
                    role: "tool".into(),
                    content: text,
                    tool_call_id: Some(id),
                    ..ChatMessage::default()
                });
            }
            ("assistant", "tool_use") => {
                let (Some(id), Some(name)) = (b.id, b.name) else {
                    return Err(ApiError::invalid(
                        at("id"),
                        "a tool_use block needs id and name",
                    ));
                };
                let input = b.input.unwrap_or_else(|| Value::Object(Default::default()));
                calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                });
            }
            (_, other) => {
                return Err(ApiError::unsupported(
                    &at("type"),
                    &format!("{other:?} blocks are not supported in a {role} turn"),
                ));
            }
        }
    }
    if parts.is_empty() && calls.is_empty() {
        return Ok(()); // a turn of tool results only
    }
    let (content, parts) = crate::dispatch::from_parts(parts);
    out.push(ChatMessage {
        role: role.into(),
        content,
        parts,
        tool_calls: calls,
        ..ChatMessage::default()
    });
    Ok(())
}

fn role(role: &str, field: &dyn Fn(&str) -> String) -> Result<&'static str, ApiError> {
    match role {
        "user" => Ok("user"),
        "assistant" => Ok("assistant"),
        other => Err(ApiError::invalid(
            field("role"),
            format!("{other:?} is not one of user, assistant"),
        )),
    }
}

/// An image block's source as a URL: base64 data as a `data:` URL.
fn image(source: Option<Value>, at: &dyn Fn(&str) -> String) -> Result<Part, ApiError> {
    let s = source.unwrap_or(Value::Null);
    let str_of = |k: &str| s.get(k).and_then(Value::as_str);
    let url = match str_of("type") {
        Some("base64") => match (str_of("media_type"), str_of("data")) {
            (Some(mt), Some(data)) => format!("data:{mt};base64,{data}"),
            _ => {
                return Err(ApiError::invalid(
                    at("source"),
                    "a base64 source needs media_type and data",
                ));
            }
        },
        Some("url") => str_of("url")
            .ok_or_else(|| ApiError::invalid(at("source.url"), "Field required"))?
            .to_owned(),
        _ => {
            return Err(ApiError::invalid(
                at("source.type"),
                "must be \"base64\" or \"url\"",
            ));
        }
    };
    Ok(Part::Image { url, detail: None })
}

/// The text of a string or of text blocks (system prompts, tool results);
/// any other block is refused by name.
fn text_only(c: Content, field: &str) -> Result<String, ApiError> {
    match c {
        Content::Text(t) => Ok(t),
        Content::Blocks(blocks) => {
            let mut text = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.into_iter().enumerate() {
                match (b.kind.as_str(), b.text) {
                    ("text", Some(t)) => text.push(t),
                    (kind, _) => {
                        return Err(ApiError::unsupported(
                            &format!("{field}[{j}].type"),
                            &format!("only text blocks are supported here, not {kind:?}"),
                        ));
                    }
                }
            }
            Ok(text.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> Result<CompleteInput, ApiError> {
        parse(v.to_string().as_bytes())?.into_input(&HeaderMap::new())
    }

    #[test]
    fn a_tool_round_trip_becomes_our_messages() {
        let i = input(json!({
            "model": "switchyard/auto", "max_tokens": 64,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"q": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
                    {"type": "text", "text": "and tomorrow?"}]}
            ],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "metadata": {"user_id": "u1"}, "top_k": 3
        }))
        .unwrap();
        let m = &i.route.messages;
        assert_eq!(
            (m[0].role.as_str(), m[0].content.as_str()),
            ("system", "be brief")
        );
        assert_eq!(m[2].tool_calls[0].arguments, r#"{"q":"Paris"}"#);
        assert_eq!(m[2].content, "checking");
        assert_eq!(
            (
                m[3].role.as_str(),
                m[3].tool_call_id.as_deref(),
                m[3].content.as_str()
            ),
            ("tool", Some("toolu_1"), "21C")
        );
        assert_eq!(m[4].content, "and tomorrow?");
        assert_eq!(i.model, None);
        assert_eq!(i.tools.choice, Some(ToolChoice::Required));
        assert_eq!(i.tools.parallel, Some(false));
        assert_eq!(i.sampling.reasoning_budget, Some(2000));
        assert_eq!(i.sampling.top_k, Some(3));
        assert_eq!(i.user.as_deref(), Some("u1"));
    }

    #[test]
    fn what_we_cannot_carry_is_refused_by_name() {
        for (extra, param) in [
            (json!({"container": "c"}), "container"),
            (
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools[0].type",
            ),
            (json!({"thinking": {"type": "sometimes"}}), "thinking.type"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "system", "content": "x"}]}),
                "messages[0].role",
            ),
        ] {
            let mut v = json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let e = input(v).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        }
        let e = input(json!({"model": "m", "messages": []})).unwrap_err();
        assert!(e.message.contains("max_tokens"), "{}", e.message);
    }
}
