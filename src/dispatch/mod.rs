//! Dispatch: calling one model's provider over its wire protocol, and the
//! failure policy around those calls.
//!
//! One file per wire protocol behind one [`Adapter`] trait: [`openai`]
//! (OpenAI-compatible chat completions: OpenAI, OpenRouter, Together, Groq,
//! vLLM, Ollama…), [`anthropic`] (Messages API) and [`gemini`]
//! (`generateContent`). Each turns our [`ChatRequest`] into its wire body and
//! its answers (plain or SSE) back into [`ChatResponse`] / [`StreamEvent`]s;
//! wire types stay private to the file. [`Dispatcher`] picks the adapter by
//! the provider's kind.
//!
//! The failure policy lives beside them, one concept per module: [`backoff`]
//! (exponential backoff with jitter, Retry-After), [`budget`] (retries as a
//! bounded fraction of traffic), [`breaker`] (per-model circuit breaker) and
//! [`health`] (the breaker plus load signals per model, read by selection and
//! exported as a snapshot). [`failover`] is the loop that drives them for one
//! request: the plan of models, retries within the deadline, fallback.

pub mod anthropic;
pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod failover;
pub mod gemini;
pub mod health;
mod http;
pub mod openai;
pub mod read;
pub mod reasoning;

use std::future::Future;
use std::time::Duration;

use futures::stream::BoxStream;

use crate::catalog::Provider;
use crate::config::ProviderKind;

/// A chat message as sent upstream (and, serialized, as the log keeps it).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    /// The message's text (its text parts joined): what is classified, and
    /// what a protocol without parts is sent.
    pub content: String,
    /// The tool calls an assistant turn made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message's answer is to this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The content in order when it holds more than text (images); empty
    /// otherwise. Not logged: images would bloat the decision log, and the
    /// text is in `content`.
    #[serde(skip)]
    pub parts: Vec<Part>,
}

/// A piece of a message's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// An `http(s)` or `data:` URL, with OpenAI's `detail` if given.
    Image {
        url: String,
        detail: Option<String>,
    },
}

/// A message's content from its parts: the text joined by newlines (what
/// is classified and what a text-only turn sends), and the parts kept only
/// when an image is among them.
pub fn from_parts(mut parts: Vec<Part>) -> (String, Vec<Part>) {
    let text: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            Part::Image { .. } => None,
        })
        .collect();
    let content = text.join("\n");
    if parts.iter().all(|p| matches!(p, Part::Text(_))) {
        parts.clear();
    }
    (content, parts)
}

/// A `data:` URL's media type and base64 payload.
pub fn data_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")?.split_once(";base64,")
}

impl ChatMessage {
    /// A plain text turn.
    pub fn text(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..ChatMessage::default()
        }
    }
}

/// A call the model asked for: OpenAI's shape, arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Option<serde_json::Value>,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this one.
    Function(String),
}

/// The request's tools and how the model may use them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Tools {
    pub defs: Vec<Tool>,
    pub choice: Option<ToolChoice>,
    /// `Some(false)`: at most one call per turn.
    pub parallel: Option<bool>,
}

/// The shape the answer must take (OpenAI's `response_format`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON matching `schema`.
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Option<serde_json::Value>,
        strict: Option<bool>,
    },
}

impl ResponseFormat {
    /// The schema the answer must match: an object, at least.
    pub fn schema(&self) -> serde_json::Value {
        match self {
            ResponseFormat::JsonSchema {
                schema: Some(s), ..
            } => s.clone(),
            _ => serde_json::json!({"type": "object"}),
        }
    }
}

/// What we ask of a provider, in our terms.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    /// The client named the limit `max_completion_tokens` (OpenAI's current
    /// name, the only one its reasoning models take): an OpenAI-compatible
    /// upstream gets it under that name.
    pub max_completion_tokens: bool,
    pub temperature: Option<f64>,
    /// Stop sequences; empty for none.
    pub stop: Vec<String>,
    pub sampling: Sampling,
    /// The end user, for the provider's abuse monitoring.
    pub user: Option<String>,
    pub tools: Tools,
    /// `None`: free text.
    pub response_format: Option<ResponseFormat>,
}

/// Generation settings past temperature and length. Each protocol forwards
/// or translates the ones it has a field for; a model whose protocol lacks
/// one is not eligible for the request ([`ProviderKind::lacks`]).
///
/// [`ProviderKind::lacks`]: crate::config::ProviderKind::lacks
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Sampling {
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    /// OpenAI's `reasoning_effort` (`minimal`, `low`, `medium`, `high`).
    pub reasoning_effort: Option<String>,
    /// Sample from the `k` most likely tokens (Anthropic, Gemini).
    pub top_k: Option<u32>,
    /// Thinking tokens allowed (Anthropic's `thinking.budget_tokens`); see
    /// [`reasoning`] for how it and `reasoning_effort` translate.
    pub reasoning_budget: Option<u32>,
}

impl Sampling {
    /// The names (OpenAI's) of the settings this request sets.
    pub fn set(&self) -> Vec<&'static str> {
        [
            ("top_p", self.top_p.is_some()),
            ("seed", self.seed.is_some()),
            ("frequency_penalty", self.frequency_penalty.is_some()),
            ("presence_penalty", self.presence_penalty.is_some()),
            (
                "reasoning_effort",
                self.reasoning_effort.is_some() || self.reasoning_budget.is_some(),
            ),
            ("top_k", self.top_k.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// Roles whose messages are instructions rather than turns: OpenAI's
/// `system` and its newer `developer`. Anthropic and Gemini take them as the
/// system prompt.
fn instructs(role: &str) -> bool {
    matches!(role, "system" | "developer")
}

impl ChatRequest {
    /// The system prompt: every `system` and `developer` message, joined in
    /// order. Anthropic and Gemini take it apart from the turns.
    pub fn system(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .messages
            .iter()
            .filter(|m| instructs(&m.role))
            .map(|m| m.content.as_str())
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// The conversation without its instructions.
    pub fn turns(&self) -> impl Iterator<Item = &ChatMessage> {
        self.messages.iter().filter(|m| !instructs(&m.role))
    }

    /// The image URLs of the conversation.
    pub fn images(&self) -> impl Iterator<Item = &str> {
        images(&self.messages)
    }

    /// The name of the function an earlier assistant turn called as
    /// `call_id` (Gemini answers a call by name, not by id).
    pub fn called(&self, call_id: &str) -> Option<&str> {
        self.messages
            .iter()
            .flat_map(|m| &m.tool_calls)
            .find(|c| c.id == call_id)
            .map(|c| c.name.as_str())
    }
}

/// The image URLs in `messages`.
pub fn images(messages: &[ChatMessage]) -> impl Iterator<Item = &str> {
    messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| match p {
            Part::Image { url, .. } => Some(url.as_str()),
            Part::Text(_) => None,
        })
}

/// Token usage as the provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens served from the provider's cache, where it reports them.
    pub cached_tokens: u32,
    /// Completion tokens spent thinking (counted in `completion_tokens`, as
    /// OpenAI counts them), where the provider reports them.
    pub reasoning_tokens: u32,
    /// Prompt tokens written to the provider's cache (Anthropic reports
    /// them; they are billed apart).
    pub cache_write_tokens: u32,
}

/// A complete (non-streamed) answer.
#[derive(Debug, Clone)]
pub struct ChatResponse {
    /// The answer's text; empty when the model only called tools.
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: String,
    /// `None` when the provider reported no usage.
    pub usage: Option<Usage>,
}

/// A piece of a streamed tool call, as OpenAI streams them: the first piece
/// of call `index` carries its id and name, every piece a fragment of the
/// arguments' JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    ToolCall(ToolCallDelta),
    /// The stream ended normally.
    Done {
        finish_reason: String,
        usage: Option<Usage>,
    },
}

pub type EventStream = BoxStream<'static, Result<StreamEvent, DispatchError>>;

/// Whose fault a failed provider call is. The one place the status sets are
/// written: retries, the breaker, fallback, the bandit's failure observations
/// (live and replayed from the log) and the error a caller sees all ask this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The request itself (400, 413, 422): every model would reject it the
    /// same way, so neither retry nor fall back. Also a request whose client
    /// went away.
    Request,
    /// The request does not fit this model (its context is too short, it
    /// takes no such parameter; see [`Misfit`]): another model may take it,
    /// so fall back, but it says nothing about the model's health.
    Fit,
    /// Our configuration of this provider (401, 403, 404 and any other 4xx):
    /// retrying will not help, another provider may.
    Configuration,
    /// The provider (5xx, 408, 409, 425, 429; timeouts, connection failures
    /// and broken bodies, which have no status): transient, so retryable; it
    /// counts for the model's breaker and as a bandit observation.
    Provider,
}

/// Why a model refused a request that another may take, read from the
/// provider's error message (each protocol words it its own way; the
/// patterns are their documented and observed wordings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    /// The prompt (with the output) exceeds the model's context.
    ContextLength,
    /// The model takes no such parameter or value.
    UnsupportedParameter,
    /// The provider's content policy refused this prompt for this model
    /// (another provider's policy may differ, as LiteLLM's content-policy
    /// fallbacks assume).
    ContentFilter,
}

impl Misfit {
    pub fn of_message(message: &str) -> Option<Misfit> {
        let m = message.to_ascii_lowercase();
        const CONTEXT: [&str; 6] = [
            "maximum context length",  // OpenAI
            "context_length_exceeded", // OpenAI's code
            "context window",          // OpenAI-compatible servers (vLLM, OpenRouter)
            "prompt is too long",      // Anthropic
            "input token count",       // Gemini: "The input token count (N) exceeds ..."
            "too many tokens",
        ];
        const UNSUPPORTED: [&str; 5] = [
            "unsupported parameter",          // OpenAI
            "unsupported value",              // OpenAI
            "extra inputs are not permitted", // Anthropic
            "unknown name", // Gemini: "Invalid JSON payload received. Unknown name"
            "is not supported",
        ];
        const FILTERED: [&str; 4] = [
            "content_policy_violation",  // OpenAI's code
            "content management policy", // Azure OpenAI
            "content_filter",            // OpenAI-compatible servers
            "safety settings",           // Gemini: "blocked by safety settings"
        ];
        if CONTEXT.iter().any(|p| m.contains(p)) {
            Some(Misfit::ContextLength)
        } else if UNSUPPORTED.iter().any(|p| m.contains(p)) {
            Some(Misfit::UnsupportedParameter)
        } else if FILTERED.iter().any(|p| m.contains(p)) {
            Some(Misfit::ContentFilter)
        } else {
            None
        }
    }
}

impl Blame {
    /// The blame for a failed attempt's status and error message: a request
    /// error that says the request does not fit this model is [`Blame::Fit`].
    pub fn of(status: Option<u16>, message: &str) -> Blame {
        match Blame::of_status(status) {
            Blame::Request if Misfit::of_message(message).is_some() => Blame::Fit,
            other => other,
        }
    }

    /// The blame for an attempt that failed with `status` (`None`: the call
    /// never got a status, which is always the provider's side), whatever
    /// the provider said.
    pub fn of_status(status: Option<u16>) -> Blame {
        match status {
            None => Blame::Provider,
            Some(400 | 413 | 422) => Blame::Request,
            Some(408 | 409 | 425 | 429) => Blame::Provider,
            Some(s) if s >= 500 => Blame::Provider,
            Some(_) => Blame::Configuration,
        }
    }
}

/// Why a provider call failed, in terms callers can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// A stream that started and then sent nothing for this long.
    #[error("stream stalled: no event for {0:?}")]
    Stalled(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("provider answered HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("stream failed: {0}")]
    Stream(String),
    /// The client went away while the call was in flight: the call was
    /// dropped (closing its connection), and nothing more is tried.
    #[error("the client went away")]
    Cancelled,
}

impl DispatchError {
    /// The attempt outcome logged for this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            DispatchError::Timeout(_) | DispatchError::Stalled(_) => "timeout",
            DispatchError::Cancelled => "cancelled",
            _ => "error",
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            DispatchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whose fault the failure is (see [`Blame`]).
    pub fn blame(&self) -> Blame {
        match self {
            DispatchError::Status {
                status, message, ..
            } => Blame::of(Some(*status), message),
            // Not the provider's doing, and nothing left to do for it.
            DispatchError::Cancelled => Blame::Request,
            _ => Blame::of_status(None),
        }
    }

    /// The error's class, as logged with the attempt: a misfit's kind, a
    /// rate limit, a server fault, a timeout, a connection failure, a bad
    /// answer, or the request's or our configuration's fault.
    pub fn class(&self) -> &'static str {
        match self {
            DispatchError::Timeout(_) | DispatchError::Stalled(_) => "timeout",
            DispatchError::Cancelled => "cancelled",
            DispatchError::Connect(_) => "connection",
            DispatchError::Malformed(_) | DispatchError::Stream(_) => "server_fault",
            DispatchError::Status {
                status, message, ..
            } => match (Blame::of(Some(*status), message), *status) {
                (Blame::Fit, _) => match Misfit::of_message(message) {
                    Some(Misfit::ContextLength) => "context_length",
                    Some(Misfit::UnsupportedParameter) => "unsupported_parameter",
                    _ => "content_filter",
                },
                (_, 429) => "rate_limit",
                (Blame::Provider, _) => "server_fault",
                (Blame::Request, _) => "request",
                (Blame::Configuration, _) => "configuration",
            },
        }
    }

    /// Whether the same call may succeed if tried again: only a provider's
    /// transient fault; the request and our configuration fail alike every time.
    pub fn is_retryable(&self) -> bool {
        self.blame() == Blame::Provider
    }

    /// Whether the failure says something about the model/provider (and so
    /// counts for its breaker and as a bandit observation), rather than about
    /// the request or our configuration.
    pub fn is_provider_fault(&self) -> bool {
        self.blame() == Blame::Provider
    }

    /// A provider that sent nothing in time: trying it again soon would
    /// likely wait as long again, so the failure policy moves on to the
    /// next model instead of retrying this one.
    pub fn is_stall(&self) -> bool {
        matches!(self, DispatchError::Timeout(_) | DispatchError::Stalled(_))
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DispatchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How long one attempt may wait. A provider that accepts the connection and
/// then stalls is caught by `first_byte`, which can be far shorter than the
/// `total` a long generation needs; a stream that stops mid-way by `idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Until the response head (a plain answer's head comes with its body)
    /// and, for a stream, until its first event.
    pub first_byte: Duration,
    /// Between a stream's events after the first (`None`: only the request's
    /// deadline bounds them).
    pub idle: Option<Duration>,
    /// The whole of a plain call, body included.
    pub total: Duration,
}

impl From<Duration> for Timeouts {
    /// One bound for everything, no idle bound.
    fn from(total: Duration) -> Self {
        Timeouts {
            first_byte: total,
            idle: None,
            total,
        }
    }
}

/// One wire protocol. `upstream` is the provider's model id; `t` bounds the
/// call (for streams: until the response head arrives and between events;
/// the caller bounds the first event and the whole).
pub trait Adapter: Send + Sync {
    fn complete<'a>(
        &'a self,
        provider: &'a Provider,
        upstream: &'a str,
        req: &'a ChatRequest,
        t: Timeouts,
    ) -> impl Future<Output = Result<ChatResponse, DispatchError>> + Send + 'a;

    fn stream<'a>(
        &'a self,
        provider: &'a Provider,
        upstream: &'a str,
        req: &'a ChatRequest,
        t: Timeouts,
    ) -> impl Future<Output = Result<EventStream, DispatchError>> + Send + 'a;
}

/// Every adapter over one shared HTTP client; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    openai: openai::OpenAiClient,
    anthropic: anthropic::AnthropicClient,
    gemini: gemini::GeminiClient,
}

impl Dispatcher {
    pub fn new(http: reqwest::Client) -> Self {
        Dispatcher {
            openai: openai::OpenAiClient::new(http.clone()),
            anthropic: anthropic::AnthropicClient::new(http.clone()),
            gemini: gemini::GeminiClient::new(http),
        }
    }

    pub async fn complete(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        t: impl Into<Timeouts>,
    ) -> Result<ChatResponse, DispatchError> {
        let t = t.into();
        match provider.kind {
            ProviderKind::OpenAi => self.openai.complete(provider, upstream, req, t).await,
            ProviderKind::Anthropic => self.anthropic.complete(provider, upstream, req, t).await,
            ProviderKind::Gemini => self.gemini.complete(provider, upstream, req, t).await,
        }
    }

    pub async fn stream(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        t: impl Into<Timeouts>,
    ) -> Result<EventStream, DispatchError> {
        let t = t.into();
        match provider.kind {
            ProviderKind::OpenAi => self.openai.stream(provider, upstream, req, t).await,
            ProviderKind::Anthropic => self.anthropic.stream(provider, upstream, req, t).await,
            ProviderKind::Gemini => self.gemini.stream(provider, upstream, req, t).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misfits_are_read_from_each_protocols_wording() {
        for (message, want) in [
            (
                "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
                Some(Misfit::ContextLength),
            ),
            (
                "prompt is too long: 210000 tokens > 200000 maximum",
                Some(Misfit::ContextLength),
            ),
            (
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                Some(Misfit::ContextLength),
            ),
            (
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                Some(Misfit::UnsupportedParameter),
            ),
            (
                "top_k: Extra inputs are not permitted",
                Some(Misfit::UnsupportedParameter),
            ),
            (
                "Invalid JSON payload received. Unknown name \"seed\": Cannot find field.",
                Some(Misfit::UnsupportedParameter),
            ),
            ("messages: field required", None),
            (
                "Your request was rejected as a result of our safety system. code: content_policy_violation",
                Some(Misfit::ContentFilter),
            ),
        ] {
            assert_eq!(Misfit::of_message(message), want, "{message}");
        }
        assert_eq!(
            Blame::of(Some(400), "prompt is too long: 9 > 8"),
            Blame::Fit
        );
        assert_eq!(
            Blame::of(Some(400), "messages: field required"),
            Blame::Request
        );
        // A misfit is only ever a request error's reading.
        assert_eq!(Blame::of(Some(503), "prompt is too long"), Blame::Provider);
    }
}
