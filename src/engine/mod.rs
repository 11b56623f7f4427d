//! The router core, independent of transport: validate, select, log, dispatch.
//! The gRPC service (and the HTTP front) convert their wire types into these
//! inputs and call these functions; each reads top to bottom as the story of
//! one request.

pub mod affinity;
mod cached;
mod complete;
pub mod output_tokens;
mod prompt;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use cached::CACHE_POLICY;
pub use complete::{CompleteInput, Completed, StreamItem};
pub use prompt::text_to_read;

use crate::catalog::Catalog;
use crate::classify::{Intent, Reader, Reading};
use crate::clock::now_ms;
use crate::config::{Capability, Config};
use crate::dispatch::failover::Failover;
use crate::dispatch::health::HealthSnapshot;
use crate::dispatch::{ChatMessage, Dispatcher};
use crate::error::Error;
use crate::learn::Learning;
use crate::metrics::Metrics;
use crate::policy::eligibility::{self, Constraints};
use crate::policy::{self, Context, Decision, Policy};
use crate::rules::{Facts, Rules, Variant, Verdict};
use crate::store::codec;
use crate::store::{DecisionRow, FeedbackRow, Store};
use crate::tokens;

/// The policy version logged for a decision that kept its conversation's model.
pub const AFFINITY: &str = "affinity";

/// A requested model named so is a profile (`switchyard/<name>`).
pub const PROFILE_PREFIX: &str = "switchyard/";

/// The routing part of every request.
#[derive(Debug, Clone, Default)]
pub struct RouteInput {
    pub messages: Vec<ChatMessage>,
    pub tenant: String,
    pub candidates: Vec<String>,
    /// The candidates are also the order to fall back in (OpenRouter's
    /// `models`), after the chosen model.
    pub ordered: bool,
    pub cost_weight: Option<f64>,
    pub max_cost_usd: Option<f64>,
    pub metadata: BTreeMap<String, String>,
    /// The caller's expectation of output tokens; learned per model when unset.
    pub max_output_tokens: Option<u32>,
    /// A hard cap on output tokens (Complete's `max_tokens`).
    pub max_tokens: Option<u32>,
    /// What a model must take to be eligible: settings its protocol has a
    /// field for, capabilities the catalog declares.
    pub needs: eligibility::Needs,
    /// The conversation this turn belongs to (see [`affinity`]).
    pub session_id: Option<String>,
    /// The API key the request came with (keys on): its rate limits apply.
    pub key: Option<crate::auth::Principal>,
    /// The key's tenant's settings, when it has any: they apply too.
    pub tenant_settings: Option<crate::auth::Principal>,
    /// The end user (a split may stick to it).
    pub user: Option<String>,
    /// The request headers (gRPC metadata) some rule reads, names lower-case.
    pub headers: Vec<(String, String)>,
    /// What the classifier already read of this request (the semantic
    /// cache embeds the question before routing): routing does not read again.
    pub reading: Option<Reading>,
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
    /// The request's fallback order (its ordered candidates), if it gave one.
    pub order: Vec<usize>,
    /// A model to mirror the completion to (a rule's shadow), never answering.
    pub shadow: Option<(usize, String)>,
    /// What the rules did, for the answer's explanation.
    pub explained: Explained,
}

/// The rules' part in a decision, as the answer explains it.
#[derive(Debug, Clone, Default)]
pub struct Explained {
    /// The `[[routes]]` that matched, in order.
    pub rules: Vec<String>,
    /// The profile in force.
    pub profile: Option<String>,
    /// The A/B arm, with its probability.
    pub split: Option<crate::store::SplitRow>,
}

impl Routed {
    pub fn intent(&self) -> Option<&Intent> {
        self.reading.as_ref().and_then(|r| r.intent.as_ref())
    }
}

/// Feedback as recorded: the validated id and source, and whether it
/// replaced an earlier value for the same (decision, source).
#[derive(Debug, Clone)]
pub struct FeedbackAck {
    pub decision_id: String,
    pub source: String,
    pub replaced: bool,
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

/// What an engine is built from (assembled by `app`).
pub struct Parts {
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    pub policy: Arc<dyn Policy>,
    pub learning: Option<Arc<Learning>>,
    pub reader: Option<Arc<Reader>>,
    pub output_tokens: output_tokens::OutputTokens,
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub failover: Failover,
    pub metrics: Arc<Metrics>,
    pub gate: Arc<crate::auth::Gate>,
    pub rules: Arc<Rules>,
    /// One per [`Rules::variant_policies`] entry: the A/B variants' policies.
    pub variants: Vec<Arc<dyn Policy>>,
    /// The response cache, when `cache.enabled`.
    pub cache: Option<Arc<crate::cache::Cache>>,
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
    /// Breakers, load and the retry budget (the failure policy's memory).
    failover: Failover,
    /// Set by `bandit.seed`: one seeded generator for every decision, so a
    /// sequential replay makes the same choices every run.
    seeded: Option<std::sync::Mutex<rand::rngs::StdRng>>,
    /// Shared with every transport: decisions and classifier time are counted here.
    metrics: Arc<Metrics>,
    /// `server.max_in_flight`, one limit for every transport together.
    admission: Arc<Semaphore>,
    /// Which model each live conversation was given.
    conversations: affinity::Conversations,
    /// API keys: who may call, as which tenant (read by the transports).
    pub gate: Arc<crate::auth::Gate>,
    /// `[[routes]]` and `[[profiles]]`, evaluated before the policy.
    pub rules: Arc<Rules>,
    /// The policies A/B splits try as variants.
    variants: Vec<Arc<dyn Policy>>,
    cache: Option<Arc<crate::cache::Cache>>,
}

impl Engine {
    pub fn new(p: Parts) -> Self {
        let seeded = p
            .config
            .bandit
            .seed
            .map(|s| std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(s)));
        Engine {
            admission: Arc::new(Semaphore::new(p.config.server.max_in_flight)),
            conversations: affinity::Conversations::new(&p.config.routing),
            gate: p.gate,
            rules: p.rules,
            variants: p.variants,
            cache: p.cache,
            policy: p.policy,
            learning: p.learning,
            reader: p.reader,
            output_tokens: p.output_tokens,
            store: p.store,
            dispatcher: p.dispatcher,
            failover: p.failover,
            config: p.config,
            catalog: p.catalog,
            seeded,
            metrics: p.metrics,
        }
    }

    /// A slot under `server.max_in_flight`, or `None` when every slot is
    /// taken (the transport answers "too many requests" at once).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.admission).try_acquire_owned().ok()
    }

    /// A read-only picture of dispatch health: breaker state, in-flight,
    /// latency EWMA, recent 429s and retries per model and provider, and the
    /// retry budget (for `/metrics`).
    pub fn dispatch_health(&self) -> HealthSnapshot {
        self.failover.snapshot()
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

    /// Breakers, load and the retry budget, as selection sees them now.
    pub fn health_snapshot(&self) -> crate::dispatch::health::HealthSnapshot {
        self.failover.snapshot()
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
        let (pin, profile) = match pin.and_then(|p| p.strip_prefix(PROFILE_PREFIX)) {
            Some(name) => (None, Some(self.requested_profile(name)?)),
            None => (pin, None),
        };
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
        let needs = conversation_needs(&input.needs, &input.messages);
        // A need the pinned model cannot meet is the request's to fix: a 400
        // naming both (routing instead skips such models).
        if let Some(p) = pinned
            && let Some(u) = eligibility::unmet(&self.catalog, p, &needs)
        {
            return Err(Error::invalid(
                u.param(),
                format!(
                    "model {} cannot take this request: {}; leave `{}` out, or choose another model",
                    self.catalog.models[p].name,
                    u.reason(&self.catalog, p),
                    u.param()
                ),
            ));
        }

        let prompt_tokens =
            tokens::estimate_prompt_tokens(input.messages.iter().map(|m| m.content.as_str()));
        // Rate limits before any work: a refused request costs nothing.
        for k in input.key.iter().chain(&input.tenant_settings) {
            self.gate.limits.admit(k, prompt_tokens).await?;
        }
        let reading = match self.reads(pinned.is_some()) {
            Some(_) if input.reading.is_some() => input.reading.clone(),
            Some(r) => {
                let _pending = self.metrics.classify_enter();
                let started = std::time::Instant::now();
                let reading = r.read(text_to_read(&input.messages)).await?;
                self.metrics.classified(started.elapsed());
                Some(reading)
            }
            None => None,
        };
        let verdict = self.rules(
            input,
            &needs,
            (profile, pinned.is_some()),
            prompt_tokens,
            reading.as_ref(),
        );
        // The operator's rules set the weights over the request's; a key
        // nearing its budget then routes cheaper before it is refused.
        let cost_weight = verdict.cost_weight.unwrap_or(cost_weight)
            * input
                .key
                .iter()
                .chain(&input.tenant_settings)
                .map(|k| self.gate.spend.steer(k))
                .fold(1.0, f64::max);
        let max_cost_usd = match (max_cost_usd, verdict.max_cost_usd) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let latency_weight = verdict.latency_weight.unwrap_or(cfg.routing.latency_weight);
        let context = policy::features::context(
            reading.as_ref().map(|r| r.intent_probs.as_slice()),
            prompt_tokens,
            &shape(&needs, &input.messages),
            reading.as_ref().map_or(&[], |r| r.quality.as_slice()),
        );
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
                needs: &needs,
            },
        );
        for c in screened.iter_mut().filter(|c| c.eligible) {
            if let Some(why) = verdict.excludes(&self.catalog, c.model) {
                c.eligible = false;
                c.reason = why;
            }
        }
        let unhealthy = self.failover.screen_health(&mut screened);
        self.failover.screen_load(&mut screened, latency_weight);
        // A rule's pin gives way when its model cannot take the request
        // (a tighter rule keeps it out, or it lacks a capability): the
        // policy then chooses among what the rules allow.
        let forced = verdict.pin.as_ref().filter(|(m, _)| screened[*m].eligible);
        let turn =
            self.conversations
                .turn(&input.tenant, input.session_id.as_deref(), &input.messages);
        // A conversation keeps its model while that model can take the turn.
        let kept = turn
            .as_ref()
            .and_then(|t| self.conversations.model(t))
            .filter(|m| screened.get(*m).is_some_and(|c| c.eligible));
        let decision = match pinned.or(forced.map(|f| f.0)).or(kept) {
            Some(p) if unhealthy.contains(&p) => {
                return Err(Error::unavailable(format!(
                    "model {} is unavailable: {}",
                    self.catalog.models[p].name, screened[p].reason
                )));
            }
            Some(p) => {
                let c = &screened[p];
                if !c.eligible {
                    return Err(Error::precondition(format!(
                        "model {} cannot serve this request: {}",
                        self.catalog.models[p].name, c.reason
                    )));
                }
                let mut d = policy::pinned(p, screened, cost_weight);
                if let Some((_, by)) = forced {
                    d.policy_version.clone_from(by);
                } else if pinned.is_none() {
                    d.policy_version = AFFINITY.into();
                }
                d
            }
            None => {
                if !screened.iter().any(|c| c.eligible) {
                    // Only the failure policy stood in the way: the models
                    // exist but cannot answer now, so say UNAVAILABLE at once.
                    if !unhealthy.is_empty() {
                        return Err(Error::unavailable(self.no_eligible_reasons(&screened)));
                    }
                    return Err(self.no_eligible(&screened));
                }
                let ctx = Context {
                    cost_weight,
                    features: context.clone(),
                    prompt_tokens,
                };
                // An A/B split's variant arm may be another policy's to choose.
                let policy = match verdict.split.as_ref().filter(|a| a.arm == "variant") {
                    Some(a) => match a.variant {
                        Variant::Policy(i) => &self.variants[i],
                        Variant::Model(_) => &self.policy,
                    },
                    None => &self.policy,
                };
                match &self.seeded {
                    Some(rng) => {
                        let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                        policy.decide(&ctx, screened, &mut *rng)
                    }
                    None => policy.decide(&ctx, screened, &mut rand::rng()),
                }
            }
        };

        if let Some(t) = turn {
            self.conversations.keep(t, decision.model);
        }
        let routed = Routed {
            decision_id: uuid::Uuid::now_v7().to_string(),
            output_tokens: output_tokens[decision.model],
            decision,
            cost_weight,
            prompt_tokens,
            reading,
            context,
            order: allow.filter(|_| input.ordered).unwrap_or_default(),
            shadow: verdict.shadow.clone(),
            explained: Explained {
                rules: verdict.matched.clone(),
                profile: verdict.profile.clone(),
                split: verdict.split.as_ref().map(|a| crate::store::SplitRow {
                    rule: a.rule.clone(),
                    arm: a.arm.into(),
                    probability: a.probability,
                }),
            },
        };
        // A decision a rule forced, or affinity kept, was no draw of the
        // policy's: it is logged as pinned (propensity 1), so off-policy
        // evaluation leaves it out.
        let row = self.decision_row(
            input,
            &routed,
            pinned.is_some() || forced.is_some() || kept.is_some(),
            max_cost_usd,
            rpc,
        );
        // Transports open a span per request with an empty `decision_id`
        // field: fill it now so everything after (dispatch, errors) carries it.
        tracing::Span::current().record("decision_id", routed.decision_id.as_str());
        self.metrics.decision(
            &self.catalog.models[routed.decision.model].name,
            pinned.is_some(),
        );
        for rule in &verdict.matched {
            let arm = verdict
                .split
                .as_ref()
                .filter(|a| a.rule == *rule)
                .map_or("", |a| a.arm);
            self.metrics.rule(rule, arm);
        }
        tracing::info!(
            decision_id = %routed.decision_id,
            model = %self.catalog.models[routed.decision.model].name,
            intent = routed.intent().map(|i| i.label.as_str()).unwrap_or(""),
            rpc = rpc.as_str(),
            "routed"
        );
        Ok((routed, row))
    }

    /// The profile a request named as its model.
    fn requested_profile(&self, name: &str) -> Result<usize, Error> {
        self.rules.profile(name).ok_or_else(|| {
            let known: Vec<String> = self
                .rules
                .profiles()
                .map(|p| format!("{PROFILE_PREFIX}{p}"))
                .collect();
            Error::not_found(
                "model",
                format!(
                    "no profile {PROFILE_PREFIX}{name} (profiles: {}; or {PROFILE_PREFIX}auto)",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    /// The rules' verdict on this request.
    fn rules(
        &self,
        input: &RouteInput,
        needs: &eligibility::Needs,
        (profile, pinned): (Option<usize>, bool),
        prompt_tokens: u32,
        reading: Option<&Reading>,
    ) -> Verdict {
        if self.rules.is_empty() {
            return Verdict::default();
        }
        let facts = Facts {
            tenant: &input.tenant,
            tier: input
                .key
                .iter()
                .chain(&input.tenant_settings)
                .map(|k| k.tier.as_str())
                .find(|t| !t.is_empty())
                .unwrap_or(""),
            headers: &input.headers,
            metadata: &input.metadata,
            profile,
            intent: reading
                .and_then(|r| r.intent.as_ref())
                .map(|i| (i.label.as_str(), i.confidence)),
            text: text_to_read(&input.messages),
            prompt_tokens,
            needs: &needs.capabilities,
            user: input.user.as_deref(),
            session: input.session_id.as_deref(),
            pinned,
        };
        self.rules.evaluate(&facts, &mut || rand::random())
    }

    fn no_eligible(&self, screened: &[policy::Candidate]) -> Error {
        Error::precondition(self.no_eligible_reasons(screened))
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
            features: r.reading.as_ref().map(|x| codec::pack_f16(&x.embedding)),
            intent: r.intent().map(|i| i.label.clone()),
            // A pinned request that skipped the classifier has no intent
            // features: it is logged without a context so learning skips it.
            context: (r.reading.is_some() || self.reader.is_none())
                .then(|| codec::pack_f32(&r.context)),
            candidates: serde_json::Value::from(candidates).to_string(),
            metadata: serde_json::to_string(&input.metadata).unwrap_or_else(|_| "{}".into()),
            prompt: self
                .config
                .server
                .store_prompts
                .then(|| serde_json::to_string(&input.messages).unwrap_or_default()),
            served_model: None,
            key_id: input.key.as_ref().map(|k| k.id.clone()),
            rules: (!r.explained.rules.is_empty())
                .then(|| serde_json::to_string(&r.explained.rules).unwrap_or_default()),
            profile: r.explained.profile.clone(),
            split: r.explained.split.clone(),
            cached_from: None,
        }
    }

    /// Feedback: validate and durably record; (decision, source) replaces.
    /// With a `tenant` (the caller's key's), only that tenant's decisions
    /// take it.
    pub async fn feedback(
        &self,
        decision_id: &str,
        reward: f64,
        source: &str,
        tenant: Option<&str>,
    ) -> Result<FeedbackAck, Error> {
        let decision_id = validate::decision_id(decision_id)?;
        let reward = validate::reward(reward)?;
        let source = validate::source(source)?;
        let outcome = self
            .store
            .record_feedback(FeedbackRow {
                decision_id: decision_id.clone(),
                source: source.clone(),
                reward,
                at_ms: now_ms(),
                tenant: tenant.map(str::to_owned),
            })
            .await?;
        if let Some(l) = &self.learning {
            l.observe(&outcome, reward);
        }
        self.metrics.feedback(&source, outcome.replaced);
        tracing::info!(%decision_id, reward, replaced = outcome.replaced, "feedback");
        Ok(FeedbackAck {
            decision_id,
            source,
            replaced: outcome.replaced,
        })
    }
}

/// Applies a request's key and its tenant's settings: the key's tenant
/// replaces whatever the request said, and a key or tenant limited to some
/// models may route among those only (a request naming another is refused).
pub fn under_key(
    key: &crate::auth::Principal,
    tenant: Option<&crate::auth::Principal>,
    route: &mut RouteInput,
    pinned: Option<&str>,
) -> Result<(), Error> {
    route.tenant = key.tenant.clone();
    route.key = Some(Arc::clone(key));
    route.tenant_settings = tenant.cloned();
    let lists: Vec<&crate::store::KeyRow> = std::iter::once(&**key)
        .chain(tenant.map(|t| &**t))
        .filter(|r| !r.models.is_empty())
        .collect();
    let refuses = |m: &str| {
        lists
            .iter()
            .copied()
            .find(|r| !r.models.iter().any(|a| a == m))
    };
    let named = pinned
        .into_iter()
        .chain(route.candidates.iter().map(String::as_str));
    for m in named {
        if let Some(r) = refuses(m) {
            return Err(Error::permission(format!(
                "{} may not use model {m:?}",
                r.who()
            )));
        }
    }
    let Some(first) = lists.first() else {
        return Ok(());
    };
    if route.candidates.is_empty() && pinned.is_none() {
        // A key may list profiles beside models: auto-routing takes its models.
        let models: Vec<String> = first
            .models
            .iter()
            .filter(|m| !m.starts_with(PROFILE_PREFIX) && refuses(m).is_none())
            .cloned()
            .collect();
        if models.is_empty() {
            return Err(Error::permission(format!(
                "{} may use only {}: name one as the model",
                first.who(),
                first.models.join(", ")
            )));
        }
        route.candidates = models;
    }
    Ok(())
}

impl Engine {
    /// [`under_key`] with the key's tenant's settings, if it has any.
    pub fn apply_key(
        &self,
        key: &crate::auth::Principal,
        route: &mut RouteInput,
        pinned: Option<&str>,
    ) -> Result<(), Error> {
        let tenant = self.gate.keys.tenant(&key.tenant);
        under_key(key, tenant.as_ref(), route, pinned)
    }
}

/// What the request asks of a model, for the policy's context.
fn shape(needs: &eligibility::Needs, messages: &[ChatMessage]) -> policy::features::Shape {
    let needs = |c| needs.capabilities.contains(&c);
    policy::features::Shape {
        tools: needs(Capability::Tools),
        images: needs(Capability::Vision),
        json: needs(Capability::JsonSchema),
        user_turns: u32::try_from(messages.iter().filter(|m| m.role == "user").count())
            .unwrap_or(u32::MAX),
    }
}

/// The request's needs and its conversation's: a model must take tool calls
/// and results to be sent a conversation that holds them, and see images
/// (by URL, if they come so) to be sent those.
fn conversation_needs<'a>(
    needs: &'a eligibility::Needs,
    messages: &[ChatMessage],
) -> std::borrow::Cow<'a, eligibility::Needs> {
    let tool_traffic = messages
        .iter()
        .any(|m| !m.tool_calls.is_empty() || m.tool_call_id.is_some());
    let mut images = crate::dispatch::images(messages).peekable();
    let seen = images.peek().is_some();
    let by_url = images.any(|u| crate::dispatch::data_url(u).is_none());
    let mut more = Vec::new();
    if tool_traffic && !needs.capabilities.contains(&Capability::Tools) {
        more.push(Capability::Tools);
    }
    if seen {
        more.push(Capability::Vision);
    }
    if more.is_empty() && !by_url {
        return std::borrow::Cow::Borrowed(needs);
    }
    let mut needs = needs.clone();
    needs.capabilities.extend(more);
    needs.image_urls |= by_url;
    std::borrow::Cow::Owned(needs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyRow;

    fn key(models: &[&str]) -> crate::auth::Principal {
        Arc::new(KeyRow {
            models: models.iter().map(|m| m.to_string()).collect(),
            ..KeyRow::plain("key_1", "acme")
        })
    }

    #[test]
    fn a_key_sets_the_tenant_and_limits_the_models() {
        let mut r = RouteInput {
            tenant: "from-a-header".into(),
            ..RouteInput::default()
        };
        under_key(&key(&[]), None, &mut r, None).unwrap();
        assert_eq!((r.tenant.as_str(), r.candidates.len()), ("acme", 0));
        under_key(&key(&["a", "b"]), None, &mut r, None).unwrap();
        assert_eq!(r.candidates, vec!["a", "b"]);
        let e = under_key(&key(&["a"]), None, &mut r, None).unwrap_err();
        assert!(e.to_string().contains("\"b\""), "{e}");
        let mut pinned = RouteInput::default();
        assert!(under_key(&key(&["a"]), None, &mut pinned, Some("c")).is_err());
        assert!(under_key(&key(&["a"]), None, &mut pinned, Some("a")).is_ok());
    }

    #[test]
    fn a_key_may_list_profiles() {
        let k = key(&["switchyard/cheap", "a"]);
        let mut r = RouteInput::default();
        under_key(&k, None, &mut r, Some("switchyard/cheap")).unwrap();
        assert!(
            r.candidates.is_empty(),
            "the profile's own candidates apply"
        );
        let mut r = RouteInput::default();
        under_key(&k, None, &mut r, None).unwrap();
        assert_eq!(r.candidates, vec!["a"]);
        let e = under_key(
            &key(&["switchyard/cheap"]),
            None,
            &mut RouteInput::default(),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("may use only switchyard/cheap"),
            "{e}"
        );
        assert!(under_key(&k, None, &mut RouteInput::default(), Some("switchyard/pro")).is_err());
    }

    #[test]
    fn a_tenants_models_narrow_its_keys() {
        let tenant = Arc::new(KeyRow {
            models: vec!["b".into(), "c".into()],
            ..KeyRow::new(KeyRow::tenant_id("acme"), String::new(), "acme".into(), 0)
        });
        let mut r = RouteInput::default();
        under_key(&key(&["a", "b"]), Some(&tenant), &mut r, None).unwrap();
        assert_eq!(r.candidates, vec!["b"]);
        let mut r = RouteInput::default();
        under_key(&key(&[]), Some(&tenant), &mut r, None).unwrap();
        assert_eq!(r.candidates, vec!["b", "c"]);
        let e = under_key(&key(&[]), Some(&tenant), &mut r, Some("a")).unwrap_err();
        assert!(e.to_string().contains("the tenant acme"), "{e}");
    }
}
