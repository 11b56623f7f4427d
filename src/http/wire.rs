//! The OpenAI chat-completions request as SDKs send it, and its conversion
//! into the engine's `CompleteInput`.
//!
//! Fields we honour: `model`, `messages` (text and `image_url` parts; roles
//! `system`, `developer`, `user`, `assistant` with `tool_calls`, `tool` with
//! `tool_call_id`), `tools` (functions), `tool_choice`,
//! `parallel_tool_calls`, `response_format` (`text`, `json_object`,
//! `json_schema`), `stream`, `stream_options`, `max_tokens` /
//! `max_completion_tokens`, `temperature`, `top_p`, `seed`,
//! `frequency_penalty`, `presence_penalty`, `reasoning_effort`, `stop` (a
//! string or up to 4 strings), `user`, `metadata`, and neutral values of the
//! rest (`n: 1`, `store: false`...). Fields that would change the answer's
//! shape or meaning if ignored (`n > 1`, the deprecated `functions`,
//! `logprobs`, `logit_bias`, `audio`, non-text `modalities`, `prediction`,
//! audio and file content parts) are rejected with 400, and so is any field
//! this file does not know (as OpenAI itself does): nothing is silently
//! dropped.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::errors::{ApiError, bad_json};
use crate::config::unknown_key;
use crate::dispatch::{
    ChatMessage, Part, ResponseFormat, Sampling, Tool, ToolCall, ToolChoice, Tools,
};
use crate::engine::{CompleteInput, RouteInput};

/// The model name that asks the router to choose.
pub const AUTO_MODEL: &str = "switchyard/auto";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    pub model: String,
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub reasoning_effort: Option<String>,
    pub n: Option<u32>,
    pub user: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub switchyard: Option<Extension>,
    /// OpenRouter's ordered model list: the candidates, and the order to
    /// fall back in.
    pub models: Option<Vec<String>>,
    pub tools: Option<Vec<WireTool>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    // Parameters we refuse unless they are their neutral value.
    pub functions: Option<Vec<Value>>,
    pub response_format: Option<Value>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub stop: Option<Value>,
    pub logit_bias: Option<BTreeMap<String, Value>>,
    pub audio: Option<Value>,
    pub modalities: Option<Vec<String>>,
    pub prediction: Option<Value>,
    pub store: Option<bool>,
    pub service_tier: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WireTool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireFunction {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct WireToolCall {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub function: WireCalled,
}

#[derive(Debug, Deserialize)]
pub struct WireCalled {
    pub name: String,
    pub arguments: String,
}

/// Parses a request body. A field this file does not know is refused by
/// name, as OpenAI refuses an unrecognized argument. (`deny_unknown_fields`
/// rather than a `flatten`ed catch-all map: flattening makes serde buffer
/// the whole body first, measurably slower on the pinned path.)
pub fn parse(body: &[u8]) -> Result<ChatBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| match unknown_key(&e.to_string()) {
        Some(name) => {
            ApiError::unsupported(&name, &format!("unrecognized request argument {name:?}"))
        }
        None => bad_json(e),
    })
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct WireMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    pub tool_calls: Option<Vec<WireToolCall>>,
    pub tool_call_id: Option<String>,
    pub function_call: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Debug, Deserialize)]
pub struct WirePart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub image_url: Option<WireImage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireImage {
    pub url: String,
    pub detail: Option<String>,
}

/// Routing knobs: the `switchyard` object in the body; `x-switchyard-*`
/// headers fill whatever the body leaves unset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    pub cost_weight: Option<f64>,
    pub max_cost_usd: Option<f64>,
    pub candidates: Option<Vec<String>>,
    pub tenant: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub max_output_tokens: Option<u32>,
    pub deadline_ms: Option<u32>,
    pub session_id: Option<String>,
}

impl Extension {
    /// The routing part of a request (messages left empty) from this
    /// object, then `x-switchyard-*` headers for what it leaves unset; the
    /// conversation's id from `session_id` or the `x-session-id` header.
    pub fn route_input(
        self,
        headers: &HeaderMap,
        mut metadata: BTreeMap<String, String>,
    ) -> Result<RouteInput, ApiError> {
        metadata.extend(self.metadata.unwrap_or_default());
        let candidates = match self.candidates {
            Some(c) => c,
            None => header(headers, "x-switchyard-candidates")?
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        };
        let session_id = match self.session_id {
            Some(s) => Some(s),
            None => header(headers, "x-session-id")?.map(str::to_owned),
        };
        Ok(RouteInput {
            messages: Vec::new(),
            tenant: match self.tenant {
                Some(t) => t,
                None => header(headers, "x-switchyard-tenant")?
                    .unwrap_or_default()
                    .to_owned(),
            },
            candidates,
            ordered: false,
            cost_weight: self
                .cost_weight
                .or(parsed(headers, "x-switchyard-cost-weight")?),
            max_cost_usd: self
                .max_cost_usd
                .or(parsed(headers, "x-switchyard-max-cost-usd")?),
            metadata,
            max_output_tokens: self
                .max_output_tokens
                .or(parsed(headers, "x-switchyard-max-output-tokens")?),
            max_tokens: None,
            needs: Default::default(),
            session_id,
            key: None,
            tenant_settings: None,
            user: None,
            headers: Vec::new(),
            reading: None,
        })
    }

    /// The deadline from this object or the `x-switchyard-deadline-ms` header.
    pub fn deadline_ms(&self, headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
        Ok(self
            .deadline_ms
            .or(parsed(headers, "x-switchyard-deadline-ms")?))
    }
}

/// The model a request names: `None` for [`AUTO_MODEL`] (the router chooses).
pub fn pinned_model(model: &str) -> Result<Option<String>, ApiError> {
    match model {
        AUTO_MODEL => Ok(None),
        "" => Err(ApiError::invalid("model", "must not be empty")),
        name => Ok(Some(name.to_owned())),
    }
}

impl ChatBody {
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }

    /// Rejects parameters whose silent omission would change the answer.
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        if self.store == Some(true) {
            return Err(ApiError::unsupported(
                "store",
                "storing completions with the provider is not supported",
            ));
        }
        if let Some(t) = self
            .service_tier
            .as_deref()
            .filter(|t| !matches!(*t, "auto" | "default"))
        {
            return Err(ApiError::unsupported(
                "service_tier",
                &format!("service tier {t:?} is not supported; only \"auto\" or \"default\""),
            ));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::unsupported("n", "only n = 1 is supported"));
        }
        if self.functions.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::unsupported(
                "functions",
                "the deprecated function calling is not supported; use tools",
            ));
        }
        if self.logprobs == Some(true) || self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(ApiError::unsupported(
                "logprobs",
                "logprobs are not supported",
            ));
        }
        if self.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(ApiError::unsupported(
                "logit_bias",
                "logit_bias is not supported",
            ));
        }
        if self.audio.as_ref().is_some_and(|a| !a.is_null()) {
            return Err(ApiError::unsupported(
                "audio",
                "audio output is not supported",
            ));
        }
        if let Some(m) = &self.modalities
            && m.iter().any(|x| x != "text")
        {
            return Err(ApiError::unsupported(
                "modalities",
                "only text is supported",
            ));
        }
        if self.prediction.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(ApiError::unsupported(
                "prediction",
                "predicted outputs are not supported",
            ));
        }
        Ok(())
    }

    /// The tools, their choice and parallelism in our terms.
    fn tools(&mut self) -> Result<Tools, ApiError> {
        let defs = self
            .tools
            .take()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, t)| match (t.kind.as_str(), t.function) {
                ("function", Some(f)) => Ok(Tool {
                    name: f.name,
                    description: f.description,
                    parameters: f.parameters,
                    strict: f.strict,
                }),
                ("function", None) => Err(ApiError::invalid(
                    format!("tools[{i}].function"),
                    "a function tool needs its definition",
                )),
                (other, _) => Err(ApiError::unsupported(
                    &format!("tools[{i}].type"),
                    &format!("{other:?} tools are not supported; only \"function\""),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let choice = match self.tool_choice.take() {
            None | Some(Value::Null) => None,
            Some(c) => Some(tool_choice(&c)?),
        };
        Ok(Tools {
            defs,
            choice,
            parallel: self.parallel_tool_calls,
        })
    }

    /// Converts into the engine's input; the engine validates values further.
    pub fn into_input(mut self, headers: &HeaderMap) -> Result<CompleteInput, ApiError> {
        self.refuse_unsupported()?;
        let tools = self.tools()?;
        let response_format = response_format(self.response_format.take())?;
        let stop = stop_sequences(self.stop.as_ref())?;
        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let ext = self.switchyard.unwrap_or_default();
        let deadline_ms = ext.deadline_ms(headers)?;
        let mut metadata = self.metadata.unwrap_or_default();
        let user = self.user.filter(|u| !u.is_empty());
        if let Some(u) = &user {
            metadata.entry("user".into()).or_insert_with(|| u.clone());
        }
        let mut route = ext.route_input(headers, metadata)?;
        route.messages = messages;
        let model = pinned_model(&self.model)?;
        if let Some(list) = self.models {
            route.candidates = ordered_models(list, model.as_deref(), &route.candidates)?;
            route.ordered = true;
        }
        Ok(CompleteInput {
            route,
            model,
            max_completion_tokens: self.max_completion_tokens.is_some(),
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            sampling: Sampling {
                top_p: self.top_p,
                seed: self.seed,
                frequency_penalty: self.frequency_penalty,
                presence_penalty: self.presence_penalty,
                reasoning_effort: self.reasoning_effort,
                top_k: None,
                reasoning_budget: None,
            },
            user,
            tools,
            response_format,
            deadline_ms,
            stop,
            // Set from the headers with the key (`chat::keyed`).
            bypass_cache: false,
        })
    }
}

/// OpenRouter's `models`: the candidates in fallback order, led by a
/// pinned `model` when it is not listed. Beside `switchyard.candidates` it
/// would say the same thing twice, so that is refused.
fn ordered_models(
    list: Vec<String>,
    pinned: Option<&str>,
    candidates: &[String],
) -> Result<Vec<String>, ApiError> {
    if !candidates.is_empty() {
        return Err(ApiError::invalid(
            "models",
            "give the candidates once: `models` or switchyard.candidates (x-switchyard-candidates), not both",
        ));
    }
    if list.is_empty() {
        return Err(ApiError::invalid("models", "must name at least one model"));
    }
    Ok(match pinned {
        Some(p) if !list.iter().any(|m| m == p) => {
            std::iter::once(p.to_owned()).chain(list).collect()
        }
        _ => list,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSchema {
    name: String,
    description: Option<String>,
    schema: Option<Value>,
    strict: Option<bool>,
}

/// OpenAI's `response_format`: `text` (the default), `json_object`, or
/// `json_schema` with its `name`, `schema`, `strict` and `description`.
fn response_format(v: Option<Value>) -> Result<Option<ResponseFormat>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let spec = v.get("json_schema").cloned().unwrap_or(Value::Null);
            let s: WireSchema = serde_json::from_value(spec)
                .map_err(|e| ApiError::invalid("response_format.json_schema", e.to_string()))?;
            Ok(Some(ResponseFormat::JsonSchema {
                name: s.name,
                description: s.description,
                schema: s.schema,
                strict: s.strict,
            }))
        }
        _ => Err(ApiError::invalid(
            "response_format.type",
            "must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// OpenAI's `tool_choice`: a mode, or `{"type": "function", "function":
/// {"name": ...}}`.
fn tool_choice(v: &Value) -> Result<ToolChoice, ApiError> {
    match v {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(ApiError::invalid(
                "tool_choice",
                format!("{other:?} is not one of auto, none, required"),
            )),
        },
        _ => match (
            v.get("type").and_then(Value::as_str),
            v.pointer("/function/name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) => Ok(ToolChoice::Function(name.to_owned())),
            _ => Err(ApiError::invalid(
                "tool_choice",
                "must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
            )),
        },
    }
}

/// OpenAI's `stop`: null, one string, or an array of strings. The engine
/// checks the count and each sequence.
fn stop_sequences(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let invalid = || ApiError::invalid("stop", "must be a string or an array of strings");
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect(),
        Some(_) => Err(invalid()),
    }
}

fn message(i: usize, m: WireMessage) -> Result<ChatMessage, ApiError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    if m.function_call.is_some() {
        return Err(ApiError::unsupported(
            &field("function_call"),
            "the deprecated function calling is not supported; use tool_calls",
        ));
    }
    if m.role == "function" {
        return Err(ApiError::unsupported(
            &field("role"),
            "the deprecated function role is not supported; use tool",
        ));
    }
    let mut tool_calls = Vec::new();
    for (j, c) in m.tool_calls.into_iter().flatten().enumerate() {
        if c.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(ApiError::unsupported(
                &field(&format!("tool_calls[{j}].type")),
                "only function tool calls are supported",
            ));
        }
        tool_calls.push(ToolCall {
            id: c.id,
            name: c.function.name,
            arguments: c.function.arguments,
        });
    }
    let (content, parts) = match m.content {
        None => (String::new(), Vec::new()),
        Some(Content::Text(t)) => (t, Vec::new()),
        Some(Content::Parts(wire)) => content_parts(wire, &field)?,
    };
    Ok(ChatMessage {
        role: m.role,
        content,
        tool_calls,
        tool_call_id: m.tool_call_id,
        parts,
    })
}

/// Content parts in our terms (see [`crate::dispatch::from_parts`]).
fn content_parts(
    wire: Vec<WirePart>,
    field: &dyn Fn(&str) -> String,
) -> Result<(String, Vec<Part>), ApiError> {
    let mut parts = Vec::with_capacity(wire.len());
    for (j, p) in wire.into_iter().enumerate() {
        match (p.kind.as_str(), p.text, p.image_url) {
            ("text", Some(t), _) => parts.push(Part::Text(t)),
            ("text", None, _) => {
                return Err(ApiError::invalid(
                    field(&format!("content[{j}].text")),
                    "a text part needs text",
                ));
            }
            ("image_url", _, Some(i)) => parts.push(Part::Image {
                url: i.url,
                detail: i.detail,
            }),
            ("image_url", _, None) => {
                return Err(ApiError::invalid(
                    field(&format!("content[{j}].image_url")),
                    "an image part needs its image_url",
                ));
            }
            (other, _, _) => {
                return Err(ApiError::unsupported(
                    &field(&format!("content[{j}].type")),
                    &format!("{other:?} parts are not supported; only text and image_url"),
                ));
            }
        }
    }
    Ok(crate::dispatch::from_parts(parts))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid(name, "not valid visible ASCII"))
        })
        .transpose()
}

fn parsed<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    header(headers, name)?
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|e| ApiError::invalid(name, format!("{v:?}: {e}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> ChatBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn body_extension_wins_over_headers_and_headers_fill_the_rest() {
        let mut h = HeaderMap::new();
        h.insert("x-switchyard-tenant", "from-header".parse().unwrap());
        h.insert("x-switchyard-cost-weight", "3.5".parse().unwrap());
        h.insert("x-switchyard-candidates", "a, b".parse().unwrap());
        let input = body(serde_json::json!({
            "model": "switchyard/auto",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "switchyard": {"tenant": "from-body"},
            "top_p": 0.5, "seed": 1, "user": "u1"
        }))
        .into_input(&h)
        .unwrap();
        assert_eq!(input.model, None);
        assert_eq!(input.route.tenant, "from-body");
        assert_eq!(input.route.cost_weight, Some(3.5));
        assert_eq!(input.route.candidates, vec!["a", "b"]);
        assert_eq!(input.route.metadata["user"], "u1");
        assert_eq!(input.route.messages[0].content, "hi");
    }

    #[test]
    fn semantic_changing_parameters_are_refused() {
        for extra in [
            serde_json::json!({"n": 2}),
            serde_json::json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}),
            serde_json::json!({"functions": [{"name": "f"}]}),
            serde_json::json!({"logprobs": true}),
            serde_json::json!({"store": true}),
            serde_json::json!({"service_tier": "flex"}),
            serde_json::json!({"web_search_options": {}}),
        ] {
            let mut v =
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let e = parse(v.to_string().as_bytes())
                .and_then(|b| b.into_input(&HeaderMap::new()))
                .unwrap_err();
            assert_eq!(e.code, "unsupported_parameter", "{extra}");
        }
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let text =
            r#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperture": 0.2}"#;
        let e = parse(text.as_bytes()).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("unsupported_parameter", Some("temperture"))
        );
    }

    #[test]
    fn settings_and_the_limit_name_are_carried() {
        let input = body(serde_json::json!({
            "model": "m", "messages": [{"role": "developer", "content": "x"}],
            "max_completion_tokens": 9, "top_p": 0.5, "seed": -3,
            "frequency_penalty": 1.0, "presence_penalty": -1.0,
            "reasoning_effort": "low", "user": "u", "store": false, "n": 1,
            "parallel_tool_calls": true, "service_tier": "auto"
        }))
        .into_input(&HeaderMap::new())
        .unwrap();
        assert_eq!(
            (input.max_tokens, input.max_completion_tokens),
            (Some(9), true)
        );
        assert_eq!(input.user.as_deref(), Some("u"));
        assert_eq!(
            input.sampling,
            Sampling {
                top_p: Some(0.5),
                seed: Some(-3),
                frequency_penalty: Some(1.0),
                presence_penalty: Some(-1.0),
                reasoning_effort: Some("low".into()),
                top_k: None,
                reasoning_budget: None,
            }
        );
        assert_eq!(input.route.messages[0].role, "developer");
    }

    #[test]
    fn tools_tool_choice_and_tool_messages_are_carried() {
        let input = body(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "42"}]}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": false
        }))
        .into_input(&HeaderMap::new())
        .unwrap();
        assert_eq!(input.tools.defs[0].name, "f");
        assert_eq!(input.tools.choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(input.tools.parallel, Some(false));
        let m = &input.route.messages;
        assert_eq!(m[1].tool_calls[0].arguments, "{}");
        assert_eq!(
            (m[2].tool_call_id.as_deref(), m[2].content.as_str()),
            (Some("c1"), "42")
        );
        for (choice, want) in [
            ("auto", ToolChoice::Auto),
            ("none", ToolChoice::None),
            ("required", ToolChoice::Required),
        ] {
            assert_eq!(tool_choice(&serde_json::json!(choice)).unwrap(), want);
        }
        let e = tool_choice(&serde_json::json!("sometimes")).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn stop_is_taken_as_a_string_or_an_array() {
        let with = |stop: serde_json::Value| {
            body(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": stop}))
                .into_input(&HeaderMap::new())
        };
        assert_eq!(with(serde_json::json!("\n")).unwrap().stop, vec!["\n"]);
        assert_eq!(
            with(serde_json::json!(["a", "b"])).unwrap().stop,
            vec!["a", "b"]
        );
        assert!(with(serde_json::Value::Null).unwrap().stop.is_empty());
        let e = with(serde_json::json!({"a": 1})).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("invalid_value", Some("stop"))
        );
    }

    #[test]
    fn a_bad_header_value_is_a_400_naming_it() {
        let mut h = HeaderMap::new();
        h.insert("x-switchyard-cost-weight", "cheap".parse().unwrap());
        let e =
            body(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
                .into_input(&h)
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("x-switchyard-cost-weight"));
    }
}
