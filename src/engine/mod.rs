//! The router core, independent of transport: validate, select, log, dispatch.
//! The gRPC service (and the HTTP front) convert their wire types into these
//! inputs and call these functions; each reads top to bottom as the story of
//! one request.

mod attempts;
mod complete;
mod gauges;
pub mod learn;
pub mod output_tokens;
mod promoted;
pub mod read;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use complete::{CompleteInput, Completed, StreamItem};
pub use learn::Learning;
pub use read::{Intent, Reader, Reading};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::dispatch::budget::RetryBudget;
use crate::dispatch::health::{Health, HealthSnapshot};
use crate::dispatch::{ChatMessage, Dispatcher};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::policy::eligibility::{self, Constraints};
use crate::policy::{self, Context, Decision, Policy};
use crate::store::{DecisionRow, FeedbackOutcome, FeedbackRow, Store};
use crate::tokens;

/// The routing part of every request.
#[derive(Debug, Clone, Default)]
pub struct RouteInput {
    pub messages: Vec<ChatMessage>,
    pub tenant: String,
    pub candidates: Vec<String>,
    pub cost_weight: Option<f64>,
    pub max_cost_usd: Option<f64>,
    pub metadata: BTreeMap<String, String>,
    /// The caller's expectation of output tokens; learned per model when unset.
    pub max_output_tokens: Option<u32>,
    /// A hard cap on output tokens (Complete's `max_tokens`).
    pub max_tokens: Option<u32>,
}

/// A logged decision.
#[derive(Debug, Clone)]
pub struct Routed {
    pub decision_id: String,
    pub decision: Decision,
    pub cost_weight: f64,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    /// What the classifier read; `None` when it is disabled.
    pub reading: Option<Reading>,
    /// The context vector the policy decided on.
    pub context: Vec<f32>,
}

impl Routed {
    pub fn intent(&self) -> Option<&Intent> {
        self.reading.as_ref().and_then(|r| r.intent.as_ref())
    }
}

/// Which RPC made a decision (logged, so retraining can tell them apart).
#[derive(Debug, Clone, Copy)]
pub enum Rpc {
    Route,
    Complete,
    CompleteStream,
}

impl Rpc {
    fn as_str(self) -> &'static str {
        match self {
            Rpc::Route => "route",
            Rpc::Complete => "complete",
            Rpc::CompleteStream => "complete_stream",
        }
    }
}

pub struct Engine {
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    policy: Arc<dyn Policy>,
    learning: Option<Arc<Learning>>,
    reader: Option<Arc<Reader>>,
    output_tokens: output_tokens::OutputTokens,
    store: Store,
    dispatcher: Dispatcher,
    /// Breakers and load per model/provider (the failure policy's memory).
    health: Arc<Health>,
    retry_budget: Arc<RetryBudget>,
    /// Set by `bandit.seed`: one seeded generator for every decision, so a
    /// sequential replay makes the same choices every run.
    seeded: Option<std::sync::Mutex<rand::rngs::StdRng>>,
    /// Shared with every transport: decisions and classifier time are counted here.
    metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(
        config: Arc<Config>,
        catalog: Arc<Catalog>,
        policy: Arc<dyn Policy>,
        learning: Option<Arc<Learning>>,
        reader: Option<Arc<Reader>>,
        output_tokens: output_tokens::OutputTokens,
        store: Store,
    ) -> Self {
        let seeded = config
            .bandit
            .seed
            .map(|s| std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(s)));
        let http = reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build()
            .expect("a TLS backend is compiled in: this is a bug");
        let health = Arc::new(Health::new(
            &catalog,
            config.dispatch.policy.breaker,
            config.dispatch.policy.shed_after_429s,
        ));
        let retry_budget = Arc::new(RetryBudget::new(
            config.dispatch.policy.retry_budget_ratio,
            config.dispatch.policy.retry_budget_reserve,
        ));
        let metrics = Metrics::new();
        gauges::register(
            &metrics,
            Arc::clone(&health),
            Arc::clone(&retry_budget),
            Arc::clone(&catalog),
        );
        Engine {
            policy,
            learning,
            reader,
            output_tokens,
            store,
            dispatcher: Dispatcher::new(http),
            health,
            retry_budget,
            config,
            catalog,
            seeded,
            metrics,
        }
    }

    /// A read-only picture of dispatch health: breaker state, in-flight,
    /// latency EWMA, recent 429s and retries per model and provider, and the
    /// retry budget (for `/metrics`).
    pub fn dispatch_health(&self) -> HealthSnapshot {
        self.health
            .snapshot(&self.catalog, self.retry_budget.snapshot())
    }

    /// Whether the classifier is loaded (false when `classifier.enabled` is off).
    pub fn classifier_loaded(&self) -> bool {
        self.reader.is_some()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether this request's prompt is read by the classifier: always when
    /// the policy chooses; for a pinned model only with `routing.classify_pinned`
    /// (the reading then only feeds learning, at the cost of latency).
    fn reads(&self, pinned: bool) -> Option<&Arc<Reader>> {
        self.reader
            .as_ref()
            .filter(|_| !pinned || self.config.routing.classify_pinned)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Route: decide and durably log; `pin` skips the choice (propensity 1).
    pub async fn route(
        &self,
        input: &RouteInput,
        pin: Option<&str>,
        rpc: Rpc,
    ) -> Result<Routed, Error> {
        let (routed, row) = self.decide(input, pin, rpc).await?;
        self.store.record_decision(row).await?;
        Ok(routed)
    }

    /// [`Engine::route`] without logging: returns the decision's log row for
    /// the caller to write. Complete writes it with its attempts in one
    /// commit, a stream before its first chunk; both before they answer, so
    /// the log stays ahead of every acknowledgement.
    pub(crate) async fn decide(
        &self,
        input: &RouteInput,
        pin: Option<&str>,
        rpc: Rpc,
    ) -> Result<(Routed, DecisionRow), Error> {
        let cfg = &self.config;
        validate::messages(&input.messages, cfg.server.max_prompt_bytes)?;
        validate::tenant(&input.tenant)?;
        validate::metadata(&input.metadata)?;
        let allow = validate::candidates(&input.candidates, &self.catalog)?;
        let cost_weight = validate::non_negative("cost_weight", input.cost_weight)?
            .unwrap_or(cfg.routing.cost_weight);
        let max_cost_usd = validate::non_negative("max_cost_usd", input.max_cost_usd)?;
        let explicit_output = validate::positive_u32("max_output_tokens", input.max_output_tokens)?;
        let pinned = pin
            .map(|name| validate::model(name, &self.catalog))
            .transpose()?;
        if let (Some(p), Some(allow)) = (pinned, &allow)
            && !allow.contains(&p)
        {
            return Err(Error::invalid(
                "model",
                "the pinned model is not in candidates",
            ));
        }

        let prompt_tokens =
            tokens::estimate_prompt_tokens(input.messages.iter().map(|m| m.content.as_str()));
        let reading = match self.reads(pinned.is_some()) {
            Some(r) => {
                let _pending = self.metrics.classify_enter();
                let started = std::time::Instant::now();
                let reading = r.read(&input.messages).await?;
                self.metrics.classified(started.elapsed());
                Some(reading)
            }
            None => None,
        };
        let context = policy::features::context(reading.as_ref(), prompt_tokens);
        let intent = reading
            .as_ref()
            .and_then(|r| r.intent.as_ref())
            .map(|i| i.label.as_str());
        let output_tokens: Vec<u32> = self
            .catalog
            .models
            .iter()
            .map(|m| {
                let expected = explicit_output
                    .or_else(|| self.output_tokens.expected(&m.name, intent))
                    .unwrap_or(cfg.routing.default_output_tokens);
                input.max_tokens.map_or(expected, |cap| expected.min(cap))
            })
            .collect();
        let mut screened = eligibility::screen(
            &self.catalog,
            &Constraints {
                allow: allow.as_deref(),
                prompt_tokens,
                output_tokens: &output_tokens,
                max_cost_usd,
            },
        );
        let unhealthy = self.screen_health(&mut screened);
        self.screen_load(&mut screened);
        let decision = match pinned {
            Some(p) if unhealthy.contains(&p) => {
                return Err(Error::Unavailable(format!(
                    "model {} is unavailable: {}",
                    self.catalog.models[p].name, screened[p].reason
                )));
            }
            Some(p) => {
                let c = &screened[p];
                if !c.eligible {
                    return Err(Error::FailedPrecondition(format!(
                        "model {} cannot serve this request: {}",
                        self.catalog.models[p].name, c.reason
                    )));
                }
                policy::pinned(p, screened, cost_weight)
            }
            None => {
                if !screened.iter().any(|c| c.eligible) {
                    // Only the failure policy stood in the way: the models
                    // exist but cannot answer now, so say UNAVAILABLE at once.
                    if !unhealthy.is_empty() {
                        return Err(Error::Unavailable(self.no_eligible_reasons(&screened)));
                    }
                    return Err(self.no_eligible(&screened));
                }
                let ctx = Context {
                    cost_weight,
                    features: context.clone(),
                    prompt_tokens,
                };
                match &self.seeded {
                    Some(rng) => {
                        let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                        self.policy.decide(&ctx, screened, &mut *rng)
                    }
                    None => self.policy.decide(&ctx, screened, &mut rand::rng()),
                }
            }
        };

        let routed = Routed {
            decision_id: uuid::Uuid::now_v7().to_string(),
            output_tokens: output_tokens[decision.model],
            decision,
            cost_weight,
            prompt_tokens,
            reading,
            context,
        };
        let row = self.decision_row(input, &routed, pinned.is_some(), max_cost_usd, rpc);
        // Transports open a span per request with an empty `decision_id`
        // field: fill it now so everything after (dispatch, errors) carries it.
        tracing::Span::current().record("decision_id", routed.decision_id.as_str());
        self.metrics.decision(
            &self.catalog.models[routed.decision.model].name,
            pinned.is_some(),
        );
        tracing::info!(
            decision_id = %routed.decision_id,
            model = %self.catalog.models[routed.decision.model].name,
            intent = routed.intent().map(|i| i.label.as_str()).unwrap_or(""),
            rpc = rpc.as_str(),
            "routed"
        );
        Ok((routed, row))
    }

    fn no_eligible(&self, screened: &[policy::Candidate]) -> Error {
        Error::FailedPrecondition(self.no_eligible_reasons(screened))
    }

    fn no_eligible_reasons(&self, screened: &[policy::Candidate]) -> String {
        let reasons: Vec<String> = screened
            .iter()
            .filter(|c| c.reason != "not in the request's candidates")
            .map(|c| format!("{}: {}", self.catalog.models[c.model].name, c.reason))
            .collect();
        format!("no eligible model ({})", reasons.join("; "))
    }

    fn decision_row(
        &self,
        input: &RouteInput,
        r: &Routed,
        pinned: bool,
        max_cost_usd: Option<f64>,
        rpc: Rpc,
    ) -> DecisionRow {
        let model = &self.catalog.models[r.decision.model];
        let candidates: Vec<serde_json::Value> = r
            .decision
            .candidates
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                v["model"] = self.catalog.models[c.model].name.clone().into();
                v
            })
            .collect();
        DecisionRow {
            id: r.decision_id.clone(),
            created_at_ms: now_ms(),
            tenant: input.tenant.clone(),
            rpc: rpc.as_str(),
            model: model.name.clone(),
            provider: self.catalog.provider_of(r.decision.model).name.clone(),
            pinned,
            propensity: r.decision.propensity,
            explored: r.decision.explored,
            policy_version: r.decision.policy_version.clone(),
            cost_weight: r.cost_weight,
            max_cost_usd,
            prompt_tokens: r.prompt_tokens,
            output_tokens: r.output_tokens,
            message_count: u32::try_from(input.messages.len()).unwrap_or(u32::MAX),
            features: r
                .reading
                .as_ref()
                .map(|x| policy::features::pack_f16(&x.embedding)),
            intent: r.intent().map(|i| i.label.clone()),
            // A pinned request that skipped the classifier has no intent
            // features: it is logged without a context so learning skips it.
            context: (r.reading.is_some() || self.reader.is_none())
                .then(|| learn::pack_f32(&r.context)),
            candidates: serde_json::Value::from(candidates).to_string(),
            metadata: serde_json::to_string(&input.metadata).unwrap_or_else(|_| "{}".into()),
            prompt: self
                .config
                .server
                .store_prompts
                .then(|| serde_json::to_string(&input.messages).unwrap_or_default()),
            served_model: None,
        }
    }

    /// Feedback: validate and durably record; (decision, source) replaces.
    pub async fn feedback(
        &self,
        decision_id: &str,
        reward: f64,
        source: &str,
    ) -> Result<FeedbackOutcome, Error> {
        let decision_id = validate::decision_id(decision_id)?;
        let reward = validate::reward(reward)?;
        let source = validate::source(source)?;
        let outcome = self
            .store
            .record_feedback(FeedbackRow {
                decision_id: decision_id.clone(),
                source,
                reward,
                at_ms: now_ms(),
            })
            .await?;
        if let Some(l) = &self.learning {
            l.observe(&outcome, reward);
        }
        tracing::info!(%decision_id, reward, replaced = outcome.replaced, "feedback");
        Ok(outcome)
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
