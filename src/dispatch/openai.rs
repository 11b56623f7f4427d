//! The OpenAI-compatible chat-completions wire protocol: request translation,
//! response and SSE-stream normalisation. Wire types stay private here.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{
    ChatMessage, ChatRequest, ChatResponse, DispatchError, EventStream, StreamEvent, Usage,
};
use crate::catalog::Provider;

/// Longest provider error body kept in messages and logs.
const MAX_ERROR_BODY: usize = 512;

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
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
}

#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
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
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let body = WireRequest {
            model: upstream,
            messages: &req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        };
        let mut rb = self
            .http
            .post(format!("{}/chat/completions", provider.base_url))
            .timeout(timeout)
            .json(&body);
        if let Some(key) = &provider.api_key {
            rb = rb.bearer_auth(key);
        }
        rb
    }

    /// One non-streamed call.
    pub async fn complete(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatResponse, DispatchError> {
        let resp = self
            .request(provider, upstream, req, false, timeout)
            .send()
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let resp = check_status(resp).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let wire: WireResponse =
            serde_json::from_slice(&bytes).map_err(|e| DispatchError::Malformed(e.to_string()))?;
        let choice = wire
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| DispatchError::Malformed("no choices".into()))?;
        let content = choice
            .message
            .and_then(|m| m.content)
            .ok_or_else(|| DispatchError::Malformed("choice has no message content".into()))?;
        Ok(ChatResponse {
            content,
            finish_reason: choice.finish_reason.unwrap_or_else(|| "stop".into()),
            usage: wire.usage.map(Usage::from),
        })
    }

    /// One streamed call. The returned stream yields deltas and ends with
    /// `Done`, or with an error if the provider stops without `[DONE]`.
    pub async fn stream(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<EventStream, DispatchError> {
        let resp = self
            .request(provider, upstream, req, true, timeout)
            .send()
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let resp = check_status(resp).await?;
        let mut bytes = resp.bytes_stream();
        Ok(async_stream::stream! {
            let mut buf: Vec<u8> = Vec::new();
            let mut finish: Option<String> = None;
            let mut usage: Option<Usage> = None;
            loop {
                // Emit every complete line in the buffer before reading more.
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&line);
                    let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
                    let data = data.trim_start();
                    if data == "[DONE]" {
                        yield Ok(StreamEvent::Done {
                            finish_reason: finish.take().unwrap_or_else(|| "stop".into()),
                            usage: usage.take(),
                        });
                        return;
                    }
                    match serde_json::from_str::<WireStreamChunk>(data) {
                        Ok(chunk) => {
                            if let Some(u) = chunk.usage { usage = Some(u.into()); }
                            for c in chunk.choices {
                                if let Some(r) = c.finish_reason { finish = Some(r); }
                                if let Some(text) = c.delta.and_then(|d| d.content).filter(|t| !t.is_empty()) {
                                    yield Ok(StreamEvent::Delta(text));
                                }
                            }
                        }
                        Err(e) => {
                            yield Err(DispatchError::Malformed(format!("bad stream chunk: {e}")));
                            return;
                        }
                    }
                }
                match bytes.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => {
                        yield Err(DispatchError::Stream(transport_error(e, timeout).to_string()));
                        return;
                    }
                    None => {
                        yield Err(DispatchError::Stream("ended before [DONE]".into()));
                        return;
                    }
                }
            }
        }
        .boxed())
    }
}

fn transport_error(e: reqwest::Error, timeout: Duration) -> DispatchError {
    if e.is_timeout() {
        DispatchError::Timeout(timeout)
    } else if e.is_connect() {
        DispatchError::Connect(e.to_string())
    } else {
        DispatchError::Stream(e.to_string())
    }
}

async fn check_status(resp: reqwest::Response) -> Result<reqwest::Response, DispatchError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.text().await.unwrap_or_default();
    let mut message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
        .unwrap_or(body);
    if message.len() > MAX_ERROR_BODY {
        let cut = (0..=MAX_ERROR_BODY)
            .rev()
            .find(|i| message.is_char_boundary(*i))
            .unwrap_or(0);
        message.truncate(cut);
    }
    Err(DispatchError::Status {
        status: status.as_u16(),
        message,
        retry_after,
    })
}
