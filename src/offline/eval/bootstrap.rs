//! Paired bootstrap over the evaluation rows: how much of a router's lead over
//! a baseline is the luck of which prompts were held out.
//!
//! Each resample draws the evaluation rows with replacement and scores the
//! router and every baseline on the same draw (paired), so the interval of a
//! difference is narrower than the two curves' own intervals would suggest.
//! The fitted routers stay fixed: this is the noise of the held-out sample,
//! not of the training split (the seeds measure that).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::report::{self, Curve};
use super::route::Choices;
use crate::offline::replay::{DatasetModel, Row};

/// Two-sided coverage of the reported intervals.
const LEVEL: f64 = 0.95;

/// A statistic on all the evaluation rows and its percentile interval over
/// the resamples.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    /// Share of resamples in which the statistic is above zero.
    pub above_zero: f64,
}

/// The router's cost to match the best single model, as a fraction of that
/// model's cost; a bound of `None` means that in more than the interval's
/// tail of resamples the router never reached it.
#[derive(Debug, Clone, Serialize)]
pub struct CostInterval {
    pub estimate: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

/// Router minus one baseline, resample by resample.
#[derive(Debug, Clone, Serialize)]
pub struct Lead {
    pub baseline: String,
    pub frontier_area: Interval,
    /// Two-model sets only.
    pub apgr: Option<Interval>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bootstrap {
    pub resamples: usize,
    pub level: f64,
    pub router_cost_to_match: CostInterval,
    pub leads: Vec<Lead>,
}

/// Every sweep to score: the router's first, then the baselines by name.
pub struct Sweeps<'a> {
    pub weights: &'a [f64],
    pub router: &'a [Choices],
    pub baselines: Vec<(&'a str, &'a [Choices])>,
}

/// `resamples` paired resamples of `rows`, seeded; `None` when it is 0.
pub fn run(
    sweeps: &Sweeps<'_>,
    rows: &[Row],
    models: &[DatasetModel],
    resamples: usize,
    seed: u64,
) -> Option<Bootstrap> {
    if resamples == 0 || rows.is_empty() {
        return None;
    }
    let all: Vec<&Row> = rows.iter().collect();
    let full = Draw::of(&score(sweeps, &all, models));
    let mut rng = StdRng::seed_from_u64(seed);
    // Each draw is reduced to its few statistics at once: its curves are not kept.
    let draws: Vec<Draw> = (0..resamples)
        .map(|_| {
            let idx: Vec<usize> = (0..rows.len())
                .map(|_| rng.random_range(0..rows.len()))
                .collect();
            let sample: Vec<&Row> = idx.iter().map(|&i| &rows[i]).collect();
            let pick = |c: &[Choices]| -> Vec<Choices> {
                c.iter()
                    .map(|ch| idx.iter().map(|&i| ch[i]).collect())
                    .collect()
            };
            let router = pick(sweeps.router);
            let baselines: Vec<Vec<Choices>> =
                sweeps.baselines.iter().map(|(_, c)| pick(c)).collect();
            let resampled = Sweeps {
                weights: sweeps.weights,
                router: &router,
                baselines: sweeps
                    .baselines
                    .iter()
                    .zip(&baselines)
                    .map(|((name, _), c)| (*name, c.as_slice()))
                    .collect(),
            };
            Draw::of(&score(&resampled, &sample, models))
        })
        .collect();
    let leads = sweeps
        .baselines
        .iter()
        .enumerate()
        .map(|(b, (name, _))| {
            let areas = draws.iter().map(|d| d.area[b]).collect();
            let apgrs = draws.iter().filter_map(|d| d.apgr[b]).collect();
            Lead {
                baseline: (*name).to_owned(),
                frontier_area: interval(full.area[b], areas)
                    .expect("there is at least one resample"),
                apgr: full.apgr[b].and_then(|e| interval(e, apgrs)),
            }
        })
        .collect();
    let costs = draws.iter().map(|d| d.cost_to_match).collect();
    Some(Bootstrap {
        resamples,
        level: LEVEL,
        router_cost_to_match: cost_interval(full.cost_to_match, costs),
        leads,
    })
}

/// What one set of rows says: the router's cost to match, and router −
/// baseline frontier area and APGR per baseline.
struct Draw {
    cost_to_match: Option<f64>,
    area: Vec<f64>,
    apgr: Vec<Option<f64>>,
}

impl Draw {
    /// `curves`: the router's, then each baseline's.
    fn of(curves: &[Curve]) -> Draw {
        let (router, baselines) = curves.split_first().expect("the router's curve");
        let apgr = |c: &Curve| c.two_model.as_ref().map(|t| t.apgr);
        Draw {
            cost_to_match: router.cost_fraction_to_match_best,
            area: baselines
                .iter()
                .map(|b| router.frontier_area - b.frontier_area)
                .collect(),
            apgr: baselines
                .iter()
                .map(|b| Some(apgr(router)? - apgr(b)?))
                .collect(),
        }
    }
}

/// The router's curve then each baseline's, on one set of rows.
fn score(sweeps: &Sweeps<'_>, rows: &[&Row], models: &[DatasetModel]) -> Vec<Curve> {
    let refs = report::reference(rows, models);
    std::iter::once(sweeps.router)
        .chain(sweeps.baselines.iter().map(|(_, c)| *c))
        .map(|c| report::curve(sweeps.weights, c, rows, models, &refs))
        .collect()
}

/// Linear interpolation between order statistics (the sample is sorted).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(next) if frac > 0.0 => sorted[i] + frac * (next - sorted[i]),
        _ => sorted[i],
    }
}

fn interval(estimate: f64, mut draws: Vec<f64>) -> Option<Interval> {
    if draws.is_empty() {
        return None;
    }
    draws.sort_by(f64::total_cmp);
    let tail = (1.0 - LEVEL) / 2.0;
    Some(Interval {
        estimate,
        lo: quantile(&draws, tail),
        hi: quantile(&draws, 1.0 - tail),
        above_zero: draws.iter().filter(|&&d| d > 0.0).count() as f64 / draws.len() as f64,
    })
}

/// "Never reached" sorts above every cost and stays `None` as a bound.
fn cost_interval(estimate: Option<f64>, draws: Vec<Option<f64>>) -> CostInterval {
    let mut d: Vec<f64> = draws
        .into_iter()
        .map(|c| c.unwrap_or(f64::INFINITY))
        .collect();
    d.sort_by(f64::total_cmp);
    let tail = (1.0 - LEVEL) / 2.0;
    let bound = |q| Some(quantile(&d, q)).filter(|v: &f64| v.is_finite());
    CostInterval {
        estimate,
        lo: bound(tail),
        hi: bound(1.0 - tail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::eval::fit::tests::{model, row};

    /// Model a (dear) always answers well; b (half the price) on even rows.
    fn rows() -> (Vec<DatasetModel>, Vec<Row>) {
        let models = vec![model("a", 2.0), model("b", 1.0)];
        let rows = (0..40)
            .map(|i| {
                let b = if i % 2 == 0 { 1.0 } else { 0.0 };
                row(&format!("p{i}"), [1.0, b], [2.0, 1.0])
            })
            .collect();
        (models, rows)
    }

    #[test]
    fn a_router_that_sends_only_the_hard_rows_to_the_dear_model_leads_in_every_resample() {
        let (models, rows) = rows();
        let perfect: Choices = (0..40).map(|i| if i % 2 == 0 { 1 } else { 0 }).collect();
        let always_a: Choices = vec![0; 40];
        let sweeps = Sweeps {
            weights: &[0.0],
            router: std::slice::from_ref(&perfect),
            baselines: vec![
                ("always-a", std::slice::from_ref(&always_a)),
                ("same", std::slice::from_ref(&perfect)),
            ],
        };
        let b = run(&sweeps, &rows, &models, 200, 7).unwrap();
        let lead = &b.leads[0];
        // Strong calls on half the rows recover the whole gap: APGR 0.75 against 0.5.
        let apgr = lead.apgr.as_ref().unwrap();
        assert!((apgr.estimate - 0.25).abs() < 1e-9, "{apgr:?}");
        assert_eq!(lead.frontier_area.above_zero, 1.0);
        assert_eq!(apgr.above_zero, 1.0);
        assert!(lead.frontier_area.lo > 0.0 && apgr.lo > 0.0);
        // The same choices tie in every resample.
        let tie = &b.leads[1].frontier_area;
        assert_eq!(
            (tie.estimate, tie.lo, tie.hi, tie.above_zero),
            (0.0, 0.0, 0.0, 0.0)
        );
        let cost = &b.router_cost_to_match;
        assert!((cost.estimate.unwrap() - 0.75).abs() < 1e-9, "{cost:?}");
        assert!(cost.lo.unwrap() < 0.75 && cost.hi.unwrap() > 0.75);
        assert!(run(&sweeps, &rows, &models, 0, 7).is_none());
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let s = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.0), 0.0);
        assert_eq!(quantile(&s, 0.5), 2.0);
        assert!((quantile(&s, 0.6) - 2.4).abs() < 1e-12);
        assert_eq!(quantile(&s, 1.0), 4.0);
    }

    #[test]
    fn a_cost_never_reached_in_the_upper_tail_has_no_upper_bound() {
        let mut draws: Vec<Option<f64>> = (0..90).map(|i| Some(i as f64 / 100.0)).collect();
        draws.extend(std::iter::repeat_n(None, 10));
        let c = cost_interval(Some(0.4), draws);
        assert_eq!(c.hi, None);
        assert!(c.lo.unwrap() < 0.05);
    }
}
