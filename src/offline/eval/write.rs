//! Writing `eval`'s outputs: `decisions.jsonl`, `summary.json` and the plots.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::bootstrap::Bootstrap;
use super::plot::{self, Chart, Series};
use super::report::{self, Curve, Point, Reference};
use super::route::Choices;
use super::{EvalOptions, HeadChoice, Mode};
use crate::classify::IntentHead;
use crate::offline::replay::{DatasetModel, Row};

/// Windows the online run is summarised in.
const ONLINE_WINDOWS: usize = 10;

/// What one run shares with its writers.
pub struct Context<'a> {
    pub opts: &'a EvalOptions,
    pub models: &'a [DatasetModel],
    pub eval: &'a [Row],
    pub train_rows: usize,
    pub head: Option<&'a IntentHead>,
    pub head_accuracy: Option<f64>,
    pub refs: &'a Reference,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeadInfo {
    /// "task", "task-difficulty", "clusters:K" (fitted to the training rows), "none", or a file name.
    pub kind: String,
    pub labels: usize,
    /// Accuracy at predicting the evaluation rows' task (task head only).
    pub eval_accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Online {
    pub cost_weight: f64,
    pub overall: Point,
    /// Consecutive windows of steps; `setting` is the window's last step.
    pub windows: Vec<Point>,
    /// The second half of the steps: mean quality − cost_weight × cost of
    /// the router, and of the best single model on the same prompts.
    pub late_half: LateHalf,
}

#[derive(Debug, Clone, Serialize)]
pub struct LateHalf {
    pub steps: usize,
    pub objective: f64,
    pub best_single_model: String,
    pub best_single_objective: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The dataset's file name.
    pub dataset: String,
    pub mode: String,
    pub seed: u64,
    /// The held-out share when the training rows are a split of the dataset.
    pub holdout: Option<f64>,
    pub train_rows: usize,
    pub eval_rows: usize,
    pub models: Vec<String>,
    pub head: HeadInfo,
    pub reference: Reference,
    /// Offline: the router's sweep over cost weights.
    pub router: Option<Curve>,
    /// Offline: the kNN quality-predictor baseline on the same sweep.
    pub knn: Option<Curve>,
    /// Offline: the per-model logistic-regression baseline on the same sweep.
    pub logreg: Option<LogRegCurve>,
    /// Offline: routing by the eval rows' true task label (each model's mean
    /// quality per task on the training rows), a reference no router can
    /// use: it reads the answer's label.
    pub task_oracle: Option<Curve>,
    /// Offline: how far the router's lead over the baselines holds across
    /// resamples of the evaluation rows.
    pub bootstrap: Option<Bootstrap>,
    pub online: Option<Online>,
}

/// The logistic-regression baseline's curve and the L2 strength that
/// cross-validation inside the training rows chose.
#[derive(Debug, Clone, Serialize)]
pub struct LogRegCurve {
    pub lambda: f64,
    #[serde(flatten)]
    pub curve: Curve,
}

pub fn json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

fn decisions(
    path: &Path,
    rows: &[Row],
    models: &[DatasetModel],
    sets: &[(f64, &Choices)],
) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    for (setting, choices) in sets {
        for (r, &m) in rows.iter().zip(choices.iter()) {
            let line = serde_json::json!({"id": r.id, "model": models[m].name, "setting": setting});
            writeln!(w, "{line}")?;
        }
    }
    w.flush()?;
    Ok(())
}

fn summary(c: &Context<'_>) -> Summary {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Summary {
        dataset: name(&c.opts.dataset),
        mode: match c.opts.mode {
            Mode::Offline => "offline".into(),
            Mode::Online => "online".into(),
        },
        seed: c.opts.seed,
        holdout: c.opts.train.is_none().then_some(c.opts.holdout),
        train_rows: c.train_rows,
        eval_rows: c.eval.len(),
        models: c.models.iter().map(|m| m.name.clone()).collect(),
        head: HeadInfo {
            kind: match &c.opts.head {
                HeadChoice::Fit(t) => match t {
                    super::fit::Target::Task => "task".into(),
                    super::fit::Target::TaskDifficulty => "task-difficulty".into(),
                    super::fit::Target::Clusters(k) => format!("clusters:{k}"),
                    super::fit::Target::TaskClusters(k) => format!("task-clusters:{k}"),
                },
                HeadChoice::None => "none".into(),
                HeadChoice::File(p) => name(p),
            },
            labels: c.head.map_or(0, |h| h.labels().len()),
            eval_accuracy: c.head_accuracy,
        },
        reference: c.refs.clone(),
        router: None,
        knn: None,
        logreg: None,
        task_oracle: None,
        bootstrap: None,
        online: None,
    }
}

fn singles_and_oracle(refs: &Reference) -> Vec<Series> {
    vec![
        Series {
            label: "Single models".into(),
            color: plot::GREY,
            points: refs
                .single_models
                .iter()
                .map(|s| (s.cost, s.quality))
                .collect(),
            line: false,
            dots: true,
        },
        Series {
            label: "Oracle".into(),
            color: plot::RED,
            points: vec![(refs.oracle.cost, refs.oracle.quality)],
            line: false,
            dots: true,
        },
    ]
}

fn curve_series(label: &str, color: plot::Rgb, curve: &Curve) -> Series {
    let mut points: Vec<(f64, f64)> = curve.settings.iter().map(|p| (p.cost, p.quality)).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Series {
        label: label.into(),
        color,
        points,
        line: true,
        dots: true,
    }
}

pub fn offline(
    c: &Context<'_>,
    weights: &[f64],
    router: &[Choices],
    knn: &[Choices],
    (logreg, lambda): (&[Choices], f64),
    task_oracle: &[Choices],
    bootstrap: Option<Bootstrap>,
) -> anyhow::Result<Summary> {
    let sets: Vec<(f64, &Choices)> = weights.iter().copied().zip(router).collect();
    decisions(&c.opts.out.join("decisions.jsonl"), c.eval, c.models, &sets)?;
    let r = report::curve(weights, router, c.eval, c.models, c.refs);
    let k = report::curve(weights, knn, c.eval, c.models, c.refs);
    let l = report::curve(weights, logreg, c.eval, c.models, c.refs);
    let t = report::curve(weights, task_oracle, c.eval, c.models, c.refs);
    let mut series = vec![
        curve_series("Router (bandit)", plot::BLUE, &r),
        curve_series("kNN baseline", plot::ORANGE, &k),
        curve_series("Logistic baseline", plot::GREEN, &l),
    ];
    series.extend(singles_and_oracle(c.refs));
    Chart {
        title: format!(
            "{}: quality vs cost on held-out prompts",
            summary(c).dataset
        ),
        x_label: "Mean cost per prompt (USD, log scale)".into(),
        y_label: "Quality".into(),
        log_x: true,
        series,
    }
    .write_png(&c.opts.out.join("frontier.png"))?;
    let mut s = summary(c);
    s.router = Some(r);
    s.knn = Some(k);
    s.logreg = Some(LogRegCurve { lambda, curve: l });
    s.task_oracle = Some(t);
    s.bootstrap = bootstrap;
    json(&c.opts.out.join("summary.json"), &s)?;
    Ok(s)
}

pub fn online(c: &Context<'_>, choices: &Choices) -> anyhow::Result<Summary> {
    let steps: Vec<f64> = (1..=choices.len()).map(|s| s as f64).collect();
    // One decision line per step: each step routes its own prompt.
    let f = c.opts.out.join("decisions.jsonl");
    let file = std::fs::File::create(&f).with_context(|| format!("creating {}", f.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for ((r, &m), s) in c.eval.iter().zip(choices).zip(&steps) {
        let line = serde_json::json!({"id": r.id, "model": c.models[m].name, "setting": s});
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    let size = choices.len().div_ceil(ONLINE_WINDOWS).max(1);
    let windows: Vec<Point> = choices
        .chunks(size)
        .zip(c.eval.chunks(size))
        .enumerate()
        .map(|(i, (ch, rows))| {
            let last = (i * size + ch.len()) as f64;
            report::point(last, ch, rows, c.models)
        })
        .collect();
    let overall = report::point(choices.len() as f64, choices, c.eval, c.models);
    let late_half = late_half(c, choices);
    let mut series = vec![Series {
        label: "Router (bandit)".into(),
        color: plot::BLUE,
        points: windows.iter().map(|p| (p.setting, p.quality)).collect(),
        line: true,
        dots: true,
    }];
    series.push(Series {
        label: "Best single model".into(),
        color: plot::GREY,
        points: vec![
            (1.0, c.refs.best_single.quality),
            (choices.len() as f64, c.refs.best_single.quality),
        ],
        line: true,
        dots: false,
    });
    Chart {
        title: format!("{}: online quality per window", summary(c).dataset),
        x_label: "Step".into(),
        y_label: "Quality".into(),
        log_x: false,
        series,
    }
    .write_png(&c.opts.out.join("online.png"))?;
    let mut s = summary(c);
    s.online = Some(Online {
        cost_weight: c.opts.cost_weight,
        overall,
        windows,
        late_half,
    });
    json(&c.opts.out.join("summary.json"), &s)?;
    Ok(s)
}

fn late_half(c: &Context<'_>, choices: &Choices) -> LateHalf {
    let from = choices.len() / 2;
    let rows = &c.eval[from..];
    let w = c.opts.cost_weight;
    let objective = |p: Point| p.quality - w * p.cost;
    let (best_single_model, best_single_objective) = (0..c.models.len())
        .map(|m| {
            let all = vec![m; rows.len()];
            (
                c.models[m].name.clone(),
                objective(report::point(0.0, &all, rows, c.models)),
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    LateHalf {
        steps: rows.len(),
        objective: objective(report::point(0.0, &choices[from..], rows, c.models)),
        best_single_model,
        best_single_objective,
    }
}
