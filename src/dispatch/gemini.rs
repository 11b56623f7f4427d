//! Google Gemini's `generateContent` / `streamGenerateContent?alt=sse`: the
//! system prompt is `systemInstruction`, turns are `contents` with roles
//! `user` / `model`, options go in `generationConfig`, usage in
//! `usageMetadata`. The key travels in `x-goog-api-key`, never in the URL
//! (URLs end up in logs). Wire types stay private here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http::{self, SseParser};
use super::{Adapter, ChatRequest, ChatResponse, DispatchError, EventStream, StreamEvent, Usage};
use crate::catalog::Provider;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireContent>,
    contents: Vec<WireContent>,
    generation_config: WireGenConfig<'a>,
}

#[derive(Serialize, Deserialize)]
struct WireContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Serialize, Deserialize)]
struct WirePart {
    #[serde(default)]
    text: String,
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
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
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
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_token_count,
            completion_tokens: u.candidates_token_count.unwrap_or(0),
            cached_tokens: u.cached_content_token_count,
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
        .map(|c| c.parts.iter().map(|p| p.text.as_str()).collect())
        .unwrap_or_default()
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
        let body = WireRequest {
            system_instruction: req.system().map(|s| WireContent {
                role: None,
                parts: vec![WirePart { text: s }],
            }),
            contents: req
                .turns()
                .map(|m| WireContent {
                    role: Some(
                        if m.role == "assistant" {
                            "model"
                        } else {
                            "user"
                        }
                        .into(),
                    ),
                    parts: vec![WirePart {
                        text: m.content.clone(),
                    }],
                })
                .collect(),
            generation_config: WireGenConfig {
                max_output_tokens: req.max_tokens,
                temperature: req.temperature,
                stop_sequences: &req.stop,
                top_p: req.sampling.top_p,
                seed: req.sampling.seed,
                frequency_penalty: req.sampling.frequency_penalty,
                presence_penalty: req.sampling.presence_penalty,
            },
        };
        let url = if stream {
            format!(
                "{}/models/{upstream}:streamGenerateContent?alt=sse",
                provider.base_url
            )
        } else {
            format!("{}/models/{upstream}:generateContent", provider.base_url)
        };
        let mut rb = self.http.post(url).json(&body);
        if let Some(key) = &provider.api_key {
            rb = rb.header("x-goog-api-key", key);
        }
        rb
    }
}

impl Adapter for GeminiClient {
    async fn complete(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatResponse, DispatchError> {
        let rb = self.request(provider, upstream, req, false);
        let wire: WireResponse = http::send_json(rb, timeout).await?;
        let c = wire
            .candidates
            .first()
            .ok_or_else(|| DispatchError::Malformed("no candidates".into()))?;
        Ok(ChatResponse {
            content: text_of(c),
            finish_reason: finish_reason(c.finish_reason.as_deref()),
            usage: wire.usage_metadata.map(Usage::from),
        })
    }

    async fn stream(
        &self,
        provider: &Provider,
        upstream: &str,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<EventStream, DispatchError> {
        let resp = http::send(self.request(provider, upstream, req, true), timeout).await?;
        Ok(http::sse(resp, timeout, Parser::default()))
    }
}

/// Every SSE event is a whole `GenerateContentResponse` carrying the next
/// text; the one with a `finishReason` is the last (Gemini sends no separate
/// terminator), and the latest `usageMetadata` holds the totals.
#[derive(Default)]
struct Parser {
    finish: Option<String>,
    usage: Option<Usage>,
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
            if let Some(r) = &c.finish_reason {
                self.finish = Some(r.clone());
                done = true;
            }
        }
        Ok((out, done))
    }

    fn finish(&mut self) -> StreamEvent {
        StreamEvent::Done {
            finish_reason: finish_reason(self.finish.as_deref()),
            usage: self.usage.take(),
        }
    }
}
