//! The two fronts' readings and writings without a server: a request body
//! read into the engine's input, and an answer written as the front writes
//! it. The fuzz targets and the protocol round-trip tests drive the fronts'
//! own code through these.

use axum::http::HeaderMap;

use super::{ApiError, chat, messages, messages_wire, wire};
use axum::response::IntoResponse as _;
use axum::response::sse::Sse;

use crate::engine::{CompleteInput, Completed, StreamItem};

/// An OpenAI chat-completions body, read as `POST /v1/chat/completions` reads it.
pub fn read_chat(body: &[u8], headers: &HeaderMap) -> Result<CompleteInput, ApiError> {
    wire::parse(body)?.into_input(headers)
}

/// An Anthropic Messages body, read as `POST /v1/messages` reads it.
pub fn read_messages(body: &[u8], headers: &HeaderMap) -> Result<CompleteInput, ApiError> {
    messages_wire::parse(body)?.into_input(headers)
}

/// A plain answer's body as the chat-completions front sends it.
pub async fn chat_answer(c: Completed) -> bytes::Bytes {
    body(chat::plain(c)).await
}

/// A plain answer's body as the Messages front sends it.
pub async fn messages_answer(c: Completed) -> bytes::Bytes {
    body(messages::plain(c)).await
}

/// A streamed answer's body as the chat-completions front sends it (with
/// the usage chunk), from the engine's `items`.
pub async fn chat_stream(items: Vec<StreamItem>) -> bytes::Bytes {
    let items = futures::stream::iter(items.into_iter().map(Ok));
    body(Sse::new(chat::events("0", "m", true, items)).into_response()).await
}

/// A streamed answer's body as the Messages front sends it.
pub async fn messages_stream(items: Vec<StreamItem>) -> bytes::Bytes {
    let items = futures::stream::iter(items.into_iter().map(Ok));
    body(Sse::new(messages::events("0", "m", items)).into_response()).await
}

async fn body(r: axum::response::Response) -> bytes::Bytes {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .expect("an in-memory JSON body always reads: this is a bug")
}
