//! Dispatch: calling the chosen model's provider and recording each attempt.
//!
//! One module per wire protocol; today the OpenAI-compatible chat-completions
//! protocol ([`openai`]), which OpenAI, Anthropic's and Gemini's compatibility
//! endpoints, OpenRouter, vLLM and Ollama all speak.

pub mod openai;

use std::time::Duration;

use futures::stream::BoxStream;

/// A chat message as sent upstream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What we ask of a provider, in our terms.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
}

/// Token usage as the provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A complete (non-streamed) answer.
#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub content: String,
    pub finish_reason: String,
    /// `None` when the provider reported no usage.
    pub usage: Option<Usage>,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    /// The stream ended normally.
    Done {
        finish_reason: String,
        usage: Option<Usage>,
    },
}

pub type EventStream = BoxStream<'static, Result<StreamEvent, DispatchError>>;

/// Why a provider call failed, in terms callers can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
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
}

impl DispatchError {
    /// The attempt outcome logged for this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            DispatchError::Timeout(_) => "timeout",
            _ => "error",
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            DispatchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
