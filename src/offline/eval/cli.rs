//! The `eval` command line: flags, config, and the headline printed at the end.

use std::path::PathBuf;

use super::{EvalOptions, HeadChoice, Mode, QualityChoice, Summary};
use crate::config::Config;

/// `switchyard eval`'s flags.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    dataset: PathBuf,
    /// The dataset's `*.models.json`.
    #[arg(long)]
    models: PathBuf,
    /// Training rows (default: a seeded split of --dataset).
    #[arg(long)]
    train: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "offline")]
    mode: EvalMode,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Share of --dataset held out for evaluation when there is no --train.
    #[arg(long, default_value_t = 0.3)]
    holdout: f64,
    /// Use only this many rows of --dataset, chosen by seed (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Routing head: "task", "task-difficulty" or "clusters:K" (fit to the training rows),
    /// "none", or a head file.
    #[arg(long, default_value = "task")]
    head: String,
    /// Per-model quality head on the full embedding, fed to the bandit:
    /// "auto" (kept when it routes better in cross-validation on the
    /// training rows), "fit" (always) or "none".
    #[arg(long, value_enum, default_value = "auto")]
    quality: QualityChoice,
    /// Only these models (comma-separated), e.g. two for APGR/CPT.
    #[arg(long, value_delimiter = ',')]
    models_subset: Option<Vec<String>>,
    #[arg(long, default_value_t = 40)]
    sweep_points: usize,
    /// Neighbours of the kNN baseline.
    #[arg(long, default_value_t = 50)]
    knn_k: usize,
    /// Paired bootstrap resamples of the evaluation rows: intervals for the
    /// router's lead over each baseline (0: none).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Online mode's cost weight (default: the config's routing.cost_weight).
    #[arg(long)]
    cost_weight: Option<f64>,
    #[arg(long, default_value_t = 32)]
    refit_every: usize,
    /// Online mode: start from this bandit state instead of the priors alone.
    #[arg(long)]
    warm_start: Option<PathBuf>,
    /// Classifier and bandit settings (embedded defaults when absent).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "target/eval-cache")]
    cache_dir: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EvalMode {
    Offline,
    Online,
}

/// Runs `switchyard eval` and prints the headline numbers.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::embedded(),
    };
    let opts = EvalOptions {
        dataset: a.dataset,
        models: a.models,
        train: a.train,
        out: a.out,
        mode: match a.mode {
            EvalMode::Offline => Mode::Offline,
            EvalMode::Online => Mode::Online,
        },
        seed: a.seed,
        holdout: a.holdout,
        limit: a.limit,
        head: a.head.parse::<HeadChoice>()?,
        quality: a.quality,
        models_subset: a.models_subset,
        sweep_points: a.sweep_points,
        knn_k: a.knn_k,
        bootstrap: a.bootstrap,
        cost_weight: a.cost_weight.unwrap_or(config.routing.cost_weight),
        refit_every: a.refit_every,
        warm_start: a.warm_start,
        cache_dir: a.cache_dir,
    };
    let s = super::run(&opts, &config)?;
    println!("{}", headline(&s));
    Ok(())
}

/// A few lines for the terminal: the numbers a reader looks for first.
pub fn headline(s: &Summary) -> String {
    let r = &s.reference;
    let mut out = format!(
        "{} ({}): {} train / {} eval rows\nbest single {} quality {:.4} cost ${:.3e}; oracle quality {:.4} cost ${:.3e}; single-model frontier area {:.4}",
        s.dataset,
        s.mode,
        s.train_rows,
        s.eval_rows,
        r.best_single.model,
        r.best_single.quality,
        r.best_single.cost,
        r.oracle.quality,
        r.oracle.cost,
        r.single_frontier_area
    );
    if let Some(a) = s.head.eval_accuracy {
        out += &format!("\ntask head accuracy on eval rows {a:.4}");
    }
    let lr = s.logreg.as_ref().map(|l| l.curve.clone());
    for (name, c) in [
        ("router", &s.router),
        ("knn", &s.knn),
        ("logreg", &lr),
        ("task-label oracle", &s.task_oracle),
    ] {
        if let Some(c) = c {
            out += &format!(
                "\n{name}: frontier area {:.4}; quality at best single's cost {:.4}; matches best single at {}",
                c.frontier_area,
                c.quality_at_best_cost,
                c.cost_fraction_to_match_best
                    .map_or("never".into(), |f| format!("{:.1}% of its cost", 100.0 * f))
            );
            if let Some(t) = &c.two_model {
                out += &format!(
                    "; APGR {:.4} CPT(50%) {} CPT(80%) {}",
                    t.apgr,
                    t.cpt50.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v)),
                    t.cpt80.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
                );
            }
        }
    }
    if let Some(b) = &s.bootstrap {
        let pct = 100.0 * b.level;
        let c = &b.router_cost_to_match;
        let show = |v: Option<f64>| v.map_or("never".into(), |v| format!("{:.1}%", 100.0 * v));
        out += &format!(
            "\nbootstrap ({} resamples, {pct:.0}% intervals): router matches best single at {} .. {}",
            b.resamples,
            show(c.lo),
            show(c.hi)
        );
        for l in &b.leads {
            let line = |what: &str, i: &super::bootstrap::Interval| {
                format!(
                    "{what} {:+.4} ({:+.4} .. {:+.4}, ahead in {:.0}%)",
                    i.estimate,
                    i.lo,
                    i.hi,
                    100.0 * i.above_zero
                )
            };
            out += &format!(
                "\nrouter - {}: {}",
                l.baseline,
                line("frontier area", &l.frontier_area)
            );
            if let Some(a) = &l.apgr {
                out += &format!("; {}", line("APGR", a));
            }
        }
    }
    if let Some(o) = &s.online {
        out += &format!(
            "\nonline at cost_weight {}: quality {:.4} cost ${:.3e}; last window quality {:.4}",
            o.cost_weight,
            o.overall.quality,
            o.overall.cost,
            o.windows.last().map_or(0.0, |w| w.quality)
        );
        let l = &o.late_half;
        out += &format!(
            "\nlate half ({} steps): objective {:.4}; best single {} {:.4}",
            l.steps, l.objective, l.best_single_model, l.best_single_objective
        );
    }
    out
}
