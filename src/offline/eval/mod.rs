//! `switchyard eval`: replays a routing-outcomes dataset (format in
//! `../shared/data/README.md`) through the service's classifier and policy
//! code, in process, and measures the router's quality–cost trade-off.
//!
//! * **offline**: fit on the training rows (full information: every model's
//!   outcome is known for each training prompt), then route every evaluation
//!   prompt once per cost weight of a sweep from "best regardless of cost" to
//!   "cheapest always", with the greedy snapshot of the fitted bandit. The kNN
//!   and logistic-regression quality predictors on the same embeddings run on
//!   the same sweep as the simple learned baselines.
//! * **online**: the bandit starts from its priors (or `--warm-start`) and
//!   learns from the dataset's outcome for each model it picks, with the
//!   configured exploration, at one cost weight.
//!
//! Outputs in `--out`: `decisions.jsonl` (`{"id","model","setting"}` per
//! prompt and setting), `summary.json` (see [`report`]), `frontier.png` or
//! `online.png`, and what was fitted: `task-head.json` (the fitted routing head) and
//! `prior.json` (the bandit's sums, a `bandit.warm_start` file).
//! Everything is seeded: the same inputs give byte-identical outputs.

pub mod bootstrap;
pub mod cache;
pub mod cli;
pub mod data;
pub mod fit;
pub mod logreg;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod route;
pub mod router;
pub mod select;
mod write;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::classify::intent;
use crate::config::Config;

pub use write::Summary;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Offline,
    Online,
}

/// Which head's probabilities become the bandit's features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadChoice {
    /// A head fitted to the training rows' labels of this kind (the default:
    /// their `task`).
    Fit(fit::Target),
    /// No head: the context is bias and length only.
    None,
    /// An existing head file (for example the service's default head).
    File(PathBuf),
}

/// Whether a router gets the per-model quality head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QualityChoice {
    /// When it routes better in cross-validation on the training rows.
    Auto,
    Fit,
    None,
}

impl QualityChoice {
    /// Whether to fit the head; `auto` runs `compare` and says what it chose.
    pub fn resolve(
        self,
        compare: impl FnOnce() -> anyhow::Result<Option<select::Choice>>,
    ) -> anyhow::Result<bool> {
        Ok(match self {
            QualityChoice::Fit => true,
            QualityChoice::None => false,
            QualityChoice::Auto => match compare()? {
                // Too few rows to hold any out: the head, as before.
                None => true,
                Some(c) => {
                    eprintln!(
                        "quality head: {} (cross-validated frontier area on the training rows: {:.4} with it, {:.4} without)",
                        if c.keeps_head() { "kept" } else { "left out" },
                        c.with_head,
                        c.without
                    );
                    c.keeps_head()
                }
            },
        })
    }
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub dataset: PathBuf,
    pub models: PathBuf,
    /// Training rows; `None`: a seeded split of `dataset`.
    pub train: Option<PathBuf>,
    pub out: PathBuf,
    pub mode: Mode,
    pub seed: u64,
    /// Share of `dataset` held out for evaluation when there is no `train`.
    pub holdout: f64,
    /// Use only this many rows of `dataset` (seeded choice; 0: all).
    pub limit: usize,
    pub head: HeadChoice,
    /// Whether to fit a per-model quality head on the embedding and feed its
    /// predictions to the bandit (see `classify::quality`).
    pub quality: QualityChoice,
    pub models_subset: Option<Vec<String>>,
    /// Geometric grid points of the offline sweep (besides cost weight 0).
    pub sweep_points: usize,
    pub knn_k: usize,
    /// Offline: paired bootstrap resamples of the evaluation rows for the
    /// router's lead over the baselines (0: none).
    pub bootstrap: usize,
    /// The online run's cost weight.
    pub cost_weight: f64,
    /// Online: prompts between snapshot rebuilds.
    pub refit_every: usize,
    /// Online: a state to start from instead of the priors alone.
    pub warm_start: Option<PathBuf>,
    /// Where embeddings are cached.
    pub cache_dir: PathBuf,
}

impl EvalOptions {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.holdout > 0.0 && self.holdout < 1.0,
            "--holdout must be in (0, 1), got {}",
            self.holdout
        );
        anyhow::ensure!(
            (2..=1000).contains(&self.sweep_points),
            "--sweep-points must be in 2..=1000"
        );
        anyhow::ensure!(self.knn_k >= 1, "--knn-k must be at least 1");
        anyhow::ensure!(
            self.bootstrap <= 100_000,
            "--bootstrap must be at most 100000 resamples"
        );
        anyhow::ensure!(
            self.cost_weight.is_finite() && self.cost_weight >= 0.0,
            "--cost-weight must be finite and >= 0"
        );
        anyhow::ensure!(self.refit_every >= 1, "--refit-every must be at least 1");
        Ok(())
    }
}

/// Runs the evaluation and writes its outputs; returns the summary.
pub fn run(opts: &EvalOptions, config: &Config) -> anyhow::Result<Summary> {
    opts.validate()?;
    let data = data::load(&opts.dataset, &opts.models)?;
    let mut data = data::restrict(data, opts.models_subset.as_deref())?;
    if opts.limit > 0 {
        data = data.shuffled(opts.seed, opts.limit);
    }
    let models = data.models.clone();
    let (train, eval) = match &opts.train {
        Some(t) => {
            let td = data::restrict(data::load(t, &opts.models)?, opts.models_subset.as_deref())?;
            (td.rows, data.rows)
        }
        None => {
            anyhow::ensure!(
                data.rows.len() >= 2,
                "the dataset needs at least two rows to split"
            );
            data::split(data.rows, opts.seed, opts.holdout)
        }
    };
    anyhow::ensure!(
        !train.is_empty() && !eval.is_empty(),
        "empty train or eval rows"
    );
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    eprintln!(
        "{} models; {} training rows, {} evaluation rows",
        models.len(),
        train.len(),
        eval.len()
    );

    let [emb_train, emb_eval] = embed_sets(config, &opts.cache_dir, [&train, &eval])?;

    let keep = opts.quality.resolve(|| {
        select::quality_head(
            &train,
            &emb_train,
            &models,
            &opts.head,
            &config.bandit.params,
            opts.sweep_points,
            opts.seed,
        )
    })?;
    // The quality head is the logistic baseline's fit.
    let lr = logreg::LogReg::fit(&emb_train, &train, &models, opts.seed);
    let fitted = router::fit(
        &train,
        &emb_train,
        &models,
        &opts.head,
        keep.then_some(&lr),
        opts.seed,
        Some(&opts.out),
    )?;
    let head = fitted.head.as_ref();
    let head_accuracy = head
        .filter(|_| opts.head == HeadChoice::Fit(fit::Target::Task))
        .map(|h| {
            let ex: Vec<(Vec<f32>, String)> = emb_eval
                .iter()
                .cloned()
                .zip(eval.iter().map(|r| r.task.clone()))
                .collect();
            intent::evaluate(h, &ex, None).accuracy
        });
    let prep_eval = fitted.prepare(&eval, &emb_eval);
    let anchors = &fitted.layout.anchors;
    let costs = fit::CostModel::fit(&train, &models);
    let refs = report::reference(&eval, &models);
    let params = config.bandit.params;
    let ctx = write::Context {
        opts,
        models: &models,
        eval: &eval,
        train_rows: train.len(),
        head,
        head_accuracy,
        refs: &refs,
    };
    match opts.mode {
        Mode::Offline => {
            let weights = route::sweep(&costs, &prep_eval, models.len(), opts.sweep_points);
            let bandit = fitted.greedy_bandit(&params, &models);
            // A model whose sums are unusable falls back to its prior: say so.
            anyhow::ensure!(
                bandit.degraded().is_empty(),
                "the fitted statistics of {:?} are unusable",
                bandit.degraded()
            );
            let bar = indicatif::ProgressBar::new(weights.len() as u64).with_message("routing");
            let router = route::offline_sweep(
                &bandit,
                &prep_eval,
                &costs,
                models.len(),
                &weights,
                opts.seed,
                &bar,
            );
            bar.finish();
            let knn = fit::Knn::new(opts.knn_k, &emb_train, &train, &models);
            let baseline = route::knn(&knn, &emb_eval, &prep_eval, &costs, &weights);
            let lr_q: Vec<Vec<f64>> = emb_eval.iter().map(|e| lr.predict(e)).collect();
            let lr_choices = route::predicted(&lr_q, &prep_eval, &costs, &weights);
            let by_task = fit::task_means(&train, &models);
            let task_q: Vec<Vec<f64>> = eval.iter().map(|r| by_task(&r.task)).collect();
            let task_choices = route::predicted(&task_q, &prep_eval, &costs, &weights);
            let sweeps = bootstrap::Sweeps {
                weights: &weights,
                router: &router,
                baselines: vec![("knn", &baseline), ("logreg", &lr_choices)],
            };
            let boot = bootstrap::run(&sweeps, &eval, &models, opts.bootstrap, opts.seed);
            write::offline(
                &ctx,
                &weights,
                &router,
                &baseline,
                (&lr_choices, lr.lambda),
                &task_choices,
                boot,
            )
        }
        Mode::Online => {
            let dim = prep_eval.first().map_or(2, |p| p.features.len());
            let start = crate::learn::warm(dim, opts.warm_start.as_deref())?;
            let choices = route::online(
                &eval,
                &prep_eval,
                &models,
                &costs,
                params,
                start,
                anchors,
                opts.cost_weight,
                opts.refit_every,
                opts.seed,
            )?;
            write::online(&ctx, &choices)
        }
    }
}

/// Embeds each set of rows with the configured classifier, through the
/// embedding cache in `cache_dir`.
pub fn embed_sets<const N: usize>(
    config: &Config,
    cache_dir: &Path,
    sets: [&[crate::offline::replay::Row]; N],
) -> anyhow::Result<[Vec<Vec<f32>>; N]> {
    let cs = &config.classifier;
    let embedder = crate::offline::intents::embedder(
        &cs.model_dir,
        cs.max_tokens,
        cs.static_table.as_deref(),
    )?;
    let mut cache = cache::EmbeddingCache::open(
        cache_dir,
        &cs.model_dir,
        cs.max_tokens,
        cs.static_table.as_deref(),
        embedder.dim(),
    )?;
    let mut out = Vec::with_capacity(N);
    for rows in sets {
        out.push(data::embed(&embedder, &mut cache, rows)?);
    }
    out.try_into()
        .map_err(|_| anyhow::anyhow!("one embedding set per input set: this is a bug"))
}

impl std::str::FromStr for HeadChoice {
    type Err = anyhow::Error;

    /// `task`, `task-difficulty`, `clusters:K`, `task-clusters:K`, `none`, or a head file's path.
    fn from_str(s: &str) -> anyhow::Result<HeadChoice> {
        Ok(match s {
            "task" => HeadChoice::Fit(fit::Target::Task),
            "task-difficulty" => HeadChoice::Fit(fit::Target::TaskDifficulty),
            "none" => HeadChoice::None,
            _ => match s.strip_prefix("clusters:") {
                Some(k) => HeadChoice::Fit(fit::Target::Clusters(parse_k(k)?)),
                None => match s.strip_prefix("task-clusters:") {
                    Some(k) => HeadChoice::Fit(fit::Target::TaskClusters(parse_k(k)?)),
                    None => HeadChoice::File(s.into()),
                },
            },
        })
    }
}

fn parse_k(k: &str) -> anyhow::Result<usize> {
    let k: usize = k
        .parse()
        .map_err(|_| anyhow::anyhow!("--head ...:K needs a number, got {k:?}"))?;
    anyhow::ensure!((2..=512).contains(&k), "--head ...:K needs K in 2..=512");
    Ok(k)
}
