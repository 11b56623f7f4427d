//! `switchyard train`: fits a policy from the decision log and writes it as a
//! policy directory (see `policy::file`).
//!
//! The bandit's state is the sums over every (decision, feedback source)
//! reward, attributed as the service attributes them (the routed model for
//! Route, the model that served for Complete), optionally on top of a warm
//! start; so a trained policy decides exactly as a service that had learned
//! the same log. On request (`--fit-sigma`) it also fits the reward noise σ
//! to the residuals of the fitted ridge models; off by default because σ sets
//! how much a model is explored, and on a real replay log the fitted σ (0.46
//! against 0.3) cost 0.05 of evaluated objective. When decisions carry an
//! `intent_label` metadata value, it retrains the intent head on the logged
//! embeddings. Deterministic: the same log gives the same file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::logset::{self, Log};
use crate::classify::quality::QualityHead;
use crate::classify::{IntentHead, TrainOptions, intent};
use crate::config::Config;
use crate::policy::bandit::{Anchor, Bandit, BanditParams, BanditState};
use crate::policy::features;
use crate::policy::file::{self, ArmPrior, Layout, Params, PolicyFile, Source};

/// Prior quality for a model in the log but not in the configured catalog.
pub const UNKNOWN_PRIOR: f64 = 0.5;
/// σ is fitted only from at least this many observations, and kept in this range.
const MIN_FIT_OBSERVATIONS: u64 = 30;
const SIGMA_RANGE: (f64, f64) = (0.05, 1.0);
/// A head is retrained only from at least this many labelled decisions.
const MIN_LABELLED: usize = 20;

pub struct TrainArgs {
    pub database: PathBuf,
    pub since: Option<String>,
    pub until: Option<String>,
    pub out: PathBuf,
    /// Bandit parameters and catalog priors; the embedded defaults when `None`.
    pub config: Option<PathBuf>,
    pub warm_start: Option<PathBuf>,
    /// Fit σ to the residuals instead of keeping the configured value.
    pub fit_sigma: bool,
}

pub fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64).with_message(what.to_owned());
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("static template is valid: this is a bug")
            .progress_chars("=> "),
    );
    bar
}

pub async fn run(args: &TrainArgs) -> anyhow::Result<PolicyFile> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::embedded(),
    };
    let now = crate::clock::now_ms();
    let (since_ms, until_ms) = logset::window(args.since.as_deref(), args.until.as_deref(), now)?;
    let store = logset::open(&args.database).await?;
    let log = logset::load(&store, &args.database, since_ms, until_ms).await?;
    store.close().await;

    // The newest decision's layout is the one the service runs now.
    let dim = log.rows.last().map_or(0, |r| r.context.len());
    let layout = configured_layout(&config, dim)?;
    let mut state = match &args.warm_start {
        // A warm start from before the shape features gains them as zeros.
        Some(p) => {
            let s = file::load_warm_start(p)?;
            let found = s.dim;
            s.widen(dim).map_err(|_| {
                anyhow::anyhow!("warm start has dimension {found}, the log's contexts {dim}")
            })?
        }
        None => BanditState::new(dim),
    };
    let (used, observations, other_layout) = fit_state(&log, &mut state);
    anyhow::ensure!(
        observations > 0,
        "no usable reward in the selection (every decision served nothing)"
    );
    let arms = priors(&config, &log);
    let mut params = config.bandit.params;
    let fitted_sigma = if args.fit_sigma {
        fit_sigma(&log, &state, params, &arms, &layout.anchors(&arms))
    } else {
        None
    };
    if let Some(s) = fitted_sigma {
        params = BanditParams::try_new(
            params.lambda(),
            s,
            params.explore_floor(),
            params.mc_samples(),
            params.exploration(),
        )?;
    }
    let head = retrain_head(&log, &args.out)?;
    let stored = Params::from(params);
    let priors: Vec<ArmPrior> = arms
        .iter()
        .map(|(name, p)| ArmPrior {
            name: name.clone(),
            prior_quality: *p,
        })
        .collect();
    let policy = PolicyFile::new(
        now,
        Source {
            database: args.database.display().to_string(),
            since_ms,
            trained_through_ms: log.through_ms,
            rows: used as u64,
            observations,
        },
        layout,
        stored,
        priors,
        state,
        head.as_ref().map(|_| file::INTENT_HEAD.to_owned()),
    );
    let path = policy.save(&args.out)?;
    println!("policy        {}", policy.version);
    println!(
        "rows          {used} decisions, {observations} rewards ({} other layout, {} without context)",
        other_layout, log.without_context
    );
    for (name, stats) in &policy.state.arms {
        println!("  {name:<24} {:>8} observations", stats.n());
    }
    match fitted_sigma {
        Some(s) => println!("sigma         {s:.4} (fitted from residuals)"),
        None => println!("sigma         {:.4} (configured)", params.sigma()),
    }
    match head {
        Some((labels, n)) => println!(
            "intent head   retrained on {n} labelled decisions, {labels} labels ({})",
            file::INTENT_HEAD
        ),
        None => println!(
            "intent head   none (fewer than {MIN_LABELLED} decisions carry a {:?} metadata label)",
            logset::LABEL_KEY
        ),
    }
    println!("wrote         {}", path.display());
    Ok(policy)
}

/// Adds every reward to `state`; returns (decisions used, rewards, decisions
/// skipped for another context length).
fn fit_state(log: &Log, state: &mut BanditState) -> (usize, u64, usize) {
    let bar = bar(log.rows.len(), "fitting");
    let (mut used, mut observations, mut other) = (0, 0u64, 0);
    for row in &log.rows {
        bar.inc(1);
        if row.context.len() != state.dim {
            other += 1;
            continue;
        }
        let Some(arm) = &row.arm else { continue };
        used += 1;
        for &r in &row.rewards {
            if state.observe(arm, &row.context, r).is_ok() {
                observations += 1;
            }
        }
    }
    bar.finish();
    (used, observations, other)
}

/// The configured catalog's priors, plus any model seen in the log.
pub fn priors(config: &Config, log: &Log) -> Vec<(String, f64)> {
    let mut arms: BTreeMap<String, f64> = BTreeMap::new();
    for row in &log.rows {
        for c in &row.candidates {
            arms.insert(c.model.clone(), UNKNOWN_PRIOR);
        }
    }
    for m in &config.models {
        arms.insert(m.name.clone(), m.prior_quality);
    }
    arms.into_iter().collect()
}

/// Root mean squared residual of the fitted models on their own rewards.
fn fit_sigma(
    log: &Log,
    state: &BanditState,
    params: BanditParams,
    arms: &[(String, f64)],
    anchors: &[Option<Anchor>],
) -> Option<f64> {
    if state.observations() < MIN_FIT_OBSERVATIONS {
        return None;
    }
    let bandit = Bandit::build_anchored(state, params, arms, anchors);
    let (mut sq, mut n) = (0.0, 0.0);
    for row in log.rows.iter().filter(|r| r.context.len() == state.dim) {
        let Some(i) = row
            .arm
            .as_ref()
            .and_then(|a| arms.iter().position(|(n, _)| n == a))
        else {
            continue;
        };
        let (mean, _) = bandit.predict(i, arms[i].1, &row.context);
        for r in &row.rewards {
            sq += (r - mean).powi(2);
            n += 1.0;
        }
    }
    (n > 0.0).then(|| (sq / n).sqrt().clamp(SIGMA_RANGE.0, SIGMA_RANGE.1))
}

/// The layout of the service's heads, when their sizes give the log's `dim`
/// (the heads may have changed since it logged): which feature is which
/// intent, and which is which model's predicted quality. A configured head
/// that does not load is an error: leaving it out would write a policy that
/// the service runs differently from how it is evaluated.
fn configured_layout(config: &Config, dim: usize) -> anyhow::Result<Layout> {
    let c = &config.classifier;
    let intent_labels: Vec<String> = match c.intent_head.as_deref() {
        Some(p) => IntentHead::load(p)
            .with_context(|| format!("classifier.intent_head {}", p.display()))?
            .labels()
            .to_vec(),
        None => Vec::new(),
    };
    let quality_models: Vec<String> = match c.quality_head.as_deref() {
        Some(p) => {
            QualityHead::load(p)
                .with_context(|| format!("classifier.quality_head {}", p.display()))?
                .models
        }
        None => Vec::new(),
    };
    let fits = |q: usize| features::dim(intent_labels.len(), q) == dim;
    let (intent_labels, quality_models) = if fits(quality_models.len()) {
        (intent_labels, quality_models)
    } else if fits(0) {
        (intent_labels, Vec::new())
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Layout {
        dim,
        intent_labels,
        quality_models,
    })
}

/// Retrains the intent head on (logged embedding, `intent_label`) pairs;
/// returns (labels, examples) when it wrote one.
fn retrain_head(log: &Log, out: &Path) -> anyhow::Result<Option<(usize, usize)>> {
    let examples: Vec<(Vec<f32>, String)> = log
        .rows
        .iter()
        .filter_map(|r| Some((r.embedding.clone()?, r.label.clone()?)))
        .collect();
    let labels: std::collections::BTreeSet<&str> =
        examples.iter().map(|(_, l)| l.as_str()).collect();
    if examples.len() < MIN_LABELLED || labels.len() < 2 {
        return Ok(None);
    }
    let n_labels = labels.len();
    let head = intent::train(&examples, &TrainOptions::default())?;
    std::fs::create_dir_all(out)?;
    head.save(&out.join(file::INTENT_HEAD))?;
    Ok(Some((n_labels, examples.len())))
}
