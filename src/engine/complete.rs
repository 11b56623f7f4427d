//! Complete and CompleteStream: route, call the chosen model's provider within
//! the deadline, log every attempt, and report usage and cost.
//!
//! The provider call runs in its own task so that a client that goes away
//! mid-call cannot stop the attempt from being logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Engine, RouteInput, Routed, Rpc, now_ms, validate};
use crate::dispatch::{ChatRequest, DispatchError, StreamEvent, Usage};
use crate::error::Error;
use crate::store::AttemptRow;
use crate::tokens;

/// Buffered stream items between the provider pump and the client.
const STREAM_BUFFER: usize = 32;

#[derive(Debug, Clone, Default)]
pub struct CompleteInput {
    pub route: RouteInput,
    /// Pin a catalog model: no choice is made, the decision is still logged.
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub deadline_ms: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Completed {
    pub decision_id: String,
    pub model: String,
    pub provider: String,
    pub content: String,
    pub finish_reason: String,
    pub usage: Usage,
    pub usage_estimated: bool,
    pub cost_usd: f64,
    pub attempts: Vec<AttemptRow>,
}

/// What a streamed completion yields, in order: one `Start`, any number of
/// `Delta`s, then one `End` (or an error).
#[derive(Debug, Clone)]
pub enum StreamItem {
    Start {
        decision_id: String,
        model: String,
        provider: String,
    },
    Delta(String),
    End {
        finish_reason: String,
        usage: Usage,
        usage_estimated: bool,
        cost_usd: f64,
        attempts: Vec<AttemptRow>,
    },
}

struct Prepared {
    routed: Routed,
    request: ChatRequest,
    deadline: Instant,
}

impl Engine {
    async fn prepare(&self, input: &CompleteInput, rpc: Rpc) -> Result<Prepared, Error> {
        let max_tokens = validate::positive_u32("max_tokens", input.max_tokens)?;
        let temperature = validate::temperature(input.temperature)?;
        let deadline_ms = validate::positive_u32("deadline_ms", input.deadline_ms)?;
        let mut route = input.route.clone();
        // The reply can be no longer than max_tokens: it caps expected costs.
        route.max_tokens = max_tokens;
        let routed = self.route(&route, input.model.as_deref(), rpc).await?;
        let deadline = deadline_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(self.config.dispatch.deadline)
            .min(self.config.dispatch.deadline);
        Ok(Prepared {
            routed,
            request: ChatRequest {
                messages: route.messages,
                max_tokens,
                temperature,
            },
            deadline: Instant::now() + deadline,
        })
    }

    fn attempt_timeout(&self, deadline: Instant) -> Duration {
        self.config
            .dispatch
            .attempt_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
    }

    /// Complete: route, call the provider, log the attempt, answer.
    pub async fn complete(self: &Arc<Self>, input: &CompleteInput) -> Result<Completed, Error> {
        let p = self.prepare(input, Rpc::Complete).await?;
        let engine = Arc::clone(self);
        tokio::spawn(async move { engine.dispatch_once(p).await })
            .await
            .map_err(|e| Error::Internal(format!("dispatch task failed: {e}")))?
    }

    async fn dispatch_once(&self, p: Prepared) -> Result<Completed, Error> {
        let m = p.routed.decision.model;
        let model = &self.catalog.models[m];
        let provider = self.catalog.provider_of(m);
        let timeout = self.attempt_timeout(p.deadline);
        let started = (Instant::now(), now_ms());
        let result = self
            .openai
            .complete(provider, &model.upstream, &p.request, timeout)
            .await;
        let latency = elapsed_ms(started.0);
        let id = p.routed.decision_id.clone();
        match result {
            Ok(resp) => {
                let (usage, estimated) = usage_or_estimate(resp.usage, &p.request, &resp.content);
                let cost = model.cost_usd(usage.prompt_tokens, usage.completion_tokens);
                let attempt = ok_attempt(self, m, started.1, latency, usage, estimated, cost);
                self.log_attempts(&id, vec![attempt.clone()], Some(model.name.clone()))
                    .await;
                self.learn_output(&p.routed, m, usage.completion_tokens);
                Ok(Completed {
                    decision_id: id,
                    model: model.name.clone(),
                    provider: provider.name.clone(),
                    content: resp.content,
                    finish_reason: resp.finish_reason,
                    usage,
                    usage_estimated: estimated,
                    cost_usd: cost,
                    attempts: vec![attempt],
                })
            }
            Err(e) => {
                let attempt = failed_attempt(self, m, started.1, latency, &e);
                self.log_attempts(&id, vec![attempt], None).await;
                Err(self.dispatch_error(&id, m, e, p.deadline))
            }
        }
    }

    /// CompleteStream: route, open the provider's stream, then relay it. A
    /// failure before the stream opens is returned as the RPC's error; a
    /// failure after text was sent ends the stream with an error.
    pub async fn complete_stream(
        self: &Arc<Self>,
        input: &CompleteInput,
    ) -> Result<mpsc::Receiver<Result<StreamItem, Error>>, Error> {
        let p = self.prepare(input, Rpc::CompleteStream).await?;
        let m = p.routed.decision.model;
        let model = &self.catalog.models[m];
        let provider = self.catalog.provider_of(m);
        let started = (Instant::now(), now_ms());
        let id = p.routed.decision_id.clone();
        let opened = self
            .openai
            .stream(
                provider,
                &model.upstream,
                &p.request,
                self.attempt_timeout(p.deadline),
            )
            .await;
        let events = match opened {
            Ok(events) => events,
            Err(e) => {
                let attempt = failed_attempt(self, m, started.1, elapsed_ms(started.0), &e);
                self.log_attempts(&id, vec![attempt], None).await;
                return Err(self.dispatch_error(&id, m, e, p.deadline));
            }
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let engine = Arc::clone(self);
        tokio::spawn(async move { engine.pump(p, events, started, tx).await });
        Ok(rx)
    }

    async fn pump(
        &self,
        p: Prepared,
        mut events: crate::dispatch::EventStream,
        started: (Instant, i64),
        tx: mpsc::Sender<Result<StreamItem, Error>>,
    ) {
        let m = p.routed.decision.model;
        let model = &self.catalog.models[m];
        let id = p.routed.decision_id.clone();
        let start = StreamItem::Start {
            decision_id: id.clone(),
            model: model.name.clone(),
            provider: self.catalog.provider_of(m).name.clone(),
        };
        let mut client_gone = tx.send(Ok(start)).await.is_err();
        let mut text = String::new();
        let deadline = tokio::time::Instant::from_std(p.deadline);
        while !client_gone {
            let next = tokio::time::timeout_at(deadline, events.next()).await;
            let event = match next {
                Err(_) => Err(DispatchError::Timeout(
                    p.deadline.saturating_duration_since(started.0),
                )),
                Ok(None) => Err(DispatchError::Stream("ended without a final event".into())),
                Ok(Some(ev)) => ev,
            };
            match event {
                Ok(StreamEvent::Delta(d)) => {
                    text.push_str(&d);
                    client_gone = tx.send(Ok(StreamItem::Delta(d))).await.is_err();
                }
                Ok(StreamEvent::Done {
                    finish_reason,
                    usage,
                }) => {
                    let (usage, estimated) = usage_or_estimate(usage, &p.request, &text);
                    let cost = model.cost_usd(usage.prompt_tokens, usage.completion_tokens);
                    let latency = elapsed_ms(started.0);
                    let attempt = ok_attempt(self, m, started.1, latency, usage, estimated, cost);
                    self.log_attempts(&id, vec![attempt.clone()], Some(model.name.clone()))
                        .await;
                    self.learn_output(&p.routed, m, usage.completion_tokens);
                    let end = StreamItem::End {
                        finish_reason,
                        usage,
                        usage_estimated: estimated,
                        cost_usd: cost,
                        attempts: vec![attempt],
                    };
                    let _ = tx.send(Ok(end)).await;
                    return;
                }
                Err(e) => {
                    let attempt = failed_attempt(self, m, started.1, elapsed_ms(started.0), &e);
                    self.log_attempts(&id, vec![attempt], None).await;
                    tracing::warn!(decision_id = %id, error = %e, "stream failed after it started");
                    let err = self.dispatch_error(&id, m, e, p.deadline);
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            }
        }
        let mut attempt = failed_attempt(
            self,
            m,
            started.1,
            elapsed_ms(started.0),
            &DispatchError::Stream("client cancelled".into()),
        );
        attempt.outcome = "cancelled";
        self.log_attempts(&id, vec![attempt], None).await;
    }

    fn learn_output(&self, routed: &super::Routed, m: usize, completion_tokens: u32) {
        let intent = routed.intent().map(|i| i.label.as_str());
        self.output_tokens
            .observe(&self.catalog.models[m].name, intent, completion_tokens);
    }

    /// Attempts are logged after the answer is known; a failure to log them is
    /// reported but does not withhold an answer the provider already gave.
    async fn log_attempts(&self, id: &str, attempts: Vec<AttemptRow>, served: Option<String>) {
        for a in &attempts {
            self.metrics.attempt(&a.provider, &a.model, a.outcome);
        }
        if let Err(e) = self
            .store
            .record_attempts(id.to_owned(), attempts, served)
            .await
        {
            tracing::error!(decision_id = %id, error = %e, "could not log attempts");
        }
    }

    fn dispatch_error(&self, id: &str, m: usize, e: DispatchError, deadline: Instant) -> Error {
        let model = &self.catalog.models[m].name;
        let provider = &self.catalog.provider_of(m).name;
        let msg = format!("decision {id}: {model} via {provider}: {e}");
        match &e {
            DispatchError::Status { status, .. } => match status {
                400 | 413 | 422 => Error::invalid(
                    "messages",
                    format!("the provider rejected the request ({msg})"),
                ),
                401 | 403 | 404 => Error::FailedPrecondition(msg),
                429 => Error::ResourceExhausted(msg),
                _ => Error::Unavailable(msg),
            },
            DispatchError::Timeout(_) if Instant::now() >= deadline => Error::DeadlineExceeded(msg),
            _ => Error::Unavailable(msg),
        }
    }
}

fn usage_or_estimate(reported: Option<Usage>, req: &ChatRequest, content: &str) -> (Usage, bool) {
    match reported {
        Some(u) => (u, false),
        None => (
            Usage {
                prompt_tokens: tokens::estimate_prompt_tokens(
                    req.messages.iter().map(|m| m.content.as_str()),
                ),
                completion_tokens: tokens::estimate_text_tokens(content),
            },
            true,
        ),
    }
}

fn elapsed_ms(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX)
}

fn ok_attempt(
    e: &Engine,
    m: usize,
    started_at_ms: i64,
    latency_ms: u32,
    usage: Usage,
    estimated: bool,
    cost: f64,
) -> AttemptRow {
    AttemptRow {
        model: e.catalog.models[m].name.clone(),
        provider: e.catalog.provider_of(m).name.clone(),
        outcome: "ok",
        error: None,
        http_status: Some(200),
        started_at_ms,
        latency_ms,
        prompt_tokens: Some(usage.prompt_tokens),
        completion_tokens: Some(usage.completion_tokens),
        usage_estimated: estimated,
        cost_usd: Some(cost),
    }
}

fn failed_attempt(
    e: &Engine,
    m: usize,
    started_at_ms: i64,
    latency_ms: u32,
    err: &DispatchError,
) -> AttemptRow {
    AttemptRow {
        model: e.catalog.models[m].name.clone(),
        provider: e.catalog.provider_of(m).name.clone(),
        outcome: err.outcome(),
        error: Some(err.to_string()),
        http_status: err.http_status(),
        started_at_ms,
        latency_ms,
        prompt_tokens: None,
        completion_tokens: None,
        usage_estimated: false,
        cost_usd: None,
    }
}
