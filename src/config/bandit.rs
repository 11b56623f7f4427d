//! The bandit's hyper-parameters, validated: a settings type, so it lives with
//! the config that builds it (`policy::bandit` re-exports it, and is where
//! each parameter is used: see its module docs for the model).

/// A bandit parameter outside its domain.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum InvalidParams {
    #[error("lambda must be finite and > 0, got {0}")]
    Lambda(f64),
    #[error("sigma must be finite and > 0, got {0}")]
    Sigma(f64),
    #[error("explore_floor must be in [0, 1], got {0}")]
    ExploreFloor(f64),
    #[error("mc_samples must be in 1..=65536, got {0}")]
    McSamples(u32),
    #[error("exploration must be finite and >= 0, got {0}")]
    Exploration(f64),
}

/// Validated hyper-parameters of the model and of selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BanditParams {
    lambda: f64,
    sigma: f64,
    explore_floor: f64,
    mc_samples: u32,
    exploration: f64,
}

impl Default for BanditParams {
    /// λ = 1 (the prior is worth one observation), σ = 0.3 (about the spread of
    /// a reward in [0, 1]), ε = 0.05, M = 512 (propensity standard error ≤ 0.022),
    /// v = 1 (the posterior as is).
    fn default() -> Self {
        Self {
            lambda: 1.0,
            sigma: 0.3,
            explore_floor: 0.05,
            mc_samples: 512,
            exploration: 1.0,
        }
    }
}

impl BanditParams {
    pub fn try_new(
        lambda: f64,
        sigma: f64,
        explore_floor: f64,
        mc_samples: u32,
        exploration: f64,
    ) -> Result<Self, InvalidParams> {
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(InvalidParams::Lambda(lambda));
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(InvalidParams::Sigma(sigma));
        }
        if !(0.0..=1.0).contains(&explore_floor) {
            return Err(InvalidParams::ExploreFloor(explore_floor));
        }
        if !(1..=65_536).contains(&mc_samples) {
            return Err(InvalidParams::McSamples(mc_samples));
        }
        if !(exploration.is_finite() && exploration >= 0.0) {
            return Err(InvalidParams::Exploration(exploration));
        }
        Ok(Self {
            lambda,
            sigma,
            explore_floor,
            mc_samples,
            exploration,
        })
    }

    pub fn lambda(&self) -> f64 {
        self.lambda
    }
    pub fn sigma(&self) -> f64 {
        self.sigma
    }
    pub fn explore_floor(&self) -> f64 {
        self.explore_floor
    }
    pub fn mc_samples(&self) -> u32 {
        self.mc_samples
    }
    pub fn exploration(&self) -> f64 {
        self.exploration
    }
}
