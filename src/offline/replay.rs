//! Replaying a routing-outcomes dataset (`../shared/data/routing/*.jsonl`,
//! format in its README) as an online environment through the real `Route`
//! and `Feedback` RPCs of a running server: each prompt is routed, the
//! dataset's quality for the chosen model is sent back as the reward, late
//! and in shuffled batches, as real feedback arrives.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Deserialize;
use tonic::transport::Channel;

use crate::pb;
use crate::pb::router_client::RouterClient;

#[derive(Debug, Clone, Deserialize)]
pub struct DatasetModel {
    pub name: String,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Outcome {
    pub quality: f64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub id: String,
    pub prompt: String,
    pub task: String,
    pub outcomes: HashMap<String, Outcome>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub models: Vec<DatasetModel>,
    pub rows: Vec<Row>,
}

#[derive(Deserialize)]
struct ModelsFile {
    models: Vec<DatasetModel>,
}

impl Dataset {
    /// Loads `NAME.train.jsonl` beside its `NAME.models.json`.
    pub fn load(jsonl: &Path, models_json: &Path) -> anyhow::Result<Dataset> {
        Dataset::parse(
            &std::fs::read_to_string(models_json)?,
            &std::fs::read_to_string(jsonl)?,
        )
    }

    /// A dataset from the texts of its models file and its JSON lines.
    pub fn parse(models_json: &str, jsonl: &str) -> anyhow::Result<Dataset> {
        let models: ModelsFile = serde_json::from_str(models_json)?;
        let rows = jsonl
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<Vec<Row>, _>>()?;
        Ok(Dataset {
            models: models.models,
            rows,
        })
    }

    /// A seeded shuffle, cut to `limit` rows (0: all).
    pub fn shuffled(mut self, seed: u64, limit: usize) -> Dataset {
        self.rows
            .shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        if limit > 0 {
            self.rows.truncate(limit);
        }
        self
    }

    /// A catalog over the dataset's models at its prices, every model at the
    /// same uninformed prior, so nothing is known before feedback arrives.
    pub fn catalog_toml(&self) -> String {
        let mut t = String::from(
            "[[providers]]\nname = \"replay\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
        );
        for m in &self.models {
            t += &format!(
                "[[models]]\nname = \"{}\"\nprovider = \"replay\"\ninput_usd_per_mtok = {}\n\
                 output_usd_per_mtok = {}\ncontext_window = 1000000\nprior_quality = 0.5\n",
                m.name, m.input_usd_per_mtok, m.output_usd_per_mtok
            );
        }
        t
    }
}

/// What the router did for one prompt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub model: String,
    pub quality: f64,
    pub cost_usd: f64,
    pub explored: bool,
}

impl Step {
    pub fn objective(&self, cost_weight: f64) -> f64 {
        self.quality - cost_weight * self.cost_usd
    }
}

/// Routes every row in order; rewards go back in shuffled batches.
pub async fn run(
    client: &mut RouterClient<Channel>,
    data: &Dataset,
    cost_weight: f64,
    feedback_batch: usize,
    seed: u64,
) -> anyhow::Result<Vec<Step>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut steps = Vec::with_capacity(data.rows.len());
    let mut pending: Vec<(String, f64)> = Vec::new();
    for row in &data.rows {
        let req = pb::RouteRequest {
            messages: vec![pb::Message {
                role: "user".into(),
                content: row.prompt.clone(),
                ..Default::default()
            }],
            tenant: "replay".into(),
            cost_weight: Some(cost_weight),
            ..Default::default()
        };
        let r = client.route(req).await?.into_inner();
        let o = row
            .outcomes
            .get(&r.model)
            .ok_or_else(|| anyhow::anyhow!("{}: no outcome for {}", row.id, r.model))?;
        steps.push(Step {
            model: r.model,
            quality: o.quality,
            cost_usd: o.cost_usd,
            explored: r.explored,
        });
        pending.push((r.decision_id, o.quality));
        if pending.len() >= feedback_batch {
            pending.shuffle(&mut rng);
            for (decision_id, reward) in pending.drain(..) {
                let fb = pb::FeedbackRequest {
                    decision_id,
                    reward,
                    source: "replay".into(),
                };
                client.feedback(fb).await?;
            }
            // Learning is off the request path; a moment lets it catch up so a
            // seeded run is reproducible.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    Ok(steps)
}

/// Reference policies' mean objective over `rows`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Baselines {
    pub best_single_model: String,
    pub best_single: f64,
    pub uniform: f64,
    pub oracle: f64,
}

pub fn baselines(data: &Dataset, rows: &[Row], cost_weight: f64) -> Baselines {
    let n = rows.len().max(1) as f64;
    let obj = |o: &Outcome| o.quality - cost_weight * o.cost_usd;
    let mean_of = |m: &str| rows.iter().map(|r| obj(&r.outcomes[m])).sum::<f64>() / n;
    let (best_model, best) = data
        .models
        .iter()
        .map(|m| (m.name.clone(), mean_of(&m.name)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    let uniform =
        data.models.iter().map(|m| mean_of(&m.name)).sum::<f64>() / data.models.len().max(1) as f64;
    let oracle = rows
        .iter()
        .map(|r| r.outcomes.values().map(obj).fold(f64::MIN, f64::max))
        .sum::<f64>()
        / n;
    Baselines {
        best_single_model: best_model,
        best_single: best,
        uniform,
        oracle,
    }
}
