//! Whether the per-model quality head earns its place in a router, decided
//! from the training rows alone by 3-fold cross-validation: both routers
//! are fitted on two folds and swept over cost weights on the third, and the
//! head is kept when its router's mean frontier area is at least as large.
//!
//! Measured on the shared data, the head helps where few models compete and
//! hurts among mmlu-pro's 29 (docs/evaluation.md), and which case a user's
//! own file is cannot be told in advance.

use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{HeadChoice, fit, logreg, report, route, router};
use crate::offline::replay::{DatasetModel, Row};
use crate::policy::bandit::BanditParams;

/// Folds of the cross-validation: each fold is held out once.
const FOLDS: usize = 3;

/// Mean frontier areas on the held-out folds, with and without the head.
#[derive(Debug, Clone, Copy)]
pub struct Choice {
    pub with_head: f64,
    pub without: f64,
}

impl Choice {
    pub fn keeps_head(&self) -> bool {
        self.with_head >= self.without
    }
}

/// Fits both routers on all but one of [`FOLDS`] seeded folds of `rows` and
/// sweeps them on the fold left out, for each fold. `None` when a fold
/// would be too small to say anything.
#[allow(clippy::too_many_arguments)]
pub fn quality_head(
    rows: &[Row],
    emb: &[Vec<f32>],
    models: &[DatasetModel],
    head: &HeadChoice,
    params: &BanditParams,
    sweep_points: usize,
    seed: u64,
) -> anyhow::Result<Option<Choice>> {
    if rows.len() / FOLDS < 10 {
        return Ok(None);
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5e1ec7));
    let mut total = Choice {
        with_head: 0.0,
        without: 0.0,
    };
    for fold in 0..FOLDS {
        let (val, rest): (Vec<usize>, Vec<usize>) =
            (0..order.len()).partition(|i| i % FOLDS == fold);
        let pick = |idx: &[usize]| -> (Vec<Row>, Vec<Vec<f32>>) {
            (
                idx.iter().map(|&i| rows[order[i]].clone()).collect(),
                idx.iter().map(|&i| emb[order[i]].clone()).collect(),
            )
        };
        let c = compare(
            pick(&rest),
            pick(&val),
            models,
            head,
            params,
            sweep_points,
            seed,
        )?;
        total.with_head += c.with_head / FOLDS as f64;
        total.without += c.without / FOLDS as f64;
    }
    Ok(Some(total))
}

/// Both routers fitted on `(fit_rows, fit_emb)`, swept on `(val_rows, val_emb)`.
fn compare(
    (fit_rows, fit_emb): (Vec<Row>, Vec<Vec<f32>>),
    (val_rows, val_emb): (Vec<Row>, Vec<Vec<f32>>),
    models: &[DatasetModel],
    head: &HeadChoice,
    params: &BanditParams,
    sweep_points: usize,
    seed: u64,
) -> anyhow::Result<Choice> {
    let costs = fit::CostModel::fit(&fit_rows, models);
    let refs = report::reference(&val_rows, models);
    let lr = logreg::LogReg::fit(&fit_emb, &fit_rows, models, seed);
    let area = |quality: Option<&crate::classify::quality::QualityHead>| {
        let r = router::fit(&fit_rows, &fit_emb, models, head, quality, seed, None)?;
        let prepared = r.prepare(&val_rows, &val_emb);
        let weights = route::sweep(&costs, &prepared, models.len(), sweep_points);
        let choices = route::offline_sweep(
            &r.greedy_bandit(params, models),
            &prepared,
            &costs,
            models.len(),
            &weights,
            seed,
            &indicatif::ProgressBar::hidden(),
        );
        anyhow::Ok(report::curve(&weights, &choices, &val_rows, models, &refs).frontier_area)
    };
    Ok(Choice {
        with_head: area(Some(&lr))?,
        without: area(None)?,
    })
}
