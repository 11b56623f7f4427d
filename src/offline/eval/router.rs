//! Fitting the whole router from routing outcomes: the routing head, the
//! per-model quality head and the bandit's sums, as `eval` fits them on its
//! training split and `train --dataset` on a whole file, and the files the
//! service loads them from.

use std::path::Path;

use super::data::{self, Prepared};
use super::{HeadChoice, QualityChoice, fit, logreg, route, select, write};
use crate::classify::IntentHead;
use crate::classify::quality::QualityHead;
use crate::offline::replay::{DatasetModel, Row};
use crate::policy::bandit::{Bandit, BanditParams, BanditState};
use crate::policy::features::Layout;

/// What was fitted, and the training rows as the bandit saw them.
pub struct Router {
    pub head: Option<IntentHead>,
    pub quality: Option<QualityHead>,
    pub state: BanditState,
    pub layout: Layout,
}

/// Fits the router on `rows` (embedded as `emb`) and, given `out`, writes
/// `task-head.json` (when a head was fitted), `quality-head.json` (when
/// `quality`) and `prior.json` (the bandit's sums) into it.
///
/// The bandit's sums are fitted on out-of-fold quality predictions (what
/// the head says of prompts it did not see): on in-sample predictions it
/// would learn to trust the head more than it deserves on new prompts.
pub fn fit(
    rows: &[Row],
    emb: &[Vec<f32>],
    models: &[DatasetModel],
    head: &HeadChoice,
    quality: Option<&QualityHead>,
    seed: u64,
    out: Option<&Path>,
) -> anyhow::Result<Router> {
    let save = |name: &str| out.map(|o| o.join(name));
    let head = match head {
        HeadChoice::Fit(target) => {
            let labels = fit::labels(*target, rows, emb, seed);
            if distinct(&labels) < 2 {
                // One task (a single-source file): a head would say nothing.
                eprintln!("one label in the training rows: no routing head");
                None
            } else {
                let h = fit::head(labels, emb)?;
                if let Some(p) = save("task-head.json") {
                    h.save(&p)?;
                }
                Some(h)
            }
        }
        HeadChoice::None => None,
        HeadChoice::File(p) => Some(IntentHead::load(p)?),
    };
    let q_train = match quality {
        Some(q) => {
            if let Some(p) = save("quality-head.json") {
                q.save(&p)?;
            }
            logreg::LogReg::out_of_fold(emb, rows, models, q.lambda, seed)
        }
        None => vec![Vec::new(); rows.len()],
    };
    let prepared = data::prepare(rows, emb, head.as_ref(), &q_train);
    let state = fit::bandit_state(rows, &prepared, models)?;
    if let Some(p) = save("prior.json") {
        write::json(&p, &state)?;
    }
    let names: Vec<String> = quality.map_or_else(Vec::new, |q| q.models.clone());
    let layout = Layout::new(
        head.as_ref().map_or(0, |h| h.labels().len()),
        &names,
        &super::route::arms(models),
    );
    Ok(Router {
        head,
        quality: quality.cloned(),
        state,
        layout,
    })
}

impl Router {
    /// The fitted sums as a bandit that does not explore (see
    /// [`route::greedy`]), over `models` anchored as the service anchors them.
    pub fn greedy_bandit(&self, params: &BanditParams, models: &[DatasetModel]) -> Bandit {
        Bandit::build_anchored(
            &self.state,
            route::greedy(params),
            &route::arms(models),
            &self.layout.anchors,
        )
    }

    /// The context of each of `rows` (embedded as `emb`), as the service
    /// would build it with these heads.
    pub fn prepare(&self, rows: &[Row], emb: &[Vec<f32>]) -> Vec<Prepared> {
        let q: Vec<Vec<f64>> = match &self.quality {
            Some(h) => emb.iter().map(|e| h.predict(e)).collect(),
            None => vec![Vec::new(); rows.len()],
        };
        data::prepare(rows, emb, self.head.as_ref(), &q)
    }
}

fn distinct(labels: &[String]) -> usize {
    labels
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// `switchyard train --dataset`: what to fit the router from.
pub struct DatasetArgs<'a> {
    pub dataset: &'a Path,
    pub models: &'a Path,
    pub out: &'a Path,
    pub seed: u64,
    pub cache_dir: &'a Path,
    pub quality: QualityChoice,
}

/// Fits the router on every row of a routing-outcomes file (any number of
/// models, with or without task labels) and writes, beside the heads and
/// the prior, `switchyard.toml`: the configuration lines that load them.
pub fn train_dataset(a: &DatasetArgs<'_>, config: &crate::config::Config) -> anyhow::Result<()> {
    let data = data::load(a.dataset, a.models)?;
    anyhow::ensure!(!data.rows.is_empty(), "{} has no rows", a.dataset.display());
    std::fs::create_dir_all(a.out)?;
    let [emb] = super::embed_sets(config, a.cache_dir, [&data.rows])?;
    let head = HeadChoice::Fit(fit::Target::Task);
    let keep = a.quality.resolve(|| {
        select::quality_head(
            &data.rows,
            &emb,
            &data.models,
            &head,
            &config.bandit.params,
            40,
            a.seed,
        )
    })?;
    let quality = logreg::LogReg::fit(&emb, &data.rows, &data.models, a.seed);
    let r = fit(
        &data.rows,
        &emb,
        &data.models,
        &head,
        keep.then_some(&quality),
        a.seed,
        Some(a.out),
    )?;
    if !keep {
        // A head left by an earlier run into `out` is not this router's.
        match std::fs::remove_file(a.out.join("quality-head.json")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let path = |f: &str| a.out.join(f).display().to_string().replace('\\', "/");
    let mut toml =
        String::from("# Generated by `switchyard train --dataset`: merge into your config.\n");
    toml += "[classifier]\n";
    toml += &match &r.head {
        Some(_) => format!("intent_head = {:?}\n", path("task-head.json")),
        None => "intent_head = \"\"\n".into(),
    };
    toml += &format!(
        "quality_head = {:?}\n\n[bandit]\n",
        if keep {
            path("quality-head.json")
        } else {
            String::new()
        }
    );
    toml += &format!("warm_start = {:?}\n", path("prior.json"));
    std::fs::write(a.out.join("switchyard.toml"), toml)?;
    println!(
        "fitted on {} rows, {} models; routing head: {}; quality head: {}; context {} features\nwrote {}",
        data.rows.len(),
        data.models.len(),
        r.head
            .as_ref()
            .map_or("none (one task label)".into(), |h| format!(
                "{} labels",
                h.labels().len()
            )),
        if keep {
            format!("λ = {}", quality.lambda)
        } else {
            "none".into()
        },
        r.layout.dim,
        path("switchyard.toml"),
    );
    Ok(())
}
