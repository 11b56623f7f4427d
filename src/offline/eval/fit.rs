//! What `eval` learns from the training split: the task head, the bandit's
//! sums (full information: every model's outcome on every training prompt is
//! known), expected output tokens per model for cost estimates, and the kNN
//! quality predictor used as the simple learned baseline.

use crate::classify::{IntentHead, TrainOptions, intent};
use crate::offline::replay::{DatasetModel, Row};
use crate::policy::bandit::BanditState;
use crate::tokens;

use super::data::Prepared;

/// What the routing head is trained to predict from a training prompt's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The row's `task` label.
    Task,
    /// The task and how hard the prompt was for the models (the tercile of its
    /// mean quality over all models among the training rows): easy prompts are
    /// where a cheap model suffices.
    TaskDifficulty,
    /// One of `k` k-means clusters of the training embeddings (seeded): a
    /// smoothed nearest-neighbour context.
    Clusters(usize),
    /// The task and one of `k` k-means clusters within that task: sub-tasks
    /// (a source's templates, a subject's topics) the task label lumps together.
    TaskClusters(usize),
}

/// The label of each training row for `target`.
pub fn labels(target: Target, rows: &[Row], embeddings: &[Vec<f32>], seed: u64) -> Vec<String> {
    match target {
        Target::Task => rows.iter().map(|r| r.task.clone()).collect(),
        Target::TaskDifficulty => {
            let mean = |r: &Row| {
                r.outcomes.values().map(|o| o.quality).sum::<f64>() / r.outcomes.len().max(1) as f64
            };
            let mut sorted: Vec<f64> = rows.iter().map(mean).collect();
            sorted.sort_by(f64::total_cmp);
            let cut = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
            let (lo, hi) = (cut(1.0 / 3.0), cut(2.0 / 3.0));
            rows.iter()
                .map(|r| {
                    let m = mean(r);
                    let d = if m < lo {
                        "hard"
                    } else if m < hi {
                        "medium"
                    } else {
                        "easy"
                    };
                    format!("{}/{d}", r.task)
                })
                .collect()
        }
        Target::Clusters(k) => kmeans(embeddings, k, seed)
            .into_iter()
            .map(|c| format!("cluster-{c:03}"))
            .collect(),
        Target::TaskClusters(k) => {
            let mut out = vec![String::new(); rows.len()];
            let mut tasks: Vec<&str> = rows.iter().map(|r| r.task.as_str()).collect();
            tasks.sort_unstable();
            tasks.dedup();
            for t in tasks {
                let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].task == t).collect();
                let x: Vec<Vec<f32>> = idx.iter().map(|&i| embeddings[i].clone()).collect();
                for (&i, c) in idx.iter().zip(kmeans(&x, k, seed)) {
                    out[i] = format!("{t}/{c:02}");
                }
            }
            out
        }
    }
}

/// Spherical k-means (dot-product assignment, renormalised centroids) from a
/// seeded choice of distinct rows; a fixed number of rounds keeps it bounded.
fn kmeans(x: &[Vec<f32>], k: usize, seed: u64) -> Vec<usize> {
    use rand::SeedableRng;
    use rand::seq::index::sample;
    const ROUNDS: usize = 25;
    let k = k.clamp(1, x.len().max(1));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut centroids: Vec<Vec<f32>> = sample(&mut rng, x.len(), k)
        .into_iter()
        .map(|i| x[i].clone())
        .collect();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
    let mut assign = vec![0; x.len()];
    for _ in 0..ROUNDS {
        for (a, v) in assign.iter_mut().zip(x) {
            *a = (0..k)
                .max_by(|&i, &j| {
                    dot(v, &centroids[i])
                        .total_cmp(&dot(v, &centroids[j]))
                        .then(j.cmp(&i))
                })
                .unwrap_or(0);
        }
        for (c, cent) in centroids.iter_mut().enumerate() {
            let mut sum = vec![0.0f32; cent.len()];
            for (v, _) in x.iter().zip(&assign).filter(|(_, a)| **a == c) {
                sum.iter_mut().zip(v).for_each(|(s, t)| *s += t);
            }
            let norm = dot(&sum, &sum).sqrt();
            if norm > 0.0 {
                *cent = sum.iter().map(|s| s / norm).collect();
            }
        }
    }
    assign
}

/// A routing head (softmax regression over the embedding) fitted to `labels`
/// of the training rows: a head the service loads as `classifier.intent_head`.
pub fn head(labels: Vec<String>, embeddings: &[Vec<f32>]) -> anyhow::Result<IntentHead> {
    let examples: Vec<(Vec<f32>, String)> = embeddings.iter().cloned().zip(labels).collect();
    Ok(intent::train(&examples, &TrainOptions::default())?)
}

/// The bandit's sums from every (prompt, model) pair of the training rows.
pub fn bandit_state(
    rows: &[Row],
    prepared: &[Prepared],
    models: &[DatasetModel],
) -> anyhow::Result<BanditState> {
    let dim = prepared.first().map_or(2, |p| p.features.len());
    let mut state = BanditState::new(dim);
    for (r, p) in rows.iter().zip(prepared) {
        for m in models {
            state.observe(&m.name, &p.features, r.outcomes[&m.name].quality)?;
        }
    }
    Ok(state)
}

/// Expected cost per model of a prompt, as the service estimates it: the
/// prompt's estimated tokens at the input price plus the model's mean output
/// tokens at the output price. Output tokens are backed out of the training
/// rows' costs (the service learns the same mean from its log).
#[derive(Debug, Clone)]
pub struct CostModel {
    prices: Vec<(f64, f64)>,
    output_tokens: Vec<f64>,
}

impl CostModel {
    pub fn fit(rows: &[Row], models: &[DatasetModel]) -> CostModel {
        let output_tokens = models
            .iter()
            .map(|m| {
                if m.output_usd_per_mtok <= 0.0 || rows.is_empty() {
                    return 0.0;
                }
                let sum: f64 = rows
                    .iter()
                    .map(|r| {
                        let input = f64::from(tokens::estimate_text_tokens(&r.prompt))
                            * m.input_usd_per_mtok
                            / 1e6;
                        ((r.outcomes[&m.name].cost_usd - input) * 1e6 / m.output_usd_per_mtok)
                            .max(0.0)
                    })
                    .sum();
                sum / rows.len() as f64
            })
            .collect();
        CostModel {
            prices: models
                .iter()
                .map(|m| (m.input_usd_per_mtok, m.output_usd_per_mtok))
                .collect(),
            output_tokens,
        }
    }

    pub fn expected(&self, model: usize, prompt_tokens: u32) -> f64 {
        let (i, o) = self.prices[model];
        (f64::from(prompt_tokens) * i + self.output_tokens[model] * o) / 1e6
    }

    pub fn output_tokens(&self) -> &[f64] {
        &self.output_tokens
    }
}

/// Each model's mean quality per task on `rows`, looked up by task (the mean
/// over every row for a task the rows do not have).
pub fn task_means(rows: &[Row], models: &[DatasetModel]) -> impl Fn(&str) -> Vec<f64> {
    use std::collections::HashMap;
    let mut sums: HashMap<&str, (Vec<f64>, f64)> = HashMap::new();
    let mut all = (vec![0.0; models.len()], 0.0);
    for r in rows {
        let e = sums
            .entry(r.task.as_str())
            .or_insert_with(|| (vec![0.0; models.len()], 0.0));
        for (j, m) in models.iter().enumerate() {
            let q = r.outcomes[&m.name].quality;
            e.0[j] += q;
            all.0[j] += q;
        }
        e.1 += 1.0;
        all.1 += 1.0;
    }
    let mean = |(s, n): &(Vec<f64>, f64)| s.iter().map(|v| v / n.max(1.0)).collect::<Vec<f64>>();
    let means: HashMap<String, Vec<f64>> = sums
        .iter()
        .map(|(t, v)| ((*t).to_owned(), mean(v)))
        .collect();
    let overall = mean(&all);
    move |task| means.get(task).cloned().unwrap_or_else(|| overall.clone())
}

/// Quality per model predicted by the mean over the `k` most similar training
/// prompts (cosine similarity of the unit-norm embeddings): the simple learned
/// router the issue compares against.
pub struct Knn<'a> {
    k: usize,
    train: &'a [Vec<f32>],
    /// Per training row, quality per model (dataset order).
    quality: Vec<Vec<f64>>,
}

impl<'a> Knn<'a> {
    pub fn new(k: usize, train: &'a [Vec<f32>], rows: &[Row], models: &[DatasetModel]) -> Self {
        let quality = rows
            .iter()
            .map(|r| models.iter().map(|m| r.outcomes[&m.name].quality).collect())
            .collect();
        Knn {
            k: k.clamp(1, train.len().max(1)),
            train,
            quality,
        }
    }

    pub fn predict(&self, e: &[f32]) -> Vec<f64> {
        let mut sims: Vec<(f32, usize)> = self
            .train
            .iter()
            .enumerate()
            .map(|(i, t)| (t.iter().zip(e).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        // Ties broken by index so the result does not depend on sort stability.
        sims.select_nth_unstable_by(self.k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let models = self.quality.first().map_or(0, Vec::len);
        let mut q = vec![0.0; models];
        for &(_, i) in &sims[..self.k] {
            for (s, v) in q.iter_mut().zip(&self.quality[i]) {
                *s += v;
            }
        }
        q.iter().map(|s| s / self.k as f64).collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::offline::replay::Outcome;

    pub(in crate::offline::eval) fn model(name: &str, price: f64) -> DatasetModel {
        DatasetModel {
            name: name.into(),
            input_usd_per_mtok: price,
            output_usd_per_mtok: price,
        }
    }

    pub(in crate::offline::eval) fn row(prompt: &str, q: [f64; 2], cost: [f64; 2]) -> Row {
        let outcomes: HashMap<String, Outcome> = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    m.to_string(),
                    Outcome {
                        quality: q[i],
                        cost_usd: cost[i],
                    },
                )
            })
            .collect();
        Row {
            id: prompt.into(),
            prompt: prompt.into(),
            task: "t".into(),
            outcomes,
        }
    }

    #[test]
    fn output_tokens_are_backed_out_of_costs() {
        // 8 chars = 2 tokens in; 100 tokens out at $1/Mtok.
        let models = [model("a", 1.0), model("b", 2.0)];
        let rows = [row("12345678", [1.0, 0.0], [102e-6, 2.0 * 102e-6])];
        let c = CostModel::fit(&rows, &models);
        assert!((c.output_tokens()[0] - 100.0).abs() < 1e-9);
        assert!((c.output_tokens()[1] - 100.0).abs() < 1e-9);
        assert!((c.expected(1, 10) - 2.0 * 110e-6).abs() < 1e-12);
    }

    #[test]
    fn difficulty_labels_split_by_mean_quality_and_kmeans_separates_clusters() {
        let rows = [
            row("a", [1.0, 1.0], [0.0; 2]),
            row("b", [1.0, 0.0], [0.0; 2]),
            row("c", [0.0, 0.0], [0.0; 2]),
        ];
        assert_eq!(
            labels(Target::TaskDifficulty, &rows, &[], 1),
            vec!["t/easy", "t/medium", "t/hard"]
        );
        let emb = vec![
            vec![1.0, 0.0],
            vec![0.99, 0.14],
            vec![0.0, 1.0],
            vec![0.14, 0.99],
        ];
        let l = labels(Target::Clusters(2), &[], &emb, 3);
        assert_eq!(l[0], l[1]);
        assert_eq!(l[2], l[3]);
        assert_ne!(l[0], l[2]);
    }

    #[test]
    fn task_means_are_per_task_and_overall_for_an_unseen_task() {
        let models = [model("a", 1.0), model("b", 1.0)];
        let mut rows = vec![
            row("x", [1.0, 0.0], [0.0; 2]),
            row("y", [0.0, 0.0], [0.0; 2]),
            row("z", [1.0, 1.0], [0.0; 2]),
        ];
        rows[2].task = "u".into();
        let by_task = task_means(&rows, &models);
        assert_eq!(by_task("t"), vec![0.5, 0.0]);
        assert_eq!(by_task("u"), vec![1.0, 1.0]);
        assert_eq!(by_task("never seen"), vec![2.0 / 3.0, 1.0 / 3.0]);
    }

    #[test]
    fn knn_averages_the_nearest_neighbours() {
        let models = [model("a", 1.0), model("b", 1.0)];
        let rows = [
            row("x", [1.0, 0.0], [0.0; 2]),
            row("y", [0.0, 1.0], [0.0; 2]),
            row("z", [0.0, 0.0], [0.0; 2]),
        ];
        let emb = vec![vec![1.0, 0.0], vec![0.9, 0.436], vec![0.0, 1.0]];
        let knn = Knn::new(2, &emb, &rows, &models);
        assert_eq!(knn.predict(&[1.0, 0.0]), vec![0.5, 0.5]);
        assert_eq!(knn.predict(&[0.0, 1.0]), vec![0.0, 0.5]);
    }
}
