//! The tonic `Router` service: thin. Each method converts wire types, calls
//! the engine, and converts back; errors map through [`crate::error`].
//! Every call runs in a `tracing` span that gets the decision id once known,
//! and is timed and counted in [`crate::metrics`] (streams: to their head).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Future, Stream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::auth::Principal;
use crate::dispatch::{
    ChatMessage, Part, ResponseFormat, Sampling, Tool, ToolCall, ToolChoice, Tools,
};
use crate::engine::{CompleteInput, Engine, RouteInput, Rpc, StreamItem};
use crate::pb;
use crate::store::AttemptRow;
use crate::telemetry;

pub struct RouterService {
    engine: Arc<Engine>,
}

impl RouterService {
    pub fn new(engine: Arc<Engine>) -> Self {
        RouterService { engine }
    }

    /// Runs one RPC in its span, then counts it by status code.
    /// `parent` is the caller's trace context, if it sent one.
    async fn observed<T>(
        &self,
        rpc: &'static str,
        parent: Option<opentelemetry::Context>,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let span = tracing::info_span!(
            "grpc",
            otel.kind = "server",
            rpc,
            decision_id = tracing::field::Empty
        );
        telemetry::continue_trace(&span, parent);
        let started = std::time::Instant::now();
        let r = call.instrument(span).await;
        let code = match &r {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.engine
            .metrics()
            .request("grpc", rpc, &format!("{code:?}"), started.elapsed());
        r
    }

    /// A Complete request as the engine takes it: under its key (the key's
    /// tenant, its and its tenant's models), with the metadata the rules read.
    fn complete_input(&self, req: Request<pb::CompleteRequest>) -> Result<CompleteInput, Status> {
        let key = principal(&req);
        let headers = self.rule_headers(req.metadata());
        let m = req.metadata();
        let bypass = crate::http::bypasses_cache(|h| m.get(h).and_then(|v| v.to_str().ok()));
        let mut input = complete_input(req.into_inner())?;
        input.route.headers = headers;
        input.bypass_cache = bypass;
        if let Some(k) = &key {
            self.engine
                .apply_key(k, &mut input.route, input.model.as_deref())?;
        }
        Ok(input)
    }

    /// The call's metadata entries some rule reads.
    fn rule_headers(&self, m: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
        self.engine
            .rules
            .headers_of(|h| m.get(h).and_then(|v| v.to_str().ok()))
    }

    /// Past the engine's in-flight limit (shared with the HTTP front),
    /// callers get RESOURCE_EXHAUSTED at once instead of queueing.
    fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.engine.admit().ok_or_else(|| {
            crate::error::Error::exhausted("the server is at its in-flight request limit")
                .retry_after_this(std::time::Duration::from_secs(1))
                .into()
        })
    }
}

/// A Route request (or a Complete request's routing part) as the engine's input.
pub fn route_input(r: Option<pb::RouteRequest>) -> RouteInput {
    let r = r.unwrap_or_default();
    RouteInput {
        messages: r
            .messages
            .into_iter()
            .map(|m| {
                let (content, parts) = parts(m.content, m.parts);
                ChatMessage {
                    role: m.role,
                    content,
                    parts,
                    tool_calls: m
                        .tool_calls
                        .into_iter()
                        .map(|c| ToolCall {
                            id: c.id,
                            name: c.name,
                            arguments: c.arguments,
                        })
                        .collect(),
                    tool_call_id: m.tool_call_id,
                }
            })
            .collect(),
        tenant: r.tenant,
        candidates: r.candidates,
        ordered: r.candidates_ordered,
        cost_weight: r.cost_weight,
        max_cost_usd: r.max_cost_usd,
        metadata: r.metadata.into_iter().collect(),
        max_output_tokens: r.max_output_tokens,
        max_tokens: None,
        needs: Default::default(),
        session_id: r.session_id,
        key: None,
        tenant_settings: None,
        user: None,
        headers: Vec::new(),
        reading: None,
    }
}

/// A message's content and parts, `content` first as a text part (see
/// [`crate::dispatch::from_parts`]).
fn parts(content: String, wire: Vec<pb::ContentPart>) -> (String, Vec<Part>) {
    if wire.is_empty() {
        return (content, Vec::new());
    }
    let lead = (!content.is_empty()).then_some(Part::Text(content));
    let parts = lead
        .into_iter()
        .chain(wire.into_iter().filter_map(|p| match p.part? {
            pb::content_part::Part::Text(t) => Some(Part::Text(t)),
            pb::content_part::Part::ImageUrl(i) => Some(Part::Image {
                url: i.url,
                detail: i.detail,
            }),
        }))
        .collect();
    crate::dispatch::from_parts(parts)
}

/// The request's tools in our terms; the engine validates them further.
fn tools(r: &mut pb::CompleteRequest) -> Result<Tools, Status> {
    let defs = std::mem::take(&mut r.tools)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let parameters = t
                .parameters_json
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(|e| {
                    Status::invalid_argument(format!("tools[{i}].parameters_json: {e}"))
                })?;
            Ok(Tool {
                name: t.name,
                description: t.description,
                parameters,
                strict: t.strict,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    let choice = match r.tool_choice.take().and_then(|c| c.choice) {
        None => None,
        Some(pb::tool_choice::Choice::Function(name)) => Some(ToolChoice::Function(name)),
        Some(pb::tool_choice::Choice::Mode(m)) => Some(match m.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(Status::invalid_argument(format!(
                    "tool_choice.mode: {other:?} is not one of auto, none, required"
                )));
            }
        }),
    };
    Ok(Tools {
        defs,
        choice,
        parallel: r.parallel_tool_calls,
    })
}

/// `response_format` in our terms: `text` (or unset) is free text.
fn response_format(f: Option<pb::ResponseFormat>) -> Result<Option<ResponseFormat>, Status> {
    let Some(f) = f else { return Ok(None) };
    match f.r#type.as_str() {
        "" | "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => Ok(Some(ResponseFormat::JsonSchema {
            name: f.name,
            description: f.description,
            schema: f
                .schema_json
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| {
                    Status::invalid_argument(format!("response_format.schema_json: {e}"))
                })?,
            strict: f.strict,
        })),
        other => Err(Status::invalid_argument(format!(
            "response_format.type: {other:?} is not one of text, json_object, json_schema"
        ))),
    }
}

/// The API key the interceptor let the call in with (keys required).
fn principal<T>(req: &Request<T>) -> Option<Principal> {
    req.extensions().get::<Principal>().cloned()
}

/// A Complete request as the engine's input, or why it is not one.
pub fn complete_input(mut r: pb::CompleteRequest) -> Result<CompleteInput, Status> {
    let tools = tools(&mut r)?;
    let response_format = response_format(r.response_format.take())?;
    Ok(CompleteInput {
        route: route_input(r.route),
        model: r.model,
        max_tokens: r.max_tokens,
        max_completion_tokens: false,
        temperature: r.temperature,
        deadline_ms: r.deadline_ms,
        stop: r.stop,
        sampling: Sampling {
            top_p: r.top_p,
            seed: r.seed,
            frequency_penalty: r.frequency_penalty,
            presence_penalty: r.presence_penalty,
            reasoning_effort: r.reasoning_effort,
            top_k: r.top_k,
            reasoning_budget: r.reasoning_budget_tokens,
        },
        user: r.user,
        tools,
        response_format,
        // Set from the call's metadata (`Service::complete_input`).
        bypass_cache: false,
    })
}

fn attempt(a: &AttemptRow) -> pb::Attempt {
    pb::Attempt {
        model: a.model.clone(),
        provider: a.provider.clone(),
        outcome: a.outcome.into(),
        error: a.error.clone().unwrap_or_default(),
        latency_ms: a.latency_ms,
        http_status: a.http_status.map(u32::from).unwrap_or(0),
        deployment: a.deployment.clone().unwrap_or_default(),
    }
}

fn usage(u: crate::dispatch::Usage, estimated: bool) -> pb::Usage {
    pb::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        estimated,
        cached_tokens: u.cached_tokens,
        reasoning_tokens: u.reasoning_tokens,
        cache_write_tokens: u.cache_write_tokens,
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::CompleteChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::router_server::Router for RouterService {
    async fn route(
        &self,
        req: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::RouteResponse>, Status> {
        let parent = telemetry::remote_parent(&telemetry::Metadata(req.metadata()));
        self.observed("Route", parent, async move {
            let _permit = self.admit()?;
            let key = principal(&req);
            let headers = self.rule_headers(req.metadata());
            let mut input = route_input(Some(req.into_inner()));
            input.headers = headers;
            if let Some(k) = &key {
                self.engine.apply_key(k, &mut input, None)?;
            }
            let routed = self.engine.route(&input, None, Rpc::Route).await?;
            tracing::Span::current().record("decision_id", routed.decision_id.as_str());
            let catalog = &self.engine.catalog;
            let d = &routed.decision;
            Ok(Response::new(pb::RouteResponse {
                decision_id: routed.decision_id.clone(),
                model: catalog.models[d.model].name.clone(),
                provider: catalog.provider_of(d.model).name.clone(),
                propensity: d.propensity,
                policy_version: d.policy_version.clone(),
                candidates: d
                    .candidates
                    .iter()
                    .map(|c| pb::Candidate {
                        model: catalog.models[c.model].name.clone(),
                        eligible: c.eligible,
                        reason: c.reason.clone(),
                        expected_quality: c.expected_quality,
                        expected_cost_usd: c.expected_cost_usd,
                        score: c.score,
                        probability: c.probability,
                        provider: catalog.provider_of(c.model).name.clone(),
                        quality_std: c.quality_std,
                        latency_ms_ewma: c.load.latency_ms_ewma,
                        in_flight: c.load.in_flight,
                        load_penalty: c.load.load_penalty,
                    })
                    .collect(),
                cost_weight: routed.cost_weight,
                prompt_tokens: routed.prompt_tokens,
                explored: d.explored,
                classify_us: routed
                    .reading
                    .as_ref()
                    .map_or(0, |r| u32::try_from(r.micros).unwrap_or(u32::MAX)),
                classify_tokens: routed
                    .reading
                    .as_ref()
                    .map_or(0, |r| u32::try_from(r.tokens).unwrap_or(u32::MAX)),
                intent: routed.intent().map(|i| pb::Intent {
                    label: i.label.clone(),
                    confidence: i.confidence,
                }),
                rules: routed.explained.rules.clone(),
                profile: routed.explained.profile.clone().unwrap_or_default(),
                ab: routed.explained.split.as_ref().map(|a| pb::AbArm {
                    rule: a.rule.clone(),
                    arm: a.arm.clone(),
                    probability: a.probability,
                }),
            }))
        })
        .await
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let parent = telemetry::remote_parent(&telemetry::Metadata(req.metadata()));
        self.observed("Complete", parent, async move {
            let _permit = self.admit()?;
            let input = self.complete_input(req)?;
            let c = self.engine.complete(&input).await?;
            tracing::Span::current().record("decision_id", c.decision_id.as_str());
            self.engine
                .metrics()
                .cost(&c.model, &input.route.tenant, c.cost_usd);
            Ok(Response::new(pb::CompleteResponse {
                decision_id: c.decision_id,
                model: c.model,
                content: c.content,
                tool_calls: c
                    .tool_calls
                    .into_iter()
                    .map(|t| pb::ToolCall {
                        id: t.id,
                        name: t.name,
                        arguments: t.arguments,
                    })
                    .collect(),
                usage: Some(usage(c.usage, c.usage_estimated)),
                cost_usd: c.cost_usd,
                attempts: c.attempts.iter().map(attempt).collect(),
                finish_reason: c.finish_reason,
                provider: c.provider,
                cache: c.cache.as_str().into(),
            }))
        })
        .await
    }

    type CompleteStreamStream = ChunkStream;

    async fn complete_stream(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<Self::CompleteStreamStream>, Status> {
        let parent = telemetry::remote_parent(&telemetry::Metadata(req.metadata()));
        self.observed("CompleteStream", parent, async move {
            let permit = self.admit()?;
            let input = self.complete_input(req)?;
            let rx = self.engine.complete_stream(&input).await?;
            // The RPC's span is entered for every item, so it ends (at its
            // last exit) with the stream, not when this handler returns it.
            let span = tracing::Span::current();
            let chunks = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| {
                // The permit lives as long as the stream does.
                let _held = &permit;
                let _entered = span.enter();
                if let Ok(StreamItem::Start { decision_id, .. }) = &item {
                    tracing::info!(%decision_id, "stream started");
                }
                item.map(chunk).map_err(Status::from)
            });
            Ok(Response::new(Box::pin(chunks) as ChunkStream))
        })
        .await
    }

    async fn feedback(
        &self,
        req: Request<pb::FeedbackRequest>,
    ) -> Result<Response<pb::FeedbackResponse>, Status> {
        let parent = telemetry::remote_parent(&telemetry::Metadata(req.metadata()));
        self.observed("Feedback", parent, async move {
            let _permit = self.admit()?;
            let key = principal(&req);
            let r = req.into_inner();
            tracing::Span::current().record("decision_id", r.decision_id.as_str());
            let ack = self
                .engine
                .feedback(
                    &r.decision_id,
                    r.reward,
                    &r.source,
                    key.as_ref().map(|k| k.tenant.as_str()),
                )
                .await?;
            Ok(Response::new(pb::FeedbackResponse {
                decision_id: ack.decision_id,
                replaced: ack.replaced,
            }))
        })
        .await
    }

    async fn list_models(
        &self,
        _req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let parent = telemetry::remote_parent(&telemetry::Metadata(_req.metadata()));
        self.observed("ListModels", parent, async move {
            let catalog = &self.engine.catalog;
            Ok(Response::new(pb::ListModelsResponse {
                models: catalog
                    .models
                    .iter()
                    .enumerate()
                    .map(|(i, m)| pb::ModelInfo {
                        name: m.name.clone(),
                        provider: catalog.providers[m.provider].name.clone(),
                        upstream: m.upstream.clone(),
                        input_usd_per_mtok: m.input_usd_per_mtok,
                        output_usd_per_mtok: m.output_usd_per_mtok,
                        capabilities: m.capabilities.iter().map(|c| c.name().to_owned()).collect(),
                        context_window: m.context_window,
                        prior_quality: m.prior_quality,
                        available: catalog.disabled_reason(i).is_none(),
                    })
                    .collect(),
            }))
        })
        .await
    }
}

fn chunk(item: StreamItem) -> pb::CompleteChunk {
    match item {
        StreamItem::Start {
            decision_id,
            model,
            provider,
            cache,
        } => pb::CompleteChunk {
            decision_id,
            model,
            provider,
            cache: cache.as_str().into(),
            ..Default::default()
        },
        StreamItem::Delta(delta) => pb::CompleteChunk {
            delta,
            ..Default::default()
        },
        StreamItem::ToolCall(t) => pb::CompleteChunk {
            tool_call: Some(pb::ToolCallDelta {
                index: t.index,
                id: t.id.unwrap_or_default(),
                name: t.name.unwrap_or_default(),
                arguments: t.arguments,
            }),
            ..Default::default()
        },
        StreamItem::End {
            finish_reason,
            usage: u,
            usage_estimated,
            cost_usd,
            attempts,
        } => pb::CompleteChunk {
            usage: Some(usage(u, usage_estimated)),
            cost_usd,
            attempts: attempts.iter().map(attempt).collect(),
            finish_reason,
            ..Default::default()
        },
    }
}
