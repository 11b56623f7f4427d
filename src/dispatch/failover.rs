//! The failure policy at work for one request: which models to try in which
//! order, and which of a model's deployments; failover between deployments
//! before retries with backoff within the deadline; the breaker and load
//! bookkeeping around every attempt, and one attempt row per try. What a
//! failure teaches the bandit is the caller's (`on_failed`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::budget::RetryBudget;
use super::health::{AttemptGuard, Health, HealthSnapshot};
use super::{Blame, DispatchError, Timeouts};
use crate::catalog::Catalog;
use crate::clock::now_ms;
use crate::config::FailurePolicy;
use crate::policy::{Candidate, Decision};
use crate::store::AttemptRow;

mod hedge;

/// The failure policy's memory (breakers, load, the retry budget) and the
/// loop that applies it to each request.
pub struct Failover {
    catalog: Arc<Catalog>,
    policy: FailurePolicy,
    backoff: Backoff,
    health: Arc<Health>,
    retry_budget: Arc<RetryBudget>,
}

/// The attempt that answered: its model and deployment, what it returned,
/// and its health slot (still counted in flight, so a stream's whole life is
/// measured).
pub struct Served<T> {
    pub model: usize,
    pub deployment: usize,
    pub value: T,
    pub guard: AttemptGuard,
    pub started: (Instant, i64),
}

/// What every attempt of one request shares: its name in the log, its
/// deadline, how to make an attempt and whom to tell of a provider's fault.
pub(super) struct Attempts<'a, F, O> {
    decision_id: &'a str,
    deadline: Instant,
    call: F,
    on_failed: O,
}

/// Every attempt failed (or none could be made): the last error and model.
pub struct Failed {
    pub error: DispatchError,
    pub model: usize,
}

impl Failover {
    pub fn new(catalog: Arc<Catalog>, policy: FailurePolicy) -> Self {
        let health = Arc::new(Health::new(
            &catalog,
            policy.breaker,
            policy.shed_after_429s,
        ));
        let retry_budget = Arc::new(RetryBudget::new(
            policy.retry_budget_ratio,
            policy.retry_budget_reserve,
        ));
        Failover {
            catalog,
            backoff: Backoff::new(policy.backoff),
            policy,
            health,
            retry_budget,
        }
    }

    /// An attempt's bounds when `left` remains before the request's deadline.
    pub fn timeouts(&self, left: Duration) -> Timeouts {
        let total = self.policy.attempt_timeout.min(left);
        Timeouts {
            first_byte: self
                .policy
                .first_byte_timeout
                .map_or(total, |f| f.min(total)),
            idle: self.policy.stream_idle_timeout,
            total,
        }
    }

    /// Breakers and load per model and provider.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub fn retry_budget(&self) -> &Arc<RetryBudget> {
        &self.retry_budget
    }

    /// A read-only picture of breakers, load and the retry budget.
    pub fn snapshot(&self) -> HealthSnapshot {
        self.health
            .snapshot(&self.catalog, self.retry_budget.snapshot())
    }

    /// Marks models whose breaker is open as ineligible, then sheds
    /// providers that are rate-limiting us, as long as another model stays
    /// eligible. Returns the models the failure policy made ineligible.
    pub fn screen_health(&self, screened: &mut [Candidate]) -> Vec<usize> {
        let now = Instant::now();
        let mut refused = Vec::new();
        for c in screened.iter_mut().filter(|c| c.eligible) {
            if let Some(r) = self.health.breaker_refusal(c.model, now) {
                c.eligible = false;
                c.reason = r;
                refused.push(c.model);
            }
        }
        let shed: Vec<(usize, String)> = screened
            .iter()
            .filter(|c| c.eligible)
            .filter_map(|c| {
                // Shed only when every deployment's provider is.
                let deployments = &self.catalog.models[c.model].deployments;
                let reasons: Option<Vec<String>> = deployments
                    .iter()
                    .map(|d| self.health.shed_reason(d.provider, now))
                    .collect();
                let first = reasons?.into_iter().next()?;
                Some((c.model, first))
            })
            .collect();
        let eligible = screened.iter().filter(|c| c.eligible).count();
        // Shedding moves load elsewhere; it never leaves a request nowhere to go.
        if !shed.is_empty() && shed.len() < eligible {
            for (m, r) in shed {
                screened[m].eligible = false;
                screened[m].reason = r;
                refused.push(m);
            }
        }
        refused
    }

    /// Fills in each eligible candidate's live load and its penalty
    /// (`weight` is `routing.latency_weight`; at 0 the penalty is 0 and
    /// selection is as without load signals).
    pub fn screen_load(&self, screened: &mut [Candidate], weight: f64) {
        for c in screened.iter_mut().filter(|c| c.eligible) {
            let (latency, in_flight) = self.health.load(c.model);
            c.load = crate::policy::Load::new(latency, in_flight, weight);
        }
    }

    /// The models to try, in order: the decision's model; then, when the
    /// request gave an `order` (OpenRouter's `models`), the other eligible
    /// models in that order, every one of them; otherwise (unless it was
    /// pinned or fallback is off) its configured chain, then the other
    /// eligible models by the policy's score, up to `max_fallbacks` more.
    pub fn plan(&self, d: &Decision, order: &[usize]) -> Vec<usize> {
        let policy = &self.policy;
        let mut plan = vec![d.model];
        let eligible = |m: usize| d.candidates.get(m).is_some_and(|c| c.eligible);
        if !order.is_empty() {
            plan.extend(
                order
                    .iter()
                    .copied()
                    .filter(|m| *m != d.model && eligible(*m)),
            );
            return plan;
        }
        if d.policy_version == "pinned" || !policy.fallback {
            return plan;
        }
        let mut ranked: Vec<&Candidate> = d.candidates.iter().filter(|c| c.eligible).collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.model.cmp(&b.model)));
        let chain = self.catalog.models[d.model].fallback.iter().copied();
        for m in chain
            .filter(|m| eligible(*m))
            .chain(ranked.iter().map(|c| c.model))
        {
            if plan.len() > policy.max_fallbacks as usize {
                break;
            }
            if !plan.contains(&m) {
                plan.push(m);
            }
        }
        plan
    }

    /// Tries the `plan` (see [`Failover::plan`]) until an attempt succeeds,
    /// the deadline passes or the error is the request's own fault. Each
    /// model goes to its best deployment ([`Health::rank`]); a provider's
    /// fault moves the call to the model's next deployment at once, and only
    /// when every deployment has failed is the model retried (with backoff)
    /// or left for the next. A model that stalled (sent nothing within its
    /// first-byte bound) is not retried while another model is left to try.
    /// `call(model, deployment, timeouts)` makes one attempt; `on_failed(model)` hears of each model that failed the
    /// request through its provider's fault. Failed attempts are appended to
    /// `rows`; `decision_id` names them in the log lines.
    pub async fn run<T, F, Fut>(
        &self,
        decision_id: &str,
        plan: Vec<usize>,
        deadline: Instant,
        rows: &mut Vec<AttemptRow>,
        call: F,
        on_failed: impl Fn(usize),
    ) -> Result<Served<T>, Failed>
    where
        F: Fn(usize, usize, Timeouts) -> Fut,
        Fut: Future<Output = Result<T, DispatchError>>,
    {
        let policy = &self.policy;
        let req = Attempts {
            decision_id,
            deadline,
            call,
            on_failed,
        };
        let (call, on_failed) = (&req.call, &req.on_failed);
        self.retry_budget.deposit();
        let mut last: Option<Failed> = None;
        // The model a hedge already tried, not to be tried again.
        let mut hedged = None;
        for (i, &m) in plan.iter().enumerate() {
            if hedged == Some(m) {
                continue;
            }
            let mut retry = 0u32;
            let mut model_failed = false;
            // Deployments tried since the model was last retried.
            let mut tried: Vec<usize> = Vec::new();
            loop {
                let now = Instant::now();
                if now >= deadline {
                    if model_failed {
                        on_failed(m);
                    }
                    // Only when the deadline was spent before any attempt.
                    return Err(last.unwrap_or(Failed {
                        error: DispatchError::Timeout(Duration::ZERO),
                        model: m,
                    }));
                }
                let ranked = self.health.rank(m, &policy.balance, now);
                let Some(d) = ranked.iter().copied().find(|d| !tried.contains(d)) else {
                    // Every breaker is open (it opened while we were busy): move on.
                    last.get_or_insert(Failed {
                        error: DispatchError::Connect("circuit open".into()),
                        model: m,
                    });
                    break;
                };
                tried.push(d);
                let Some(guard) = self.health.begin(m, d, now) else {
                    // Its half-open probes are all out: the next deployment.
                    continue;
                };
                let started = (now, now_ms());
                // Only the first attempt of a request is hedged, with the
                // plan's next model.
                let hedge = match (i, retry, tried.len(), plan.get(1)) {
                    (0, 0, 1, Some(&h)) => self.hedge_delay(m).map(|delay| (h, delay)),
                    _ => None,
                };
                let result = match hedge {
                    Some(h) => {
                        let first = (m, d, guard, started);
                        self.race(&req, first, h, rows, &mut hedged).await
                    }
                    None => {
                        let timeouts = self.timeouts(deadline.saturating_duration_since(now));
                        settled((m, d), call(m, d, timeouts).await, guard, started)
                    }
                };
                match result {
                    Ok(served) => {
                        // Times to answer feed only the hedge's quantile.
                        if policy.hedge.is_some_and(|h| h.quantile.is_some()) {
                            self.health
                                .answered(served.model, served.started.0.elapsed());
                        }
                        return Ok(served);
                    }
                    Err((e, guard)) => {
                        let fault =
                            self.record_failure(decision_id, (m, d), guard, started, &e, rows);
                        model_failed |= fault;
                        let blame = e.blame();
                        let retry_after = e.retry_after();
                        // Another whole wait on a provider that just stalled
                        // would hold the request for nothing.
                        let others_left = plan[i + 1..].iter().any(|x| Some(*x) != hedged);
                        let retryable = e.is_retryable() && !(e.is_stall() && others_left);
                        last = Some(Failed { error: e, model: m });
                        if blame == Blame::Request {
                            // Every model would reject it the same way.
                            return Err(last.expect("just set"));
                        }
                        // The provider's fault: another deployment of the
                        // model takes the call at once.
                        if blame == Blame::Provider && ranked.iter().any(|x| !tried.contains(x)) {
                            continue;
                        }
                        // A misfit moves on to the next model at once: for
                        // this request only, with no mark on this one.
                        if !retryable || retry >= policy.max_retries {
                            break;
                        }
                        let delay = self.backoff.delay(retry, retry_after, &mut rand::rng());
                        // Waiting past the deadline helps no one: fall back now.
                        if Instant::now() + delay >= deadline || !self.retry_budget.try_withdraw() {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        retry += 1;
                        self.health.retried(m, d);
                        tried.clear();
                    }
                }
            }
            if model_failed {
                on_failed(m);
            }
        }
        Err(last.expect("the plan holds at least the chosen model: this is a bug"))
    }

    /// Ends a failed attempt: its breaker verdict and load, its row and a
    /// warning. Returns whether the provider was at fault.
    fn record_failure(
        &self,
        decision_id: &str,
        (m, d): (usize, usize),
        guard: AttemptGuard,
        started: (Instant, i64),
        e: &DispatchError,
        rows: &mut Vec<AttemptRow>,
    ) -> bool {
        let fault = e.is_provider_fault();
        self.health
            .finish(guard, fault.then_some(false), e.http_status() == Some(429));
        rows.push(self.failed_attempt((m, d), started, e));
        tracing::warn!(
            %decision_id,
            model = %self.catalog.models[m].name,
            deployment = %self.catalog.models[m].deployments[d].name,
            error = %e, "attempt failed"
        );
        fault
    }

    /// The row of a failed attempt on deployment `d` of model `m`.
    pub fn failed_attempt(
        &self,
        (m, d): (usize, usize),
        started: (Instant, i64),
        err: &DispatchError,
    ) -> AttemptRow {
        let (deployment, provider) = self.catalog.deployment(m, d);
        AttemptRow {
            model: self.catalog.models[m].name.clone(),
            provider: provider.name.clone(),
            deployment: Some(deployment.name.clone()),
            outcome: err.outcome(),
            error: Some(format!("{}: {err}", err.class())),
            http_status: err.http_status(),
            started_at_ms: started.1,
            latency_ms: elapsed_ms(started.0),
            prompt_tokens: None,
            completion_tokens: None,
            usage_estimated: false,
            cost_usd: None,
        }
    }
}

/// One attempt's result with its slot: what it served, or its error with
/// the slot still to settle.
fn settled<T>(
    (m, d): (usize, usize),
    result: Result<T, DispatchError>,
    guard: AttemptGuard,
    started: (Instant, i64),
) -> Result<Served<T>, (DispatchError, AttemptGuard)> {
    match result {
        Ok(value) => Ok(Served {
            model: m,
            deployment: d,
            value,
            guard,
            started,
        }),
        Err(e) => Err((e, guard)),
    }
}

pub fn elapsed_ms(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX)
}
