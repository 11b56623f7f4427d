//! The runtime catalog: models with prices and limits, and the providers that
//! serve them, with API keys read once from the environment at start-up.
//!
//! Model indices are stable for the life of the process; policies and the
//! dispatcher refer to models by index.

use crate::config::{
    Capability, Config, DeploymentConfig, ModelConfig, ProviderConfig, ProviderKind,
};
use crate::dispatch::Usage;

/// A provider as the dispatcher uses it. The key is held only in memory and
/// never logged (`Debug` redacts it).
#[derive(Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub api_key: Option<String>,
}

impl Provider {
    /// A provider is enabled when it needs no key or its key variable is set.
    pub fn enabled(&self) -> bool {
        self.api_key_env.is_none() || self.api_key.is_some()
    }

    /// Why the provider is disabled, for explanations.
    pub fn disabled_reason(&self) -> Option<String> {
        match (&self.api_key_env, &self.api_key) {
            (Some(var), None) => Some(format!("provider {} disabled: {var} is not set", self.name)),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key_env", &self.api_key_env)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One place a model is served: a provider (host, key, region), the id the
/// model has there, and its prices there.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Unique within the model: what the decision log records.
    pub name: String,
    pub provider: usize,
    pub upstream: String,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub cache_read_usd_per_mtok: f64,
    pub cache_write_usd_per_mtok: f64,
}

impl Deployment {
    /// USD cost of a call here that the provider reported `u` for (see
    /// [`Model::cost_of`]).
    pub fn cost_of(&self, u: &Usage) -> f64 {
        priced(
            u,
            [
                self.input_usd_per_mtok,
                self.cache_read_usd_per_mtok,
                self.cache_write_usd_per_mtok,
                self.output_usd_per_mtok,
            ],
        )
    }

    /// The price of a typical call here (input and output per Mtok, summed),
    /// for ranking a model's deployments.
    pub fn list_price(&self) -> f64 {
        self.input_usd_per_mtok + self.output_usd_per_mtok
    }
}

/// USD for `u` at `[input, cache read, cache write, output]` per Mtok: the
/// prompt tokens read from or written to the cache at their prices, the rest
/// at the input price.
fn priced(u: &Usage, [input, read, write, output]: [f64; 4]) -> f64 {
    let cached = u.cached_tokens.min(u.prompt_tokens);
    let written = u.cache_write_tokens.min(u.prompt_tokens - cached);
    let fresh = u.prompt_tokens - cached - written;
    (f64::from(fresh) * input
        + f64::from(cached) * read
        + f64::from(written) * write
        + f64::from(u.completion_tokens) * output)
        / 1e6
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    /// The primary deployment's provider and upstream id (`deployments[0]`'s):
    /// its protocol is every deployment's.
    pub provider: usize,
    pub upstream: String,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub cache_read_usd_per_mtok: f64,
    pub cache_write_usd_per_mtok: f64,
    pub context_window: u32,
    pub prior_quality: f64,
    /// Configured fallback chain, as model indices.
    pub fallback: Vec<usize>,
    pub capabilities: Vec<Capability>,
    /// Where the model is served; the primary first. Never empty.
    pub deployments: Vec<Deployment>,
}

impl Model {
    /// USD cost of a call with these token counts at list prices (an
    /// estimate before the call: no cache assumed).
    pub fn cost_usd(&self, prompt_tokens: u32, completion_tokens: u32) -> f64 {
        (f64::from(prompt_tokens) * self.input_usd_per_mtok
            + f64::from(completion_tokens) * self.output_usd_per_mtok)
            / 1e6
    }

    /// USD cost of a call the provider reported `u` for: the prompt tokens
    /// read from or written to its cache at the cache prices, the rest at
    /// the input price.
    pub fn cost_of(&self, u: &Usage) -> f64 {
        priced(
            u,
            [
                self.input_usd_per_mtok,
                self.cache_read_usd_per_mtok,
                self.cache_write_usd_per_mtok,
                self.output_usd_per_mtok,
            ],
        )
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
}

impl Catalog {
    /// The models as the bandit sees them: (name, declared prior) in order.
    pub fn arms(&self) -> Vec<(String, f64)> {
        self.models
            .iter()
            .map(|m| (m.name.clone(), m.prior_quality))
            .collect()
    }

    /// Builds the catalog, reading each provider's key with `env` (the process
    /// environment in production, a map in tests).
    pub fn new(config: &Config, env: impl Fn(&str) -> Option<String>) -> Self {
        let providers: Vec<Provider> = config.providers.iter().map(|p| provider(p, &env)).collect();
        let mut models: Vec<Model> = config.models.iter().map(|m| model(m, &providers)).collect();
        for (i, m) in config.models.iter().enumerate() {
            models[i].fallback = m
                .fallback
                .iter()
                .filter_map(|f| config.models.iter().position(|x| &x.name == f))
                .collect();
        }
        Catalog { providers, models }
    }

    pub fn from_env(config: &Config) -> Self {
        Self::new(config, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    pub fn provider_of(&self, model: usize) -> &Provider {
        &self.providers[self.models[model].provider]
    }

    /// Why model `m` cannot be called: every deployment's provider is
    /// disabled (the primary's reason); `None` when one can take calls.
    pub fn disabled_reason(&self, m: usize) -> Option<String> {
        let deployments = &self.models[m].deployments;
        if deployments
            .iter()
            .any(|d| self.providers[d.provider].enabled())
        {
            return None;
        }
        self.provider_of(m).disabled_reason()
    }

    /// Deployment `d` of model `m`, and its provider.
    pub fn deployment(&self, m: usize, d: usize) -> (&Deployment, &Provider) {
        let dep = &self.models[m].deployments[d];
        (dep, &self.providers[dep.provider])
    }
}

fn provider(p: &ProviderConfig, env: &impl Fn(&str) -> Option<String>) -> Provider {
    Provider {
        name: p.name.clone(),
        kind: p.kind,
        base_url: p.base_url.clone(),
        api_key: p.api_key_env.as_deref().and_then(env),
        api_key_env: p.api_key_env.clone(),
    }
}

fn model(m: &ModelConfig, providers: &[Provider]) -> Model {
    let primary = Deployment {
        name: m.provider.clone(),
        provider: provider_index(&m.provider, providers),
        upstream: m.upstream.clone(),
        input_usd_per_mtok: m.input_usd_per_mtok,
        output_usd_per_mtok: m.output_usd_per_mtok,
        cache_read_usd_per_mtok: m.cache_read_usd_per_mtok,
        cache_write_usd_per_mtok: m.cache_write_usd_per_mtok,
    };
    let more: Vec<Deployment> = m
        .deployments
        .iter()
        .map(|d| deployment(d, &primary, providers))
        .collect();
    Model {
        name: m.name.clone(),
        provider: primary.provider,
        upstream: m.upstream.clone(),
        input_usd_per_mtok: m.input_usd_per_mtok,
        output_usd_per_mtok: m.output_usd_per_mtok,
        cache_read_usd_per_mtok: m.cache_read_usd_per_mtok,
        cache_write_usd_per_mtok: m.cache_write_usd_per_mtok,
        context_window: m.context_window,
        prior_quality: m.prior_quality,
        fallback: Vec::new(),
        capabilities: m.capabilities.clone(),
        deployments: std::iter::once(primary).chain(more).collect(),
    }
}

/// A declared deployment, with what it leaves out taken from the model's
/// own (`primary`); its cache prices default to its own input price.
fn deployment(d: &DeploymentConfig, primary: &Deployment, providers: &[Provider]) -> Deployment {
    let input = d.input_usd_per_mtok.unwrap_or(primary.input_usd_per_mtok);
    Deployment {
        name: d.name.clone(),
        provider: provider_index(&d.provider, providers),
        upstream: d
            .upstream
            .clone()
            .unwrap_or_else(|| primary.upstream.clone()),
        input_usd_per_mtok: input,
        output_usd_per_mtok: d.output_usd_per_mtok.unwrap_or(primary.output_usd_per_mtok),
        cache_read_usd_per_mtok: d.cache_read_usd_per_mtok.unwrap_or(input),
        cache_write_usd_per_mtok: d.cache_write_usd_per_mtok.unwrap_or(input),
    }
}

fn provider_index(name: &str, providers: &[Provider]) -> usize {
    providers
        .iter()
        .position(|p| p.name == name)
        .expect("config validation checked the provider exists: this is a bug")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_and_written_prompt_tokens_cost_their_own_prices() {
        let m = Model {
            name: "m".into(),
            provider: 0,
            upstream: "m".into(),
            input_usd_per_mtok: 3.0,
            output_usd_per_mtok: 15.0,
            cache_read_usd_per_mtok: 0.3,
            cache_write_usd_per_mtok: 3.75,
            context_window: 1000,
            prior_quality: 0.5,
            fallback: Vec::new(),
            deployments: Vec::new(),
            capabilities: Vec::new(),
        };
        let u = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 100_000,
            cached_tokens: 600_000,
            cache_write_tokens: 300_000,
            reasoning_tokens: 0,
        };
        // 100k fresh at 3, 600k read at 0.3, 300k written at 3.75, 100k out at 15.
        let want = 0.3 + 0.18 + 1.125 + 1.5;
        assert!((m.cost_of(&u) - want).abs() < 1e-12, "{}", m.cost_of(&u));
        let plain = Usage {
            cached_tokens: 0,
            cache_write_tokens: 0,
            ..u
        };
        assert_eq!(m.cost_of(&plain), m.cost_usd(1_000_000, 100_000));
    }
}
