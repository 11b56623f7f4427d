//! Complete and CompleteStream: route, call the chosen model's provider within
//! the deadline, log every attempt, and report usage and cost.
//!
//! The provider call runs in its own task so that a client that goes away
//! mid-call cannot stop the attempt from being logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Engine, RouteInput, Routed, Rpc, cached, validate};
use crate::cache::{Answer, Key, Status};
use crate::config::Capability;
use crate::dispatch::failover::{Failed, Served, elapsed_ms};
use crate::dispatch::{
    ChatRequest, DispatchError, ResponseFormat, Sampling, StreamEvent, ToolCall, ToolCallDelta,
    Tools, Usage,
};
use crate::error::Error;
use crate::policy::eligibility;
use crate::store::{AttemptRow, DecisionRow, ShadowRow};
use crate::tokens;

/// Buffered stream items between the provider pump and the client.
const STREAM_BUFFER: usize = 32;

#[derive(Debug, Clone, Default)]
pub struct CompleteInput {
    pub route: RouteInput,
    /// Pin a catalog model: no choice is made, the decision is still logged.
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    /// `max_tokens` came as `max_completion_tokens` (see [`ChatRequest`]).
    pub max_completion_tokens: bool,
    pub temperature: Option<f64>,
    pub deadline_ms: Option<u32>,
    /// Stop sequences passed to the provider; empty for none.
    pub stop: Vec<String>,
    pub sampling: Sampling,
    /// The end user, forwarded where the protocol has a field for it.
    pub user: Option<String>,
    pub tools: Tools,
    pub response_format: Option<ResponseFormat>,
    /// Skip the response cache (`cache-control: no-cache`): neither served
    /// from it nor kept in it.
    pub bypass_cache: bool,
}

#[derive(Debug, Clone)]
pub struct Completed {
    pub decision_id: String,
    pub model: String,
    pub provider: String,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: String,
    pub usage: Usage,
    pub usage_estimated: bool,
    pub cost_usd: f64,
    pub attempts: Vec<AttemptRow>,
    /// What the rules did (matched rules, profile, A/B arm).
    pub explained: super::Explained,
    /// Whether the response cache answered.
    pub cache: Status,
}

/// What a streamed completion yields, in order: one `Start`, any number of
/// `Delta`s and `ToolCall` pieces, then one `End` (or an error).
#[derive(Debug, Clone)]
pub enum StreamItem {
    Start {
        decision_id: String,
        model: String,
        provider: String,
        cache: Status,
    },
    Delta(String),
    ToolCall(ToolCallDelta),
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
    /// The API key and its tenant's settings, whose token limits settle
    /// with the real usage and whose spend grows by the real cost.
    key: Option<crate::auth::Principal>,
    tenant_settings: Option<crate::auth::Principal>,
    /// The decision's log row, not written yet.
    row: Box<DecisionRow>,
    request: ChatRequest,
    /// What the request asks of a model (a shadow must meet it too).
    needs: eligibility::Needs,
    deadline: Instant,
    /// Where the response cache keeps the answer, and what it said.
    cache: Keeping,
}

/// Where a miss's answer goes in the response cache.
struct Keeping {
    key: Option<Key>,
    status: Status,
    /// The semantic scope and the question's embedding.
    question: Option<(Key, Vec<f32>)>,
}

impl Engine {
    async fn prepare(
        &self,
        input: &CompleteInput,
        rpc: Rpc,
        looked: cached::Lookup,
    ) -> Result<Prepared, Error> {
        let max_tokens = validate::positive_u32("max_tokens", input.max_tokens)?;
        let temperature = validate::temperature(input.temperature)?;
        let deadline_ms = validate::positive_u32("deadline_ms", input.deadline_ms)?;
        validate::stop(&input.stop)?;
        validate::sampling(&input.sampling)?;
        validate::tools(&input.tools)?;
        validate::response_format(input.response_format.as_ref())?;
        let mut route = input.route.clone();
        // The reply can be no longer than max_tokens: it caps expected costs.
        route.max_tokens = max_tokens;
        if route.user.is_none() {
            route.user.clone_from(&input.user);
        }
        route.needs = needs(input);
        let question = looked.question.map(|(scope, reading)| {
            let embedding = reading.embedding.clone();
            route.reading = Some(reading);
            (scope, embedding)
        });
        let (routed, row) = self.decide(&route, input.model.as_deref(), rpc).await?;
        // Budgets before any call: spend so far plus this call's expected cost.
        let expected = routed.decision.candidates[routed.decision.model].expected_cost_usd;
        let keys: Vec<&crate::store::KeyRow> = route
            .key
            .iter()
            .chain(&route.tenant_settings)
            .map(|k| &**k)
            .collect();
        self.gate.spend.refresh(&self.store, &keys).await;
        for k in route.key.iter().chain(&route.tenant_settings) {
            self.gate.spend.check(k, expected)?;
        }
        let deadline = deadline_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(self.config.dispatch.deadline)
            .min(self.config.dispatch.deadline);
        Ok(Prepared {
            needs: route.needs.clone(),
            key: route.key.clone(),
            tenant_settings: route.tenant_settings.clone(),
            routed,
            row: Box::new(row),
            request: ChatRequest {
                messages: route.messages,
                max_tokens,
                max_completion_tokens: input.max_completion_tokens,
                temperature,
                // Each adapter translates them to its protocol's field.
                stop: input.stop.clone(),
                sampling: input.sampling.clone(),
                user: input.user.clone(),
                tools: input.tools.clone(),
                response_format: input.response_format.clone(),
            },
            deadline: Instant::now() + deadline,
            cache: Keeping {
                key: looked.key,
                status: looked.status,
                question,
            },
        })
    }

    /// Complete: route, call providers under the failure policy (retries,
    /// fallback, breaker) within the deadline, log every attempt, answer.
    pub async fn complete(self: &Arc<Self>, input: &CompleteInput) -> Result<Completed, Error> {
        let looked = self.look_up(input).await?;
        if let Some(hit) = &looked.hit {
            return self.serve_cached(input, Rpc::Complete, hit).await;
        }
        let p = self.prepare(input, Rpc::Complete, looked).await?;
        self.shadow(&p);
        let engine = Arc::clone(self);
        // Its own task, so the decision is logged whatever the caller does;
        // `alive` lives as long as the caller waits: once it is dropped (the
        // client went away), the call in flight is dropped too and logged as
        // cancelled.
        let (alive, gone) = watch::channel(());
        let done = tokio::spawn(async move { engine.dispatch(p, gone).await }).await;
        drop(alive);
        done.map_err(|e| Error::internal("the dispatch task failed").because(e))?
    }

    async fn dispatch(&self, p: Prepared, gone: watch::Receiver<()>) -> Result<Completed, Error> {
        let id = p.routed.decision_id.clone();
        let mut rows = Vec::new();
        let result = self
            .attempts(&p.routed, p.deadline, &mut rows, |m, d, t| {
                let (deployment, provider) = self.catalog.deployment(m, d);
                let call = self
                    .dispatcher
                    .complete(provider, &deployment.upstream, &p.request, t);
                let mut gone = gone.clone();
                async move {
                    tokio::select! {
                        r = call => r,
                        _ = gone.changed() => Err(DispatchError::Cancelled),
                    }
                }
            })
            .await;
        let mut row = p.row;
        match result {
            Ok(s) => {
                let (m, d) = (s.model, s.deployment);
                let model = &self.catalog.models[m];
                let (deployment, provider) = self.catalog.deployment(m, d);
                self.failover.health().finish(s.guard, Some(true), false);
                let resp = s.value;
                let (usage, estimated) =
                    usage_or_estimate(resp.usage, &p.request, || answered(&resp));
                let cost = deployment.cost_of(&usage);
                self.settle_key(
                    [p.key.as_ref(), p.tenant_settings.as_ref()],
                    p.routed.prompt_tokens,
                    usage,
                    cost,
                );
                rows.push(ok_attempt(self, (m, d), s.started, usage, estimated, cost));
                row.served_model = Some(model.name.clone());
                let tenant = row.tenant.clone();
                // Nothing about the decision is acknowledged before it is
                // durable: it commits with its attempts, in one go.
                self.log_decision(*row, rows.clone()).await?;
                self.metrics.cost(&model.name, &tenant, cost);
                self.learn_output(&p.routed, m, usage.completion_tokens);
                let done = Completed {
                    decision_id: id,
                    model: model.name.clone(),
                    provider: provider.name.clone(),
                    content: resp.content,
                    tool_calls: resp.tool_calls,
                    finish_reason: resp.finish_reason,
                    usage,
                    usage_estimated: estimated,
                    cost_usd: cost,
                    attempts: rows,
                    explained: p.routed.explained.clone(),
                    cache: p.cache.status,
                };
                self.keep(p.cache.key, p.cache.question, cached::answer_of(&done));
                Ok(done)
            }
            Err(f) => {
                let n = rows.len();
                // The error names the decision: it is durable first.
                self.log_decision(*row, rows).await?;
                Err(self.dispatch_error(&id, f.model, f.error, p.deadline, n))
            }
        }
    }

    /// A rule's shadow: the same request sent to another model in its own
    /// task, logged and never returned. It goes past the failure policy
    /// (a shadow's failures must not open the real traffic's breakers) and
    /// charges no budget; its spend is listed apart.
    fn shadow(self: &Arc<Self>, p: &Prepared) {
        let Some((m, rule)) = p.routed.shadow.clone() else {
            return;
        };
        if m == p.routed.decision.model || eligibility::unmet(&self.catalog, m, &p.needs).is_some()
        {
            return;
        }
        let engine = Arc::clone(self);
        let request = p.request.clone();
        let (decision_id, tenant) = (p.routed.decision_id.clone(), p.row.tenant.clone());
        let key_id = p.row.key_id.clone();
        tokio::spawn(async move {
            let model = &engine.catalog.models[m];
            let provider = engine.catalog.provider_of(m);
            let started_at_ms = crate::clock::now_ms();
            let started = Instant::now();
            let result = engine
                .dispatcher
                .complete(
                    provider,
                    &model.upstream,
                    &request,
                    engine.failover.timeouts(Duration::MAX),
                )
                .await;
            let mut row = ShadowRow {
                decision_id,
                rule,
                tenant,
                key_id,
                model: model.name.clone(),
                provider: provider.name.clone(),
                outcome: "ok",
                error: None,
                started_at_ms,
                latency_ms: elapsed_ms(started),
                prompt_tokens: None,
                completion_tokens: None,
                cost_usd: None,
                content: None,
            };
            match result {
                Ok(resp) => {
                    let (usage, _) = usage_or_estimate(resp.usage, &request, || answered(&resp));
                    row.prompt_tokens = Some(usage.prompt_tokens);
                    row.completion_tokens = Some(usage.completion_tokens);
                    row.cost_usd = Some(model.cost_of(&usage));
                    row.content = engine.config.server.store_prompts.then(|| answered(&resp));
                }
                Err(e) => {
                    row.outcome = e.outcome();
                    row.error = Some(e.to_string());
                }
            }
            engine
                .metrics
                .shadow(&row.model, row.outcome, row.cost_usd.unwrap_or(0.0));
            if let Err(e) = engine.store.insert_shadow(&row).await {
                tracing::warn!(error = %e, decision_id = %row.decision_id, "could not log a shadow call");
            }
        });
    }

    /// CompleteStream: route, then open streams under the failure policy
    /// until one yields its first event; only then is the model committed
    /// and the stream relayed. A failure before the first token falls back
    /// transparently; a failure after it ends the stream with an error,
    /// never with a second model's text spliced in.
    pub async fn complete_stream(
        self: &Arc<Self>,
        input: &CompleteInput,
    ) -> Result<mpsc::Receiver<Result<StreamItem, Error>>, Error> {
        let looked = self.look_up(input).await?;
        if let Some(hit) = &looked.hit {
            let c = self.serve_cached(input, Rpc::CompleteStream, hit).await?;
            return Ok(cached::replay(c));
        }
        let p = self.prepare(input, Rpc::CompleteStream, looked).await?;
        self.shadow(&p);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (opened_tx, opened_rx) = oneshot::channel();
        let engine = Arc::clone(self);
        // Its own task, so a client that goes away while we open cannot stop
        // the attempts from being logged.
        tokio::spawn(async move { engine.open_and_pump(p, tx, opened_tx).await });
        match opened_rx.await {
            Ok(Ok(())) => Ok(rx),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::internal("stream task ended early")),
        }
    }

    async fn open_and_pump(
        &self,
        p: Prepared,
        tx: mpsc::Sender<Result<StreamItem, Error>>,
        opened: oneshot::Sender<Result<(), Error>>,
    ) {
        let id = p.routed.decision_id.clone();
        let tenant = p.row.tenant.clone();
        let mut rows = Vec::new();
        let deadline = tokio::time::Instant::from_std(p.deadline);
        // The first chunk names the decision: its commit overlaps opening
        // the stream and is awaited before that chunk is sent.
        let logged = match self.store.begin_decision(*p.row).await {
            Ok(logged) => logged,
            Err(e) => {
                let _ = opened.send(Err(e.into()));
                return;
            }
        };
        let result = self
            .attempts(&p.routed, p.deadline, &mut rows, |m, d, t| {
                let (deployment, provider) = self.catalog.deployment(m, d);
                let req = &p.request;
                let tx = tx.clone();
                let open = async move {
                    let opened = tokio::time::Instant::now();
                    let mut events = self
                        .dispatcher
                        .stream(provider, &deployment.upstream, req, t)
                        .await?;
                    // The first event decides: until it arrives, the model
                    // can still be swapped without the client noticing.
                    let first = tokio::time::timeout_at(opened + t.first_byte, events.next()).await;
                    match first {
                        Err(_) => Err(DispatchError::Timeout(t.first_byte)),
                        Ok(None) => Err(DispatchError::Stream("ended before any event".into())),
                        Ok(Some(Err(e))) => Err(e),
                        Ok(Some(Ok(ev))) => Ok((ev, events)),
                    }
                };
                async move {
                    // A client that goes away while we open cancels the call.
                    tokio::select! {
                        r = open => r,
                        () = tx.closed() => Err(DispatchError::Cancelled),
                    }
                }
            })
            .await;
        if let Err(e) = logged.committed().await {
            if let Ok(s) = result {
                self.failover.health().finish(s.guard, None, false);
            }
            let _ = opened.send(Err(e.into()));
            return;
        }
        let s = match result {
            Ok(s) => s,
            Err(f) => {
                let n = rows.len();
                self.log_attempts(&id, rows, None).await;
                let _ = opened.send(Err(
                    self.dispatch_error(&id, f.model, f.error, p.deadline, n)
                ));
                return;
            }
        };
        let _ = opened.send(Ok(()));
        let (m, d) = (s.model, s.deployment);
        let model = &self.catalog.models[m];
        let (deployment, provider) = self.catalog.deployment(m, d);
        let (first, mut events) = s.value;
        let start = StreamItem::Start {
            decision_id: id.clone(),
            model: model.name.clone(),
            provider: provider.name.clone(),
            cache: p.cache.status,
        };
        let mut client_gone = tx.send(Ok(start)).await.is_err();
        let mut text = String::new();
        // The answer as the cache keeps it (`text` also counts tool calls,
        // for estimating usage).
        let (mut content, mut calls) = (String::new(), cached::Assembled::default());
        let mut next = Some(Ok(first));
        while !client_gone {
            let event = match next.take() {
                Some(ev) => ev,
                None => match tokio::time::timeout_at(deadline, events.next()).await {
                    Err(_) => Err(DispatchError::Timeout(
                        p.deadline.saturating_duration_since(s.started.0),
                    )),
                    Ok(None) => Err(DispatchError::Stream("ended without a final event".into())),
                    Ok(Some(ev)) => ev,
                },
            };
            match event {
                Ok(StreamEvent::Delta(d)) => {
                    text.push_str(&d);
                    if p.cache.key.is_some() {
                        content.push_str(&d);
                    }
                    client_gone = tx.send(Ok(StreamItem::Delta(d))).await.is_err();
                }
                Ok(StreamEvent::ToolCall(c)) => {
                    text.push_str(c.name.as_deref().unwrap_or(""));
                    text.push_str(&c.arguments);
                    if p.cache.key.is_some() {
                        calls.add(&c);
                    }
                    client_gone = tx.send(Ok(StreamItem::ToolCall(c))).await.is_err();
                }
                Ok(StreamEvent::Done {
                    finish_reason,
                    usage,
                }) => {
                    self.failover.health().finish(s.guard, Some(true), false);
                    let (usage, estimated) = usage_or_estimate(usage, &p.request, || text.clone());
                    let cost = deployment.cost_of(&usage);
                    self.settle_key(
                        [p.key.as_ref(), p.tenant_settings.as_ref()],
                        p.routed.prompt_tokens,
                        usage,
                        cost,
                    );
                    rows.push(ok_attempt(self, (m, d), s.started, usage, estimated, cost));
                    self.log_attempts(&id, rows.clone(), Some(model.name.clone()))
                        .await;
                    self.learn_output(&p.routed, m, usage.completion_tokens);
                    self.metrics.cost(&model.name, &tenant, cost);
                    self.keep(
                        p.cache.key,
                        p.cache.question,
                        Answer {
                            decision_id: id.clone(),
                            model: model.name.clone(),
                            provider: provider.name.clone(),
                            content,
                            tool_calls: calls.calls(),
                            finish_reason: finish_reason.clone(),
                            usage,
                            cost_usd: cost,
                            made_at_ms: crate::clock::now_ms(),
                        },
                    );
                    let end = StreamItem::End {
                        finish_reason,
                        usage,
                        usage_estimated: estimated,
                        cost_usd: cost,
                        attempts: rows,
                    };
                    let _ = tx.send(Ok(end)).await;
                    return;
                }
                Err(e) => {
                    // Text already reached the client: no fallback, a clear error.
                    self.failover.health().finish(s.guard, Some(false), false);
                    self.learn_failure(&p.routed, m, e.is_provider_fault());
                    rows.push(self.failover.failed_attempt((m, d), s.started, &e));
                    let n = rows.len();
                    self.log_attempts(&id, rows, None).await;
                    tracing::warn!(decision_id = %id, error = %e, "stream failed after it started");
                    let err = self.dispatch_error(&id, m, e, p.deadline, n);
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            }
        }
        // A client cancel says nothing about the model: no breaker verdict,
        // no bandit observation.
        self.failover.health().finish(s.guard, None, false);
        let mut attempt = self.failover.failed_attempt(
            (m, d),
            s.started,
            &DispatchError::Stream("client cancelled".into()),
        );
        attempt.outcome = "cancelled";
        rows.push(attempt);
        self.log_attempts(&id, rows, None).await;
    }

    /// An answer under an API key: its token limit, charged the prompt's
    /// estimate, settles with what the answer really used, and its cost is
    /// spend against the key's budgets.
    /// Settles the key's (and its tenant's) token limits with the real
    /// usage and adds the real cost to their spend.
    fn settle_key(
        &self,
        keys: [Option<&crate::auth::Principal>; 2],
        estimated: u32,
        usage: Usage,
        cost: f64,
    ) {
        let used = i64::from(usage.prompt_tokens) + i64::from(usage.completion_tokens);
        for k in keys.into_iter().flatten() {
            self.gate.limits.settle(k, used - i64::from(estimated));
            self.gate.spend.add(k, cost);
        }
    }

    fn learn_output(&self, routed: &super::Routed, m: usize, completion_tokens: u32) {
        let intent = routed.intent().map(|i| i.label.as_str());
        self.output_tokens
            .observe(&self.catalog.models[m].name, intent, completion_tokens);
    }

    /// Logs a Complete's decision with its attempts; an error means nothing
    /// of it is durable, so nothing may be acknowledged.
    pub(super) async fn log_decision(
        &self,
        row: DecisionRow,
        attempts: Vec<AttemptRow>,
    ) -> Result<(), Error> {
        for a in &attempts {
            self.metrics.attempt(&a.provider, &a.model, a.outcome);
        }
        let id = row.id.clone();
        self.store
            .record_decision_with_attempts(row, attempts)
            .await
            .map_err(|e| {
                tracing::error!(decision_id = %id, error = %e, "could not log the decision");
                e.into()
            })
    }

    /// A stream's attempts are logged after its decision, once the answer is
    /// known; a failure to log them is reported but does not withhold an
    /// answer the provider already gave.
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

    /// The failure policy's loop for one decision (see [`Failover::run`]);
    /// each model that fails it through its provider's fault teaches the bandit.
    ///
    /// [`Failover::run`]: crate::dispatch::failover::Failover::run
    async fn attempts<T, F, Fut>(
        &self,
        routed: &Routed,
        deadline: Instant,
        rows: &mut Vec<AttemptRow>,
        call: F,
    ) -> Result<Served<T>, Failed>
    where
        F: Fn(usize, usize, crate::dispatch::Timeouts) -> Fut,
        Fut: std::future::Future<Output = Result<T, DispatchError>>,
    {
        let id = &routed.decision_id;
        let plan = self.failover.plan(&routed.decision, &routed.order);
        self.failover
            .run(id, plan, deadline, rows, call, |m| {
                self.learn_failure(routed, m, true)
            })
            .await
    }

    /// One bandit observation per model that failed a request through its
    /// provider's fault (the same rule the log replays at start).
    fn learn_failure(&self, routed: &Routed, m: usize, failed: bool) {
        let policy = &self.config.dispatch.policy;
        if !failed || !policy.learn_from_failures {
            return;
        }
        if let Some(l) = &self.learning {
            l.observe_failure(
                &self.catalog.models[m].name,
                &routed.context,
                policy.failure_reward,
            );
        }
    }

    /// The RPC's error for the last failed attempt, with how many were made.
    fn dispatch_error(
        &self,
        id: &str,
        m: usize,
        e: DispatchError,
        deadline: Instant,
        attempts: usize,
    ) -> Error {
        let model = &self.catalog.models[m].name;
        let provider = &self.catalog.provider_of(m).name;
        let msg = format!("decision {id}: {model} via {provider}: {e} ({attempts} attempts)");
        Error::from_dispatch(msg, e, Instant::now() >= deadline)
    }
}

/// What the request needs of a model past its messages (see
/// [`Engine::decide`]): its settings, tools when it offers any, and JSON
/// answers when it asks for them.
fn needs(input: &CompleteInput) -> eligibility::Needs {
    let mut settings = input.sampling.set();
    let offers_tools = !input.tools.defs.is_empty();
    if offers_tools && input.tools.parallel == Some(false) {
        settings.push("parallel_tool_calls");
    }
    let mut capabilities = Vec::new();
    if offers_tools {
        capabilities.push(Capability::Tools);
    }
    if input.response_format.is_some() {
        capabilities.push(Capability::JsonSchema);
    }
    if crate::dispatch::reasoning::budget(&input.sampling).is_some() {
        capabilities.push(Capability::Reasoning);
    }
    eligibility::Needs {
        settings,
        capabilities,
        image_urls: false,
    }
}

/// What the model wrote, for estimating its tokens: text and tool calls.
fn answered(resp: &crate::dispatch::ChatResponse) -> String {
    let mut out = resp.content.clone();
    for c in &resp.tool_calls {
        out.push_str(&c.name);
        out.push_str(&c.arguments);
    }
    out
}

fn usage_or_estimate(
    reported: Option<Usage>,
    req: &ChatRequest,
    content: impl FnOnce() -> String,
) -> (Usage, bool) {
    match reported {
        Some(u) => (u, false),
        None => (
            Usage {
                prompt_tokens: tokens::estimate_prompt_tokens(
                    req.messages.iter().map(|m| m.content.as_str()),
                ),
                completion_tokens: tokens::estimate_text_tokens(&content()),
                cached_tokens: 0,
                reasoning_tokens: 0,
                cache_write_tokens: 0,
            },
            true,
        ),
    }
}

fn ok_attempt(
    e: &Engine,
    (m, d): (usize, usize),
    started: (Instant, i64),
    usage: Usage,
    estimated: bool,
    cost: f64,
) -> AttemptRow {
    let (deployment, provider) = e.catalog.deployment(m, d);
    AttemptRow {
        model: e.catalog.models[m].name.clone(),
        provider: provider.name.clone(),
        deployment: Some(deployment.name.clone()),
        outcome: "ok",
        error: None,
        http_status: Some(200),
        started_at_ms: started.1,
        latency_ms: elapsed_ms(started.0),
        prompt_tokens: Some(usage.prompt_tokens),
        completion_tokens: Some(usage.completion_tokens),
        usage_estimated: estimated,
        cost_usd: Some(cost),
    }
}
