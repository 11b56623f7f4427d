//! `switchyard evaluate-policy` and `switchyard promote`: off-policy
//! evaluation of a candidate policy file on the decision log, and the rule
//! that makes it current.
//!
//! The candidate's action probabilities are computed exactly as the service
//! would pick on each logged request: the same eligibility and expected costs
//! (from the logged candidates), the same cost weight, the candidate's own
//! parameters (Monte-Carlo draws, exploration floor), with a seeded RNG per
//! row. Pinned decisions are left out (no policy chose them, and every policy
//! would serve them the same way). Values are measured twice: the objective
//! reward − cost_weight × cost as logged, and quality (reward) alone.
//!
//! The reward model of DR is a separately fitted ridge regression per model
//! (the bandit's own estimator, on each row's mean reward), cross-fitted on two
//! seeded folds so a row's correction never uses a model fitted on that row.
//!
//! Promotion rule: the candidate's DR lower confidence bound on the objective
//! must exceed the current policy's estimate, the on-policy mean objective of
//! the logged decisions (the policy that actually served them).

use std::collections::HashMap;
use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::logset::{self, LogRow};
use super::ope::{self, OpeRow, Report};
use super::train::{UNKNOWN_PRIOR, bar};
use crate::policy::bandit::{Bandit, BanditState};
use crate::policy::file::PolicyFile;
use crate::policy::{Candidate, Context, Policy};
use crate::store::PromotionRow;

pub struct EvalArgs {
    pub database: PathBuf,
    pub candidate: PathBuf,
    pub since: Option<String>,
    pub until: Option<String>,
    pub options: ope::Options,
}

/// Rows left out of the evaluation, by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Skipped {
    pub pinned: usize,
    pub other_layout: usize,
    /// The logged model is not an eligible candidate (a corrupt row).
    pub not_eligible: usize,
    pub without_context: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub candidate: String,
    pub since_ms: i64,
    pub through_ms: i64,
    pub rows: usize,
    pub skipped: Skipped,
    pub reward_model: &'static str,
    pub clip: f64,
    pub resamples: usize,
    pub level: f64,
    pub seed: u64,
    /// reward − cost_weight × cost.
    pub objective: Report,
    /// Reward alone.
    pub quality: Report,
}

/// Evaluates the candidate on the log.
pub async fn evaluate(args: &EvalArgs) -> anyhow::Result<(Evaluation, PolicyFile)> {
    let policy = PolicyFile::load(&args.candidate)?;
    let (since_ms, until_ms) = logset::window(
        args.since.as_deref(),
        args.until.as_deref(),
        crate::clock::now_ms(),
    )?;
    let store = logset::open(&args.database).await?;
    let log = logset::load(&store, &args.database, since_ms, until_ms).await?;
    store.close().await;
    let mut skipped = Skipped {
        without_context: log.without_context,
        ..Skipped::default()
    };
    let rows: Vec<&LogRow> = log
        .rows
        .iter()
        .filter(|r| {
            let keep = !r.pinned && r.context.len() == policy.layout.dim;
            skipped.pinned += usize::from(r.pinned);
            skipped.other_layout += usize::from(!r.pinned && !keep);
            keep
        })
        .collect();
    let (objective, quality) = ope_rows(&policy, &rows, args.options.seed, &mut skipped)?;
    anyhow::ensure!(
        !objective.is_empty(),
        "no logged decision can be evaluated (pinned {}, other layout {}, not eligible {})",
        skipped.pinned,
        skipped.other_layout,
        skipped.not_eligible
    );
    let eval = Evaluation {
        candidate: policy.version.clone(),
        since_ms,
        through_ms: log.through_ms,
        rows: objective.len(),
        skipped,
        reward_model: "ridge per model, cross-fitted on 2 folds",
        clip: args.options.clip,
        resamples: args.options.resamples,
        level: args.options.level,
        seed: args.options.seed,
        objective: ope::evaluate(&objective, &args.options)?,
        quality: ope::evaluate(&quality, &args.options)?,
    };
    Ok((eval, policy))
}

/// Builds (objective rows, quality rows) for the usable logged decisions.
fn ope_rows(
    policy: &PolicyFile,
    rows: &[&LogRow],
    seed: u64,
    skipped: &mut Skipped,
) -> anyhow::Result<(Vec<OpeRow>, Vec<OpeRow>)> {
    let params = policy.params.validated()?;
    // Arms: the candidate's priors, plus any logged model it does not know.
    let mut arms: Vec<(String, f64)> = policy
        .arms
        .iter()
        .map(|a| (a.name.clone(), a.prior_quality))
        .collect();
    for r in rows {
        for c in &r.candidates {
            if !arms.iter().any(|(n, _)| n == &c.model) {
                arms.push((c.model.clone(), UNKNOWN_PRIOR));
            }
        }
    }
    let index: HashMap<&str, usize> = arms
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    // As the service would run it: anchored on its quality head's
    // predictions, the other models' masked (see `policy::features`).
    let candidate =
        Bandit::build_anchored(&policy.state, params, &arms, &policy.layout.anchors(&arms));
    let reward_models = cross_fit(rows, policy.layout.dim, params, &arms, seed);

    let bar = bar(rows.len(), "evaluating");
    let (mut objective, mut quality) = (Vec::new(), Vec::new());
    for (i, (row, fold)) in rows.iter().zip(&reward_models.fold).enumerate() {
        bar.inc(1);
        let action = row
            .candidates
            .iter()
            .position(|c| c.model == row.chosen && c.eligible);
        let Some(action) = action else {
            skipped.not_eligible += 1;
            continue;
        };
        let cands: Vec<Candidate> = row
            .candidates
            .iter()
            .map(|c| {
                let m = index[c.model.as_str()];
                Candidate {
                    model: m,
                    eligible: c.eligible,
                    reason: if c.eligible {
                        String::new()
                    } else {
                        "logged ineligible".into()
                    },
                    expected_quality: arms[m].1,
                    quality_std: 0.0,
                    expected_cost_usd: c.expected_cost_usd,
                    // As logged, so the candidate policy scores what the logger scored.
                    load: crate::policy::Load {
                        load_penalty: c.load_penalty,
                        ..Default::default()
                    },
                    score: 0.0,
                    probability: 0.0,
                }
            })
            .collect();
        let ctx = Context {
            cost_weight: row.cost_weight,
            features: row.context.clone(),
            prompt_tokens: 0,
        };
        // One seeded stream per row: reproducible, independent of row order.
        let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let decision = candidate.decide(&ctx, cands.clone(), &mut rng);
        let target_p: Vec<f64> = decision.candidates.iter().map(|c| c.probability).collect();
        // The reward model fitted on the other fold.
        let model = &reward_models.bandits[1 - fold];
        let q_hat: Vec<f64> = cands
            .iter()
            .map(|c| {
                model
                    .predict(c.model, arms[c.model].1, &row.context)
                    .0
                    .clamp(0.0, 1.0)
            })
            .collect();
        let reward = row.reward();
        let w = row.cost_weight;
        quality.push(OpeRow {
            action,
            logging_p: row.propensity,
            target_p: target_p.clone(),
            reward_hat: q_hat.clone(),
            y: reward,
        });
        objective.push(OpeRow {
            action,
            logging_p: row.propensity,
            target_p,
            reward_hat: q_hat
                .iter()
                .zip(&cands)
                .map(|(q, c)| q - w * c.expected_cost_usd)
                .collect(),
            y: reward - w * row.cost_usd,
        });
    }
    bar.finish();
    Ok((objective, quality))
}

struct CrossFit {
    /// Fold (0 or 1) of each row.
    fold: Vec<usize>,
    /// The model fitted on each fold's rows.
    bandits: [Bandit; 2],
}

fn cross_fit(
    rows: &[&LogRow],
    dim: usize,
    params: crate::policy::bandit::BanditParams,
    arms: &[(String, f64)],
    seed: u64,
) -> CrossFit {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut fold = vec![0; rows.len()];
    for (k, &i) in order.iter().enumerate() {
        fold[i] = k % 2;
    }
    let mut states = [BanditState::new(dim), BanditState::new(dim)];
    for (row, &f) in rows.iter().zip(&fold) {
        // Rows without a valid reward simply do not inform the model.
        let _ = states[f].observe(&row.chosen, &row.context, row.reward());
    }
    CrossFit {
        fold,
        bandits: [
            Bandit::build(&states[0], params, arms),
            Bandit::build(&states[1], params, arms),
        ],
    }
}

/// The evaluation as a table a person reads.
pub fn print_table(e: &Evaluation) {
    println!("candidate     {}", e.candidate);
    println!(
        "rows          {} (skipped: {} pinned, {} other layout, {} not eligible, {} without context)",
        e.rows,
        e.skipped.pinned,
        e.skipped.other_layout,
        e.skipped.not_eligible,
        e.skipped.without_context
    );
    println!(
        "intervals     {:.0}% percentile bootstrap, {} resamples, seed {}; DR reward model: {}",
        e.level * 100.0,
        e.resamples,
        e.seed,
        e.reward_model
    );
    for (name, r) in [
        ("objective (reward - w*cost)", &e.objective),
        ("quality (reward)", &e.quality),
    ] {
        println!("\n{name}");
        println!(
            "  {:<18} {:>10} {:>10} {:>10}",
            "estimator", "value", "lower", "upper"
        );
        for (label, est) in [
            ("logging (on-policy)", r.logging),
            ("candidate IPS", r.ips),
            ("candidate SNIPS", r.snips),
            ("candidate DR", r.dr),
        ] {
            println!(
                "  {label:<18} {:>10.4} {:>10.4} {:>10.4}",
                est.value, est.lower, est.upper
            );
        }
    }
    let w = &e.objective.weights;
    println!(
        "\nweights       mean {:.3}, max {:.2}, effective sample size {:.1} of {}, clipped {} at {}",
        w.mean, w.max, w.effective_sample_size, e.rows, w.clipped, w.clip
    );
    let largest: Vec<String> = w.largest.iter().map(|x| format!("{x:.2}")).collect();
    println!("largest       {}", largest.join(", "));
}

/// Whether the candidate may become current, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub accept: bool,
    pub lower_bound: f64,
    pub baseline: f64,
    pub reason: String,
}

pub fn verdict(e: &Evaluation) -> Verdict {
    let lower_bound = e.objective.dr.lower;
    let baseline = e.objective.logging.value;
    let accept = lower_bound > baseline;
    let reason = format!(
        "candidate DR lower bound {lower_bound:.4} {} current policy's estimate {baseline:.4} (objective)",
        if accept { ">" } else { "<=" }
    );
    Verdict {
        accept,
        lower_bound,
        baseline,
        reason,
    }
}

/// Evaluates and, if the rule (or `force`) allows, makes the candidate
/// current. Returns the promotion id, or `None` when the rule refused.
pub async fn promote(
    args: &EvalArgs,
    force: bool,
) -> anyhow::Result<(Evaluation, Verdict, Option<i64>)> {
    let (eval, policy) = evaluate(args).await?;
    let v = verdict(&eval);
    if !v.accept && !force {
        return Ok((eval, v, None));
    }
    let store = logset::open(&args.database).await?;
    let id = store
        .record_promotion(PromotionRow {
            version: policy.version.clone(),
            at_ms: crate::clock::now_ms(),
            forced: !v.accept,
            estimate: Some(eval.objective.dr.value),
            lower_bound: Some(v.lower_bound),
            baseline: Some(v.baseline),
            report: serde_json::to_string(&eval)?,
            policy: serde_json::to_string(&policy)?,
        })
        .await?;
    store.close().await;
    Ok((eval, v, Some(id)))
}
