//! Turning choices into `summary.json`: quality, cost and share per model per
//! setting, the single models and the oracle for reference, and the
//! trade-off metrics of `metrics`.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::Serialize;

use super::metrics::{self, TwoModel};
use super::route::Choices;
use crate::offline::replay::{DatasetModel, Row};

/// Mean quality and cost of one way of routing the evaluation prompts.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The cost weight (offline) or the last step of the window (online).
    pub setting: f64,
    pub quality: f64,
    /// Mean USD per prompt.
    pub cost: f64,
    /// Share of prompts per model (models never chosen are left out).
    pub share: BTreeMap<String, f64>,
}

/// `rows` may be the rows or references to them (a bootstrap resample).
pub fn point<R: Borrow<Row>>(
    setting: f64,
    choices: &[usize],
    rows: &[R],
    models: &[DatasetModel],
) -> Point {
    let n = choices.len().max(1) as f64;
    let (mut q, mut c) = (0.0, 0.0);
    let mut counts = vec![0usize; models.len()];
    for (&m, r) in choices.iter().zip(rows) {
        let o = &r.borrow().outcomes[&models[m].name];
        q += o.quality;
        c += o.cost_usd;
        counts[m] += 1;
    }
    let share = counts
        .iter()
        .zip(models)
        .filter(|&(&k, _)| k > 0)
        .map(|(&k, m)| (m.name.clone(), k as f64 / n))
        .collect();
    Point {
        setting,
        quality: q / n,
        cost: c / n,
        share,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Single {
    pub model: String,
    pub quality: f64,
    pub cost: f64,
}

/// What a router is measured against, on the evaluation prompts.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub single_models: Vec<Single>,
    /// The highest-quality single model (cheaper on a tie).
    pub best_single: Single,
    /// Per prompt the cheapest model with the highest quality.
    pub oracle: Single,
    /// The cost range frontier areas are taken over: cheapest to dearest single model.
    pub cost_range: (f64, f64),
    /// Frontier area of the single models alone.
    pub single_frontier_area: f64,
    pub oracle_frontier_area: f64,
}

pub fn reference<R: Borrow<Row>>(rows: &[R], models: &[DatasetModel]) -> Reference {
    let n = rows.len().max(1) as f64;
    let single_models: Vec<Single> = models
        .iter()
        .map(|m| Single {
            model: m.name.clone(),
            quality: rows
                .iter()
                .map(|r| r.borrow().outcomes[&m.name].quality)
                .sum::<f64>()
                / n,
            cost: rows
                .iter()
                .map(|r| r.borrow().outcomes[&m.name].cost_usd)
                .sum::<f64>()
                / n,
        })
        .collect();
    let best_single = single_models
        .iter()
        .max_by(|a, b| {
            a.quality
                .total_cmp(&b.quality)
                .then(b.cost.total_cmp(&a.cost))
        })
        .cloned()
        .expect("a dataset has models (checked on load): this is a bug");
    let oracle_choices: Vec<usize> = rows
        .iter()
        .map(|r| {
            let r = r.borrow();
            (0..models.len())
                .max_by(|&a, &b| {
                    let (oa, ob) = (&r.outcomes[&models[a].name], &r.outcomes[&models[b].name]);
                    oa.quality
                        .total_cmp(&ob.quality)
                        .then(ob.cost_usd.total_cmp(&oa.cost_usd))
                })
                .unwrap_or(0)
        })
        .collect();
    let o = point(0.0, &oracle_choices, rows, models);
    let lo = single_models
        .iter()
        .map(|s| s.cost)
        .fold(f64::INFINITY, f64::min);
    let hi = single_models.iter().map(|s| s.cost).fold(0.0, f64::max);
    let singles: Vec<(f64, f64)> = single_models.iter().map(|s| (s.cost, s.quality)).collect();
    let single_frontier_area = metrics::area(&metrics::frontier(&singles), lo, hi);
    let oracle_frontier_area = metrics::area(&metrics::frontier(&[(o.cost, o.quality)]), lo, hi);
    Reference {
        single_models,
        best_single,
        oracle: Single {
            model: "oracle".into(),
            quality: o.quality,
            cost: o.cost,
        },
        cost_range: (lo, hi),
        single_frontier_area,
        oracle_frontier_area,
    }
}

/// A router's sweep and its trade-off metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub settings: Vec<Point>,
    pub frontier_area: f64,
    /// The cheapest mix of settings that reaches the best single model's
    /// quality, as a fraction of that model's cost (`None`: never reached).
    pub cost_fraction_to_match_best: Option<f64>,
    /// The frontier's quality at the best single model's cost.
    pub quality_at_best_cost: f64,
    /// For two-model sets: APGR and CPT(50%)/CPT(80%).
    pub two_model: Option<TwoModel>,
}

pub fn curve<R: Borrow<Row>>(
    settings: &[f64],
    choices: &[Choices],
    rows: &[R],
    models: &[DatasetModel],
    r: &Reference,
) -> Curve {
    let points: Vec<Point> = settings
        .iter()
        .zip(choices)
        .map(|(&s, c)| point(s, c, rows, models))
        .collect();
    let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.cost, p.quality)).collect();
    let hull = metrics::frontier(&xy);
    let best = &r.best_single;
    let two_model = (models.len() == 2)
        .then(|| {
            let (s, w) = if r.single_models[0].quality >= r.single_models[1].quality {
                (&r.single_models[0], &r.single_models[1])
            } else {
                (&r.single_models[1], &r.single_models[0])
            };
            let shares: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (p.share.get(&s.model).copied().unwrap_or(0.0), p.quality))
                .collect();
            metrics::two_model((&s.model, s.quality), (&w.model, w.quality), &shares)
        })
        .flatten();
    Curve {
        frontier_area: metrics::area(&hull, r.cost_range.0, r.cost_range.1),
        cost_fraction_to_match_best: metrics::x_to_reach(&hull, best.quality)
            .filter(|_| best.cost > 0.0)
            .map(|c| c / best.cost),
        quality_at_best_cost: metrics::value_at(&hull, best.cost),
        two_model,
        settings: points,
    }
}
