//! What the bandit learns: per model, sums over its observations (x, r).
//!
//! Invariants: every field of [`ArmStats`] is a plain sum, so adding two
//! states equals the state of the concatenated logs (up to float rounding),
//! and no prior is mixed in (the prior is applied in `Bandit::build`). A
//! deserialised [`BanditState`] has every model's shape checked against `dim`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::linalg::{packed_len, row_offset};

/// A state or observation that does not fit the bandit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("expected {expected} features, got {found}")]
    Dimension { expected: usize, found: usize },
    #[error("statistics for model {0:?} have the wrong shape or a non-finite value")]
    Corrupt(String),
    #[error("reward {0} is not finite")]
    Reward(f64),
    #[error("model {0:?} has no observations to replace")]
    UnknownModel(String),
}

/// One model's sufficient statistics: sums over its observations (x, r).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmStats {
    pub(super) n: u64,
    /// Σ x xᵀ as a packed upper triangle (see `linalg`), d(d+1)/2 entries.
    pub(super) xx: Vec<f64>,
    /// Σ r·x.
    pub(super) xr: Vec<f64>,
    /// Σ r², kept so that residual variance can be estimated from the sums.
    pub(super) rr: f64,
}

impl ArmStats {
    pub fn new(dim: usize) -> Self {
        Self {
            n: 0,
            xx: vec![0.0; packed_len(dim)],
            xr: vec![0.0; dim],
            rr: 0.0,
        }
    }

    pub fn dim(&self) -> usize {
        self.xr.len()
    }

    /// Number of observations.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Adds one observation. Panics if `x.len() != self.dim()` (a bug: use
    /// [`BanditState::observe`] for checked input).
    pub fn add(&mut self, x: &[f32], r: f64) {
        assert_eq!(
            x.len(),
            self.dim(),
            "feature dimension mismatch: this is a bug"
        );
        let d = x.len();
        for i in 0..d {
            let xi = f64::from(x[i]);
            let row = &mut self.xx[row_offset(d, i)..row_offset(d, i + 1)];
            for (s, &xj) in row.iter_mut().zip(&x[i..]) {
                *s += xi * f64::from(xj);
            }
            self.xr[i] += r * xi;
        }
        self.rr += r * r;
        self.n += 1;
    }

    /// Replaces the reward of an observation already added with features `x`:
    /// Σr·x moves by (r_new − r_old)·x and Σr² by r_new² − r_old²; n and Σxxᵀ
    /// are unchanged. Takes both rewards because Σr² needs them. Panics on a
    /// dimension mismatch, like [`ArmStats::add`].
    pub fn replace_reward(&mut self, x: &[f32], r_old: f64, r_new: f64) {
        assert_eq!(
            x.len(),
            self.dim(),
            "feature dimension mismatch: this is a bug"
        );
        let dr = r_new - r_old;
        for (s, &xi) in self.xr.iter_mut().zip(x) {
            *s += dr * f64::from(xi);
        }
        self.rr += r_new * r_new - r_old * r_old;
    }

    /// Adds another model's sums (same dimension; panics otherwise, a bug).
    pub fn merge(&mut self, other: &ArmStats) {
        assert_eq!(
            self.dim(),
            other.dim(),
            "merging different dimensions: this is a bug"
        );
        self.n += other.n;
        self.rr += other.rr;
        for (s, o) in self.xx.iter_mut().zip(&other.xx) {
            *s += o;
        }
        for (s, o) in self.xr.iter_mut().zip(&other.xr) {
            *s += o;
        }
    }

    /// The same sums over contexts with features appended up to `dim`, all
    /// zero in every observation so far (see `policy::features::widen`).
    fn widen(&self, dim: usize) -> ArmStats {
        let d = self.dim();
        let mut wide = ArmStats::new(dim);
        for i in 0..d {
            let old = &self.xx[row_offset(d, i)..row_offset(d, i + 1)];
            wide.xx[row_offset(dim, i)..row_offset(dim, i) + old.len()].copy_from_slice(old);
        }
        wide.xr[..d].copy_from_slice(&self.xr);
        wide.n = self.n;
        wide.rr = self.rr;
        wide
    }

    /// Shapes match `dim` and every sum is finite.
    pub(super) fn is_valid(&self, dim: usize) -> bool {
        self.xr.len() == dim
            && self.xx.len() == packed_len(dim)
            && self.rr.is_finite()
            && self.xx.iter().chain(&self.xr).all(|v| v.is_finite())
    }
}

/// Everything learned: per model name, the sums of its observations.
/// Serialises to JSON; deserialising checks every model's shape against `dim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawState")]
pub struct BanditState {
    pub dim: usize,
    pub arms: BTreeMap<String, ArmStats>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dim: usize,
    arms: BTreeMap<String, ArmStats>,
}

impl TryFrom<RawState> for BanditState {
    type Error = StateError;
    fn try_from(raw: RawState) -> Result<Self, StateError> {
        if let Some((name, _)) = raw.arms.iter().find(|(_, s)| !s.is_valid(raw.dim)) {
            return Err(StateError::Corrupt(name.clone()));
        }
        Ok(Self {
            dim: raw.dim,
            arms: raw.arms,
        })
    }
}

impl BanditState {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            arms: BTreeMap::new(),
        }
    }

    /// Adds the observation (x, r) for model `arm`.
    pub fn observe(&mut self, arm: &str, x: &[f32], r: f64) -> Result<(), StateError> {
        self.check(x, r)?;
        let dim = self.dim;
        self.arms
            .entry(arm.to_owned())
            .or_insert_with(|| ArmStats::new(dim))
            .add(x, r);
        Ok(())
    }

    /// Replaces the reward of an observation of `arm` already added (see
    /// [`ArmStats::replace_reward`]).
    pub fn replace_reward(
        &mut self,
        arm: &str,
        x: &[f32],
        r_old: f64,
        r_new: f64,
    ) -> Result<(), StateError> {
        self.check(x, r_old)?;
        self.check(x, r_new)?;
        let stats = self
            .arms
            .get_mut(arm)
            .ok_or_else(|| StateError::UnknownModel(arm.to_owned()))?;
        stats.replace_reward(x, r_old, r_new);
        Ok(())
    }

    /// Adds another state's sums; all-or-nothing on a shape mismatch.
    pub fn merge(&mut self, other: &BanditState) -> Result<(), StateError> {
        if other.dim != self.dim {
            return Err(StateError::Dimension {
                expected: self.dim,
                found: other.dim,
            });
        }
        if let Some((name, _)) = other
            .arms
            .iter()
            .chain(&self.arms)
            .find(|(_, s)| s.dim() != self.dim)
        {
            return Err(StateError::Corrupt(name.clone()));
        }
        for (name, stats) in &other.arms {
            let dim = self.dim;
            self.arms
                .entry(name.clone())
                .or_insert_with(|| ArmStats::new(dim))
                .merge(stats);
        }
        Ok(())
    }

    /// The state in a layout of `dim` features: as is, or, for a state
    /// learnt before the context gained its trailing features, with them
    /// added as zeros (exact: every observation had them at zero).
    pub fn widen(self, dim: usize) -> Result<BanditState, StateError> {
        if self.dim == dim {
            return Ok(self);
        }
        if self.dim + crate::policy::features::SHAPE_DIM != dim {
            return Err(StateError::Dimension {
                expected: dim,
                found: self.dim,
            });
        }
        Ok(BanditState {
            dim,
            arms: self
                .arms
                .iter()
                .map(|(name, s)| (name.clone(), s.widen(dim)))
                .collect(),
        })
    }

    /// Total observations over all models.
    pub fn observations(&self) -> u64 {
        self.arms.values().map(|s| s.n).sum()
    }

    fn check(&self, x: &[f32], r: f64) -> Result<(), StateError> {
        if x.len() != self.dim {
            return Err(StateError::Dimension {
                expected: self.dim,
                found: x.len(),
            });
        }
        if !r.is_finite() || x.iter().any(|v| !v.is_finite()) {
            return Err(StateError::Reward(r));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A seeded log of (model, x, r) with x = (1, features in [-1, 1]).
    pub(in super::super) fn log(seed: u64, len: usize, dim: usize) -> Vec<(String, Vec<f32>, f64)> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len)
            .map(|_| {
                let arm = format!("model-{}", rng.random_range(0..3));
                let mut x = vec![1.0f32];
                x.extend((1..dim).map(|_| rng.random_range(-1.0f32..1.0)));
                (arm, x, rng.random_range(0.0..1.0))
            })
            .collect()
    }

    pub(in super::super) fn learn(log: &[(String, Vec<f32>, f64)], dim: usize) -> BanditState {
        let mut state = BanditState::new(dim);
        for (arm, x, r) in log {
            state.observe(arm, x, *r).unwrap();
        }
        state
    }

    fn assert_close(a: &ArmStats, b: &ArmStats) {
        assert_eq!(a.n, b.n);
        let pairs =
            a.xx.iter()
                .zip(&b.xx)
                .chain(a.xr.iter().zip(&b.xr))
                .chain([(&a.rr, &b.rr)]);
        for (x, y) in pairs {
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                "{x} vs {y}"
            );
        }
    }

    #[test]
    fn merged_halves_equal_the_whole_log() {
        let log = log(1, 300, 5);
        let whole = learn(&log, 5);
        let mut merged = learn(&log[..137], 5);
        merged.merge(&learn(&log[137..], 5)).unwrap();
        assert_eq!(merged.observations(), 300);
        assert_eq!(
            merged.arms.keys().collect::<Vec<_>>(),
            whole.arms.keys().collect::<Vec<_>>()
        );
        for (name, stats) in &whole.arms {
            assert_close(stats, &merged.arms[name]);
        }
        assert_eq!(
            merged.merge(&BanditState::new(4)),
            Err(StateError::Dimension {
                expected: 5,
                found: 4
            })
        );
    }

    #[test]
    fn a_widened_state_equals_learning_the_widened_log() {
        let extra = crate::policy::features::SHAPE_DIM;
        let log = log(11, 40, 5);
        let widened_log: Vec<_> = log
            .iter()
            .map(|(a, x, r)| {
                let mut w = x.clone();
                w.resize(5 + extra, 0.0);
                (a.clone(), w, *r)
            })
            .collect();
        let widened = learn(&log, 5).widen(5 + extra).unwrap();
        let direct = learn(&widened_log, 5 + extra);
        assert_eq!(widened, direct);
        assert!(learn(&log, 5).widen(7).is_err());
    }

    #[test]
    fn replacing_a_reward_equals_observing_the_new_one() {
        let x = [1.0, 0.5, -2.0];
        let mut replaced = ArmStats::new(3);
        replaced.add(&x, 0.2);
        replaced.replace_reward(&x, 0.2, 0.9);
        let mut direct = ArmStats::new(3);
        direct.add(&x, 0.9);
        assert_close(&replaced, &direct);

        let mut state = BanditState::new(3);
        assert_eq!(
            state.replace_reward("m", &x, 0.2, 0.9),
            Err(StateError::UnknownModel("m".into()))
        );
        assert!(matches!(
            state.observe("m", &x[..2], 0.1),
            Err(StateError::Dimension { .. })
        ));
        assert!(
            matches!(state.observe("m", &x, f64::NAN), Err(StateError::Reward(r)) if r.is_nan())
        );
    }

    #[test]
    fn json_round_trips_and_corrupt_states_are_rejected() {
        let state = learn(&log(2, 50, 4), 4);
        let json = serde_json::to_string(&state).unwrap();
        let back: BanditState = serde_json::from_str(&json).unwrap();
        for (name, stats) in &state.arms {
            assert_close(stats, &back.arms[name]);
        }
        let bad = json.replacen("\"dim\":4", "\"dim\":3", 1);
        assert!(serde_json::from_str::<BanditState>(&bad).is_err());
    }
}
