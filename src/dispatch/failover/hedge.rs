//! Hedging: when a request's first attempt is slower than its model usually
//! is, the plan's next model is called too and the first answer wins. The
//! other call is dropped (which closes its connection) and logged as
//! cancelled; a failure on either side waits for the other before giving up.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{Attempts, Failover, Served};
use crate::clock::now_ms;
use crate::dispatch::health::AttemptGuard;
use crate::dispatch::{DispatchError, Timeouts};
use crate::store::AttemptRow;

/// An attempt in flight: its model, deployment, health slot and start.
type Attempt = (usize, usize, AttemptGuard, (Instant, i64));

impl Failover {
    /// How long model `m`'s first attempt runs alone; `None` when hedging is off.
    pub(super) fn hedge_delay(&self, m: usize) -> Option<Duration> {
        let h = self.policy.hedge?;
        let recent = h.quantile.and_then(|q| self.health.answer_quantile(m, q));
        Some(recent.map_or(h.after, |r| r.max(h.after)))
    }

    /// Runs `first`, and `hedge.0` beside it once `hedge.1` has passed with
    /// no answer (then `launched` is set to it). The answer of whichever
    /// succeeds first; otherwise the first attempt's error (the hedge's
    /// failure is already logged and reported to `on_failed`), for the caller
    /// to handle as any failed attempt.
    pub(super) async fn race<T, F, Fut, O>(
        &self,
        req: &Attempts<'_, F, O>,
        first: Attempt,
        hedge: (usize, Duration),
        rows: &mut Vec<AttemptRow>,
        launched: &mut Option<usize>,
    ) -> Result<Served<T>, (DispatchError, AttemptGuard)>
    where
        F: Fn(usize, usize, Timeouts) -> Fut,
        Fut: Future<Output = Result<T, DispatchError>>,
        O: Fn(usize),
    {
        let Attempts {
            decision_id,
            deadline,
            call,
            on_failed,
        } = req;
        let (decision_id, deadline) = (*decision_id, *deadline);
        let (m, d, guard, started) = first;
        let (h, delay) = hedge;
        let primary = call(
            m,
            d,
            self.timeouts(deadline.saturating_duration_since(started.0)),
        );
        tokio::pin!(primary);
        let early = tokio::select! {
            r = &mut primary => Some(r),
            () = tokio::time::sleep(delay) => None,
        };
        let alone = |r, guard| super::settled((m, d), r, guard, started);
        if let Some(r) = early {
            return alone(r, guard);
        }
        let now = Instant::now();
        let hd = self
            .health
            .rank(h, &self.policy.balance, now)
            .first()
            .copied();
        let hedge_guard = hd
            .filter(|_| now < deadline)
            .and_then(|hd| self.health.begin(h, hd, now));
        let (Some(hd), Some(hedge_guard)) = (hd, hedge_guard) else {
            // Past the deadline, or the hedge's breaker is open: wait alone.
            return alone(primary.await, guard);
        };
        tracing::info!(
            %decision_id,
            model = %self.catalog.models[m].name,
            hedge = %self.catalog.models[h].name,
            after_ms = delay.as_millis() as u64,
            "hedging a slow attempt"
        );
        *launched = Some(h);
        let hedge_started = (now, now_ms());
        let second = call(
            h,
            hd,
            self.timeouts(deadline.saturating_duration_since(now)),
        );
        tokio::pin!(second);
        // Each side's slot while it runs; the first attempt's error while
        // the hedge still may answer.
        let (mut guard, mut hedge_guard) = (Some(guard), Some(hedge_guard));
        let mut failed_first: Option<(DispatchError, AttemptGuard)> = None;
        loop {
            tokio::select! {
                r = &mut primary, if guard.is_some() => {
                    let g = guard.take().expect("guarded by the branch condition");
                    match r {
                        Ok(value) => {
                            if let Some(hg) = hedge_guard.take() {
                                self.cancelled((h, hd), hg, hedge_started, m, rows);
                            }
                            return Ok(Served { model: m, deployment: d, value, guard: g, started });
                        }
                        Err(e) if hedge_guard.is_none() => return Err((e, g)),
                        Err(e) => failed_first = Some((e, g)),
                    }
                }
                r = &mut second, if hedge_guard.is_some() => {
                    let hg = hedge_guard.take().expect("guarded by the branch condition");
                    match r {
                        Ok(value) => {
                            if let Some(g) = guard.take() {
                                self.cancelled((m, d), g, started, h, rows);
                            } else if let Some((e, g)) = failed_first.take()
                                && self.record_failure(decision_id, (m, d), g, started, &e, rows)
                            {
                                on_failed(m);
                            }
                            return Ok(Served {
                                model: h,
                                deployment: hd,
                                value,
                                guard: hg,
                                started: hedge_started,
                            });
                        }
                        Err(e) => {
                            if self.record_failure(decision_id, (h, hd), hg, hedge_started, &e, rows) {
                                on_failed(h);
                            }
                            if let Some(failed) = failed_first.take() {
                                return Err(failed);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Ends the losing attempt: no verdict on its model (it was only slower),
    /// logged as cancelled in favour of `winner`.
    fn cancelled(
        &self,
        (m, d): (usize, usize),
        guard: AttemptGuard,
        started: (Instant, i64),
        winner: usize,
        rows: &mut Vec<AttemptRow>,
    ) {
        self.health.finish(guard, None, false);
        let why = format!("hedge: {} answered first", self.catalog.models[winner].name);
        let mut row = self.failed_attempt((m, d), started, &DispatchError::Stream(why.clone()));
        row.outcome = "cancelled";
        row.error = Some(why);
        rows.push(row);
    }
}
