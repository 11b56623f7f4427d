//! The CLI of retraining from the log: `train`, `evaluate-policy` and
//! `promote` (flattened into the binary's subcommands).

use std::path::PathBuf;

/// Retraining and off-policy evaluation subcommands.
#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Fit a policy from the decision log and write it as a policy directory,
    /// or (--dataset) the router's heads and prior from a routing-outcomes file.
    Train {
        /// The decision log (SQLite file written by `serve`).
        #[arg(long, required_unless_present = "dataset", conflicts_with = "dataset")]
        database: Option<PathBuf>,
        /// Only decisions from this time: Unix ms, YYYY-MM-DD[THH:MM:SSZ], or an age (7d, 12h).
        #[arg(long, requires = "database")]
        since: Option<String>,
        /// Only feedback recorded up to this time (same forms as --since).
        #[arg(long, requires = "database")]
        until: Option<String>,
        /// A routing-outcomes JSONL file (one prompt per line with every
        /// model's quality and cost) to fit the routing and quality heads and
        /// the bandit's prior from.
        #[arg(long, requires = "models")]
        dataset: Option<PathBuf>,
        /// The dataset's models and prices (`*.models.json`).
        #[arg(long, requires = "dataset")]
        models: Option<PathBuf>,
        /// Seed of the cross-validation folds (--dataset).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Where prompt embeddings are cached (--dataset).
        #[arg(long, default_value = "target/eval-cache")]
        cache_dir: PathBuf,
        /// The per-model quality head (--dataset): "auto" keeps it when it
        /// routes better in cross-validation on the rows, "fit" always, "none" never.
        #[arg(long, value_enum, default_value = "auto")]
        quality: crate::offline::eval::QualityChoice,
        #[arg(long)]
        out: PathBuf,
        /// Bandit parameters and catalog priors (embedded defaults when absent).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A state or policy to add the log's sums to.
        #[arg(long)]
        warm_start: Option<PathBuf>,
        /// Fit sigma (reward noise) to the residuals instead of keeping the configured value.
        #[arg(long)]
        fit_sigma: bool,
    },
    /// Off-policy evaluation of a candidate policy on the decision log.
    EvaluatePolicy {
        #[command(flatten)]
        eval: OpeArgs,
        /// Print the full evaluation as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a candidate current if its lower confidence bound beats the current policy.
    Promote {
        #[command(flatten)]
        eval: OpeArgs,
        /// Promote even when the rule refuses (operator override).
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args)]
pub struct LogArgs {
    /// The decision log (SQLite file written by `serve`).
    #[arg(long)]
    database: PathBuf,
    /// Only decisions from this time: Unix ms, YYYY-MM-DD[THH:MM:SSZ], or an age (7d, 12h).
    #[arg(long)]
    since: Option<String>,
    /// Only feedback recorded up to this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

#[derive(clap::Args)]
pub struct OpeArgs {
    #[command(flatten)]
    log: LogArgs,
    /// The candidate policy directory (written by `train`).
    #[arg(long)]
    candidate: PathBuf,
    /// Importance weights above this are clipped (and reported).
    #[arg(long, default_value_t = 100.0)]
    clip: f64,
    /// Bootstrap resamples for the confidence intervals.
    #[arg(long, default_value_t = 1000)]
    resamples: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

impl OpeArgs {
    fn into_lib(self) -> crate::offline::evaluate::EvalArgs {
        crate::offline::evaluate::EvalArgs {
            database: self.log.database,
            candidate: self.candidate,
            since: self.log.since,
            until: self.log.until,
            options: crate::offline::ope::Options {
                clip: self.clip,
                resamples: self.resamples,
                level: self.level,
                seed: self.seed,
            },
        }
    }
}

impl PolicyCommand {
    /// `train --dataset`, which runs outside the async runtime (the
    /// classifier blocks on its own threads); `None` for every other command.
    pub fn run_offline(&self) -> Option<anyhow::Result<()>> {
        let PolicyCommand::Train {
            dataset: Some(dataset),
            models: Some(models),
            seed,
            cache_dir,
            quality,
            out,
            config,
            warm_start,
            fit_sigma,
            ..
        } = self
        else {
            return None;
        };
        Some((|| {
            anyhow::ensure!(
                warm_start.is_none() && !fit_sigma,
                "--warm-start and --fit-sigma apply to --database"
            );
            let config = match config {
                Some(p) => crate::config::Config::load(p)?,
                None => crate::config::Config::embedded(),
            };
            let a = crate::offline::eval::router::DatasetArgs {
                dataset,
                models,
                out,
                seed: *seed,
                cache_dir,
                quality: *quality,
            };
            crate::offline::eval::router::train_dataset(&a, &config)
        })())
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            PolicyCommand::Train {
                database,
                since,
                until,
                out,
                config,
                warm_start,
                fit_sigma,
                ..
            } => {
                let args = crate::offline::train::TrainArgs {
                    database: database
                        .ok_or_else(|| anyhow::anyhow!("--database or --dataset is required"))?,
                    since,
                    until,
                    out,
                    config,
                    warm_start,
                    fit_sigma,
                };
                crate::offline::train::run(&args).await.map(|_| ())
            }
            PolicyCommand::EvaluatePolicy { eval, json } => {
                use crate::offline::evaluate as ev;
                let (e, _) = ev::evaluate(&eval.into_lib()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&e)?);
                } else {
                    ev::print_table(&e);
                    println!("promotion     {}", ev::verdict(&e).reason);
                }
                Ok(())
            }
            PolicyCommand::Promote { eval, force } => {
                use crate::offline::evaluate as ev;
                let (e, v, id) = ev::promote(&eval.into_lib(), force).await?;
                ev::print_table(&e);
                let Some(id) = id else {
                    anyhow::bail!(
                        "refusing to promote {}: {} (use --force to override)",
                        e.candidate,
                        v.reason
                    );
                };
                let how = if v.accept { "promoted" } else { "FORCED" };
                println!("{how}      {} as promotion {id}: {}", e.candidate, v.reason);
                Ok(())
            }
        }
    }
}
