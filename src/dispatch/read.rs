//! Each protocol's reading and writing without a network: the body dispatch
//! would send, and a provider's answer or event stream read exactly as the
//! adapters read one off the wire. The fuzz targets and the round-trip tests
//! drive the adapters' own code through these.

use std::time::Duration;

use futures::StreamExt;

use super::{ChatRequest, ChatResponse, DispatchError, StreamEvent, Timeouts};
use super::{anthropic, gemini, http, openai};
use crate::config::ProviderKind;

/// The JSON body dispatch sends to a `kind` provider for `upstream`.
pub fn request_body(
    kind: ProviderKind,
    upstream: &str,
    req: &ChatRequest,
    stream: bool,
) -> serde_json::Value {
    let body = match kind {
        ProviderKind::OpenAi => serde_json::to_value(openai::body(upstream, req, stream)),
        ProviderKind::Anthropic => serde_json::to_value(anthropic::body(upstream, req, stream)),
        ProviderKind::Gemini => serde_json::to_value(gemini::body(req)),
    };
    body.expect("a request body always serialises: this is a bug")
}

/// A `kind` provider's whole answer, read.
pub fn answer(kind: ProviderKind, body: &[u8]) -> Result<ChatResponse, DispatchError> {
    match kind {
        ProviderKind::OpenAi => openai::answer(body),
        ProviderKind::Anthropic => anthropic::answer(body),
        ProviderKind::Gemini => gemini::answer(body),
    }
}

/// A `kind` provider's SSE body, arriving in `chunks`, read through the same
/// framing and parser as a live stream: every event it yields, up to and
/// including the first error.
pub async fn stream(
    kind: ProviderKind,
    chunks: Vec<bytes::Bytes>,
) -> Vec<Result<StreamEvent, DispatchError>> {
    let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let resp = reqwest::Response::from(axum::http::Response::new(reqwest::Body::wrap_stream(body)));
    let t = Timeouts::from(Duration::from_secs(60));
    let events = match kind {
        ProviderKind::OpenAi => http::sse(resp, t, openai::Parser::default()),
        ProviderKind::Anthropic => http::sse(resp, t, anthropic::Parser::default()),
        ProviderKind::Gemini => http::sse(resp, t, gemini::Parser::default()),
    };
    events.collect().await
}
