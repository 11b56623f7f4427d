//! The response cache in the engine: what a request's key holds, the
//! decision a hit logs, and a cached answer replayed as a stream.
//!
//! A hit is logged as a decision of its own with no attempt, no provider
//! cost and no context (so no feedback on it reaches the policy), naming the
//! decision whose answer it served again.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::complete::{CompleteInput, Completed, StreamItem};
use super::{Engine, Explained, Rpc};
use crate::cache::{Answer, Key, Status};
use crate::classify::Reading;
use crate::clock::now_ms;
use crate::dispatch::{
    ChatMessage, Part, ResponseFormat, Sampling, ToolCall, ToolCallDelta, Tools,
};
use crate::error::Error;
use crate::store::DecisionRow;
use crate::tokens;

/// Policy version logged for decisions the cache answered.
pub const CACHE_POLICY: &str = "cache";

/// Everything a request's answer depends on: who asks (the tenant), what may
/// answer (the pinned model or profile, the candidates, which an API key's
/// model list narrows, the headers rules read, the cost settings), and what
/// is asked. The end user, metadata and session are left out: they do not
/// change the answer.
#[derive(Serialize)]
struct Keyed<'a> {
    /// A semantic scope (the request without its question), not a request.
    scope: bool,
    tenant: &'a str,
    model: Option<&'a str>,
    candidates: &'a [String],
    ordered: bool,
    headers: &'a [(String, String)],
    cost_weight: Option<f64>,
    max_cost_usd: Option<f64>,
    max_output_tokens: Option<u32>,
    messages: &'a [ChatMessage],
    /// Each image as (message, URL, detail): messages serialize their text only.
    images: Vec<(usize, &'a str, Option<&'a str>)>,
    max_tokens: Option<u32>,
    max_completion_tokens: bool,
    temperature: Option<f64>,
    stop: &'a [String],
    sampling: &'a Sampling,
    tools: &'a Tools,
    response_format: Option<&'a ResponseFormat>,
}

/// The request's digest: SHA-256 of its canonical JSON.
pub(super) fn key(input: &CompleteInput) -> Key {
    digest(input, &input.route.messages, false)
}

/// The digest of `input` with `messages` in place of its own.
fn digest(input: &CompleteInput, messages: &[ChatMessage], scope: bool) -> Key {
    let r = &input.route;
    let images = messages
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            m.parts.iter().filter_map(move |p| match p {
                Part::Image { url, detail } => Some((i, url.as_str(), detail.as_deref())),
                Part::Text(_) => None,
            })
        })
        .collect();
    let keyed = Keyed {
        scope,
        tenant: &r.tenant,
        model: input.model.as_deref(),
        candidates: &r.candidates,
        ordered: r.ordered,
        headers: &r.headers,
        cost_weight: r.cost_weight,
        max_cost_usd: r.max_cost_usd,
        max_output_tokens: r.max_output_tokens,
        messages,
        images,
        max_tokens: input.max_tokens,
        max_completion_tokens: input.max_completion_tokens,
        temperature: input.temperature,
        stop: &input.stop,
        sampling: &input.sampling,
        tools: &input.tools,
        response_format: input.response_format.as_ref(),
    };
    let mut h = Sha256::new();
    // Writing JSON into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut HashWriter(&mut h), &keyed);
    h.finalize().into()
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A request the semantic cache may answer: one question (a single user
/// turn of text, after any instructions), in deterministic settings unless
/// the operator allows any. Its scope is the request without the question.
fn question(input: &CompleteInput, any_settings: bool) -> Option<(Key, &str)> {
    if !any_settings && (input.temperature != Some(0.0) || !input.tools.defs.is_empty()) {
        return None;
    }
    let messages = &input.route.messages;
    let mut asked = None;
    for (i, m) in messages.iter().enumerate() {
        let plain = m.parts.is_empty() && m.tool_calls.is_empty() && m.tool_call_id.is_none();
        match m.role.as_str() {
            "system" | "developer" if plain => {}
            "user" if plain && asked.is_none() && !m.content.trim().is_empty() => asked = Some(i),
            _ => return None,
        }
    }
    let asked = asked?;
    let mut rest = messages.to_vec();
    let text = messages[asked].content.as_str();
    rest.remove(asked);
    Some((digest(input, &rest, true), text))
}

/// What the cache said about one request.
#[derive(Default)]
pub(super) struct Lookup {
    pub status: Status,
    /// Where a miss's answer goes.
    pub key: Option<Key>,
    pub hit: Option<Arc<Answer>>,
    /// A semantic miss's scope and question, for the index; and the reading
    /// it was embedded with, for routing (it is not read twice).
    pub question: Option<(Key, Reading)>,
}

impl Engine {
    pub(super) async fn look_up(&self, input: &CompleteInput) -> Result<Lookup, Error> {
        let Some(cache) = &self.cache else {
            return Ok(Lookup::default());
        };
        if input.bypass_cache {
            cache.bypassed();
            return Ok(Lookup {
                status: Status::Bypass,
                ..Lookup::default()
            });
        }
        let key = key(input);
        // An answer from a model no longer in the catalog is not served.
        let known = |a: &Arc<Answer>| self.catalog.model_index(&a.model).is_some();
        let mut hit = cache.get(&key).await.filter(known);
        let mut question = None;
        let cfg = &self.config.cache;
        if let (None, Some(threshold), Some(reader)) =
            (&hit, cfg.semantic_for(&input.route.tenant), &self.reader)
            && let Some((scope, text)) = self::question(input, cfg.semantic_any_settings)
        {
            let _pending = self.metrics.classify_enter();
            let started = std::time::Instant::now();
            // A question that cannot be read now (the classifier is over
            // capacity, say) is a miss: routing reads it again and answers
            // for its own errors.
            match reader.read(text).await {
                Ok(reading) => {
                    self.metrics.classified(started.elapsed());
                    hit = cache
                        .similar(&scope, &reading.embedding, threshold)
                        .map(|(a, _)| a)
                        .filter(known);
                    question = Some((scope, reading));
                }
                Err(e) => tracing::debug!(error = %e, "semantic lookup skipped"),
            }
        }
        cache.counted(hit.as_deref());
        Ok(Lookup {
            status: if hit.is_some() {
                Status::Hit
            } else {
                Status::Miss
            },
            key: Some(key),
            hit,
            question,
        })
    }

    /// Keeps a miss's answer for the requests that repeat it (or, with a
    /// question, ask it again in other words).
    pub(super) fn keep(&self, key: Option<Key>, question: Option<(Key, Vec<f32>)>, answer: Answer) {
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            cache.put(key, answer, question);
        }
    }

    /// Answers from the cache: the key's rate limits count the request (its
    /// tokens are not counted: no provider was called), and the decision is
    /// logged before the answer is given.
    pub(super) async fn serve_cached(
        &self,
        input: &CompleteInput,
        rpc: Rpc,
        a: &Answer,
    ) -> Result<Completed, Error> {
        let r = &input.route;
        let prompt_tokens =
            tokens::estimate_prompt_tokens(r.messages.iter().map(|m| m.content.as_str()));
        for k in r.key.iter().chain(&r.tenant_settings) {
            self.gate.limits.admit(k, prompt_tokens).await?;
            self.gate.limits.settle(k, -i64::from(prompt_tokens));
        }
        let model = self.catalog.model_index(&a.model);
        let row = DecisionRow {
            id: uuid::Uuid::now_v7().to_string(),
            created_at_ms: now_ms(),
            tenant: r.tenant.clone(),
            rpc: rpc.as_str(),
            model: a.model.clone(),
            provider: a.provider.clone(),
            pinned: input.model.is_some(),
            propensity: 1.0,
            explored: false,
            policy_version: CACHE_POLICY.into(),
            cost_weight: r.cost_weight.unwrap_or(self.config.routing.cost_weight),
            max_cost_usd: r.max_cost_usd,
            prompt_tokens,
            output_tokens: a.usage.completion_tokens,
            message_count: u32::try_from(r.messages.len()).unwrap_or(u32::MAX),
            features: None,
            context: None,
            intent: None,
            candidates: "[]".into(),
            metadata: serde_json::to_string(&r.metadata).unwrap_or_else(|_| "{}".into()),
            prompt: self
                .config
                .server
                .store_prompts
                .then(|| serde_json::to_string(&r.messages).unwrap_or_default()),
            served_model: Some(a.model.clone()),
            key_id: r.key.as_ref().map(|k| k.id.clone()),
            rules: None,
            profile: None,
            split: None,
            cached_from: Some(a.decision_id.clone()),
        };
        let id = row.id.clone();
        self.log_decision(row, Vec::new()).await?;
        if let Some(m) = model {
            self.metrics
                .decision(&self.catalog.models[m].name, input.model.is_some());
        }
        Ok(Completed {
            decision_id: id,
            model: a.model.clone(),
            provider: a.provider.clone(),
            content: a.content.clone(),
            tool_calls: a.tool_calls.clone(),
            finish_reason: a.finish_reason.clone(),
            usage: a.usage,
            usage_estimated: false,
            cost_usd: 0.0,
            attempts: Vec::new(),
            explained: Explained::default(),
            cache: Status::Hit,
        })
    }
}

/// A cached answer as the stream a provider would have sent: the start, the
/// text, each tool call whole, the end.
pub(super) fn replay(c: Completed) -> mpsc::Receiver<Result<StreamItem, Error>> {
    let mut items = vec![StreamItem::Start {
        decision_id: c.decision_id,
        model: c.model,
        provider: c.provider,
        cache: c.cache,
    }];
    if !c.content.is_empty() {
        items.push(StreamItem::Delta(c.content));
    }
    for (i, t) in c.tool_calls.into_iter().enumerate() {
        items.push(StreamItem::ToolCall(ToolCallDelta {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            id: Some(t.id),
            name: Some(t.name),
            arguments: t.arguments,
        }));
    }
    items.push(StreamItem::End {
        finish_reason: c.finish_reason,
        usage: c.usage,
        usage_estimated: false,
        cost_usd: 0.0,
        attempts: Vec::new(),
    });
    let (tx, rx) = mpsc::channel(items.len());
    for item in items {
        // The channel holds them all: it was made as large.
        let _ = tx.try_send(Ok(item));
    }
    rx
}

/// A streamed answer's tool calls, put together from their pieces.
#[derive(Default)]
pub(super) struct Assembled {
    calls: Vec<ToolCall>,
}

impl Assembled {
    pub fn add(&mut self, d: &ToolCallDelta) {
        let i = d.index as usize;
        if i >= self.calls.len() {
            self.calls.resize_with(i + 1, || ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
        }
        let c = &mut self.calls[i];
        if let Some(id) = &d.id {
            c.id.clone_from(id);
        }
        if let Some(name) = &d.name {
            c.name.clone_from(name);
        }
        c.arguments.push_str(&d.arguments);
    }

    pub fn calls(self) -> Vec<ToolCall> {
        self.calls
    }
}

/// What a finished answer keeps in the cache.
pub(super) fn answer_of(c: &Completed) -> Answer {
    Answer {
        decision_id: c.decision_id.clone(),
        model: c.model.clone(),
        provider: c.provider.clone(),
        content: c.content.clone(),
        tool_calls: c.tool_calls.clone(),
        finish_reason: c.finish_reason.clone(),
        usage: c.usage,
        cost_usd: c.cost_usd,
        made_at_ms: now_ms(),
    }
}
