//! `switchyard report ab`: each A/B split's arms side by side — decisions,
//! the logged arm probability, and mean reward, cost and latency with 95%
//! confidence intervals (normal approximation, mean ± 1.96·s/√n).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::store::SplitOutcome;

#[derive(clap::Subcommand)]
pub enum ReportCommand {
    /// Reward, cost and latency per arm of every A/B split in the log.
    Ab {
        #[arg(long, default_value = "switchyard.db")]
        database: PathBuf,
        /// From this time: Unix ms, YYYY-MM-DD[THH:MM:SSZ], or an age (7d, 12h).
        #[arg(long)]
        since: Option<String>,
    },
}

impl ReportCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            ReportCommand::Ab { database, since } => {
                let since = match since {
                    Some(s) => super::logset::parse_since(&s, crate::clock::now_ms())?,
                    None => 0,
                };
                let store = crate::auth::cli::open(&database).await?;
                let rows = store.split_outcomes(since).await?;
                store.close().await;
                if rows.is_empty() {
                    anyhow::bail!("no A/B decisions in {}", database.display());
                }
                print!("{}", ab_table(&rows));
                Ok(())
            }
        }
    }
}

/// Mean and 95% interval half-width of `xs`; none when empty.
fn interval(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return Some((mean, f64::INFINITY));
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, 1.96 * (var / n).sqrt()))
}

fn cell(xs: &[f64], digits: usize) -> String {
    match interval(xs) {
        Some((m, h)) if h.is_finite() => format!("{m:.digits$} ± {h:.digits$}"),
        Some((m, _)) => format!("{m:.digits$}"),
        None => "-".into(),
    }
}

/// The table `report ab` prints, one line per (rule, arm).
pub fn ab_table(rows: &[SplitOutcome]) -> String {
    let mut arms: BTreeMap<(&str, &str), Vec<&SplitOutcome>> = BTreeMap::new();
    for r in rows {
        arms.entry((&r.rule, &r.arm)).or_default().push(r);
    }
    let mut out = format!(
        "{:<16} {:<8} {:>6} {:>6} {:>7} {:<22} {:<26} {:<20} models\n",
        "rule",
        "arm",
        "n",
        "share",
        "p(arm)",
        "reward (95% CI)",
        "cost usd (95% CI)",
        "latency ms (95% CI)"
    );
    let totals: BTreeMap<&str, usize> =
        arms.iter().fold(BTreeMap::new(), |mut t, ((rule, _), v)| {
            *t.entry(*rule).or_default() += v.len();
            t
        });
    for ((rule, arm), v) in &arms {
        let rewards: Vec<f64> = v.iter().filter_map(|r| r.reward).collect();
        let costs: Vec<f64> = v.iter().filter_map(|r| r.cost_usd).collect();
        let latency: Vec<f64> = v
            .iter()
            .filter_map(|r| r.latency_ms)
            .map(|l| l as f64)
            .collect();
        let mut models: BTreeMap<&str, usize> = BTreeMap::new();
        for r in v {
            *models.entry(&r.model).or_default() += 1;
        }
        let models: Vec<String> = models.iter().map(|(m, n)| format!("{m}:{n}")).collect();
        out.push_str(&format!(
            "{:<16} {:<8} {:>6} {:>6.3} {:>7.3} {:<22} {:<26} {:<20} {}\n",
            rule,
            arm,
            v.len(),
            v.len() as f64 / totals[rule] as f64,
            v[0].probability,
            format!("{} (n={})", cell(&rewards, 3), rewards.len()),
            cell(&costs, 6),
            cell(&latency, 1),
            models.join(",")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arm: &str, reward: f64, cost: f64) -> SplitOutcome {
        SplitOutcome {
            rule: "canary".into(),
            arm: arm.into(),
            probability: if arm == "variant" { 0.2 } else { 0.8 },
            model: "m".into(),
            reward: Some(reward),
            cost_usd: Some(cost),
            latency_ms: Some(100),
        }
    }

    #[test]
    fn intervals_shrink_with_n_and_both_arms_print() {
        let (m, h) = interval(&[0.0, 1.0, 0.0, 1.0]).unwrap();
        assert!((m - 0.5).abs() < 1e-12);
        assert!((h - 1.96 * (1.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
        let table = ab_table(&[
            row("variant", 1.0, 0.01),
            row("control", 0.0, 0.02),
            row("control", 1.0, 0.02),
        ]);
        assert!(
            table.contains("canary           control       2  0.667   0.800"),
            "{table}"
        );
        assert!(
            table.contains("canary           variant       1  0.333   0.200"),
            "{table}"
        );
    }
}
