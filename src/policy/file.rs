//! The policy file: a directory holding `policy.json` (and optionally a
//! retrained intent head beside it), written by `switchyard train`, read by
//! `evaluate-policy`, `promote`, `bandit.warm_start` and the service.
//!
//! `policy.json` is self-describing: a format tag, a version id, where it was
//! learned from (database, `--since`, the feedback watermark it covers, rows
//! used), the context layout it expects, the bandit's parameters, the catalog
//! priors it was evaluated with, and the learned sums. The sums are the same
//! [`BanditState`] a plain warm-start file holds, so the two forms load alike.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bandit::{Anchor, BanditParams, BanditState};
use super::features;

/// The format tag of this layout; readers refuse any other.
pub const FORMAT: &str = "switchyard-policy/1";
/// The file inside a policy directory.
pub const POLICY_JSON: &str = "policy.json";
/// A retrained intent head beside `policy.json`, when labels were in the log.
pub const INTENT_HEAD: &str = "intent-head.json";

/// Where a policy was learned from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub database: String,
    /// `--since` in Unix ms (0 when not given).
    pub since_ms: i64,
    /// Feedback first recorded up to this time (Unix ms) is in the sums;
    /// the service adds what was recorded after it.
    pub trained_through_ms: i64,
    /// Decisions with feedback used.
    pub rows: u64,
    /// (decision, feedback source) rewards summed into the state.
    pub observations: u64,
}

/// The context vector the state was learned on (see `policy::features`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub dim: usize,
    /// The intent head's labels in context order; empty when not known.
    pub intent_labels: Vec<String>,
    /// The quality head's models in context order; empty without one or
    /// when not known (files written before quality heads have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality_models: Vec<String>,
}

impl Layout {
    /// The anchors the service gives `arms` under this layout (see
    /// [`features::Layout`]), so that a policy is evaluated as it would run:
    /// none when the layout has no quality head, or its heads' sizes do not
    /// add up to `dim` (then which feature is whose is not known).
    pub fn anchors(&self, arms: &[(String, f64)]) -> Vec<Option<Anchor>> {
        let (intents, quality) = (self.intent_labels.len(), &self.quality_models);
        if quality.is_empty() || features::dim(intents, quality.len()) != self.dim {
            return Vec::new();
        }
        features::Layout::new(intents, quality, arms).anchors
    }
}

/// [`BanditParams`] as stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub lambda: f64,
    pub sigma: f64,
    pub explore_floor: f64,
    pub mc_samples: u32,
    pub exploration: f64,
}

impl From<BanditParams> for Params {
    fn from(p: BanditParams) -> Self {
        Params {
            lambda: p.lambda(),
            sigma: p.sigma(),
            explore_floor: p.explore_floor(),
            mc_samples: p.mc_samples(),
            exploration: p.exploration(),
        }
    }
}

impl Params {
    pub fn validated(&self) -> anyhow::Result<BanditParams> {
        Ok(BanditParams::try_new(
            self.lambda,
            self.sigma,
            self.explore_floor,
            self.mc_samples,
            self.exploration,
        )?)
    }
}

/// One model's prior quality, as the candidate is evaluated with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmPrior {
    pub name: String,
    pub prior_quality: f64,
}

/// `policy.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub format: String,
    pub version: String,
    pub created_at_ms: i64,
    pub source: Source,
    pub layout: Layout,
    pub params: Params,
    pub arms: Vec<ArmPrior>,
    pub state: BanditState,
    /// File name of a retrained intent head in the same directory.
    pub intent_head: Option<String>,
}

impl PolicyFile {
    /// A policy of the current format, its version derived from what decides.
    pub fn new(
        created_at_ms: i64,
        source: Source,
        layout: Layout,
        params: Params,
        arms: Vec<ArmPrior>,
        state: BanditState,
        intent_head: Option<String>,
    ) -> PolicyFile {
        PolicyFile {
            format: FORMAT.into(),
            version: PolicyFile::compute_version(&params, &arms, &state),
            created_at_ms,
            source,
            layout,
            params,
            arms,
            state,
            intent_head,
        }
    }

    /// The same policy with other sums, under the version they give.
    pub fn with_state(mut self, state: BanditState) -> PolicyFile {
        self.version = PolicyFile::compute_version(&self.params, &self.arms, &state);
        self.state = state;
        self
    }

    /// A version id that changes whenever what decides changes: a hash of
    /// parameters, priors and sums.
    fn compute_version(params: &Params, arms: &[ArmPrior], state: &BanditState) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(params).unwrap_or_default());
        h.update(serde_json::to_vec(arms).unwrap_or_default());
        h.update(serde_json::to_vec(state).unwrap_or_default());
        let d = h.finalize();
        format!(
            "pol-{}obs-{:02x}{:02x}{:02x}{:02x}",
            state.observations(),
            d[0],
            d[1],
            d[2],
            d[3]
        )
    }

    /// Parses and checks a `policy.json` text (format, parameters, layout).
    pub fn from_json(text: &str) -> anyhow::Result<PolicyFile> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        let format = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
        anyhow::ensure!(
            format == FORMAT,
            "unsupported policy format {format:?} (expected {FORMAT:?})"
        );
        let p: PolicyFile = serde_json::from_value(v)?;
        p.params.validated()?;
        anyhow::ensure!(
            p.layout.dim == p.state.dim,
            "layout dimension {} differs from the state's {}",
            p.layout.dim,
            p.state.dim
        );
        Ok(p)
    }

    /// Loads `DIR/policy.json` (or a `policy.json` path given directly).
    pub fn load(path: &Path) -> anyhow::Result<PolicyFile> {
        let file = json_path(path);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("reading policy {}: {e}", file.display()))?;
        Self::from_json(&text).map_err(|e| anyhow::anyhow!("policy {}: {e}", file.display()))
    }

    /// Writes `DIR/policy.json`, creating the directory; atomic by rename so
    /// a reader never sees half a file.
    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(POLICY_JSON);
        let tmp = dir.join(format!(".{POLICY_JSON}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &file)?;
        Ok(file)
    }
}

fn json_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(POLICY_JSON)
    } else {
        path.to_path_buf()
    }
}

/// A warm start: either a plain [`BanditState`] JSON file or a policy
/// directory / `policy.json` (whose state is used).
pub fn load_warm_start(path: &Path) -> anyhow::Result<BanditState> {
    let file = json_path(path);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("reading warm start {}: {e}", file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("warm start {}: {e}", file.display()))?;
    let state = if v.get("format").is_some() {
        PolicyFile::from_json(&text)
            .map_err(|e| anyhow::anyhow!("warm start {}: {e}", file.display()))?
            .state
    } else {
        serde_json::from_value(v)
            .map_err(|e| anyhow::anyhow!("warm start {}: {e}", file.display()))?
    };
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PolicyFile {
        let mut state = BanditState::new(3);
        state.observe("a", &[1.0, 0.5, 0.2], 0.8).unwrap();
        let params = Params::from(BanditParams::default());
        let arms = vec![ArmPrior {
            name: "a".into(),
            prior_quality: 0.6,
        }];
        PolicyFile::new(
            1,
            Source {
                database: "log.db".into(),
                since_ms: 0,
                trained_through_ms: 5,
                rows: 1,
                observations: 1,
            },
            Layout {
                dim: 3,
                intent_labels: vec!["x".into()],
                quality_models: Vec::new(),
            },
            params,
            arms,
            state,
            None,
        )
    }

    #[test]
    fn a_layout_anchors_models_only_when_its_heads_make_up_its_width() {
        let arms = [("cheap".to_string(), 0.6), ("strong".to_string(), 0.9)];
        let quality = vec!["strong".to_string()];
        let mut l = Layout {
            dim: features::dim(2, 1),
            intent_labels: vec!["a".into(), "b".into()],
            quality_models: quality.clone(),
        };
        let anchors = l.anchors(&arms);
        assert_eq!(anchors, features::Layout::new(2, &quality, &arms).anchors);
        assert!(anchors.iter().all(Option::is_some));
        l.dim += 1;
        assert!(l.anchors(&arms).is_empty());
        l.quality_models.clear();
        l.dim = features::dim(2, 0);
        assert!(l.anchors(&arms).is_empty());
        // Files from before quality heads read as having none.
        let old = r#"{"dim":6,"intent_labels":[]}"#;
        let read: Layout = serde_json::from_str(old).unwrap();
        assert!(read.quality_models.is_empty());
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
    }

    #[test]
    fn round_trips_and_both_warm_start_forms_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample();
        p.save(dir.path()).unwrap();
        assert_eq!(PolicyFile::load(dir.path()).unwrap(), p);
        assert_eq!(load_warm_start(dir.path()).unwrap(), p.state);
        let plain = dir.path().join("state.json");
        std::fs::write(&plain, serde_json::to_string(&p.state).unwrap()).unwrap();
        assert_eq!(load_warm_start(&plain).unwrap(), p.state);
        assert!(p.version.starts_with("pol-1obs-"), "{}", p.version);
    }

    #[test]
    fn wrong_format_parameters_or_layout_are_refused() {
        let p = sample();
        let json = serde_json::to_string(&p).unwrap();
        let err = PolicyFile::from_json(&json.replace(FORMAT, "switchyard-policy/9")).unwrap_err();
        assert!(
            err.to_string().contains("unsupported policy format"),
            "{err}"
        );
        let mut bad = p.clone();
        bad.params.explore_floor = 2.0;
        assert!(PolicyFile::from_json(&serde_json::to_string(&bad).unwrap()).is_err());
        let mut bad = p;
        bad.layout.dim = 4;
        let err = PolicyFile::from_json(&serde_json::to_string(&bad).unwrap()).unwrap_err();
        assert!(err.to_string().contains("layout dimension"), "{err}");
        assert!(PolicyFile::load(Path::new("no/such/dir")).is_err());
    }
}
