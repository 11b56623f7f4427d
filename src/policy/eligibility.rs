//! Hard constraints, applied before any policy scores a model. A constraint
//! that fails makes the model ineligible with a reason a person can act on.

use super::Candidate;
use crate::catalog::Catalog;
use crate::config::Capability;

/// The request's constraints.
#[derive(Debug, Clone)]
pub struct Constraints<'a> {
    /// Allow-listed model indices; `None` means every model.
    pub allow: Option<&'a [usize]>,
    pub prompt_tokens: u32,
    /// Expected output tokens per catalog model, for cost and the context window.
    pub output_tokens: &'a [u32],
    pub max_cost_usd: Option<f64>,
    pub needs: &'a Needs,
}

/// What a request needs of a model past size and price.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Generation settings the request sets, by OpenAI name: the model's
    /// protocol must have a field for each.
    pub settings: Vec<&'static str>,
    /// Capabilities the catalog must declare for the model.
    pub capabilities: Vec<Capability>,
    /// Images come by `http(s)` URL: the protocol must take those.
    pub image_urls: bool,
}

/// A need a model cannot meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// Its protocol has no field for this setting.
    Setting(&'static str),
    /// The catalog does not declare this capability for it.
    Capability(Capability),
    /// Its protocol takes images inline only.
    ImageUrls,
}

impl Unmet {
    /// The request field at stake.
    pub fn param(self) -> &'static str {
        match self {
            Unmet::Setting(name) => name,
            Unmet::Capability(Capability::Tools) => "tools",
            Unmet::Capability(Capability::JsonSchema) => "response_format",
            Unmet::Capability(Capability::Vision) => "messages",
            Unmet::Capability(Capability::Reasoning) => "reasoning_effort",
            Unmet::ImageUrls => "messages",
        }
    }

    /// Why model `i` is out, for a person.
    pub fn reason(self, catalog: &Catalog, i: usize) -> String {
        match self {
            Unmet::Setting(name) => format!(
                "its provider's protocol ({}) has no `{name}` parameter",
                catalog.providers[catalog.models[i].provider].kind.name()
            ),
            Unmet::Capability(c) => format!(
                "the catalog does not declare the `{}` capability for it",
                c.name()
            ),
            Unmet::ImageUrls => format!(
                "its provider's protocol ({}) takes images inline only: send them as data: URLs",
                catalog.providers[catalog.models[i].provider].kind.name()
            ),
        }
    }
}

/// The first need of the request that model `i` cannot meet.
pub fn unmet(catalog: &Catalog, i: usize, needs: &Needs) -> Option<Unmet> {
    let model = &catalog.models[i];
    let kind = catalog.providers[model.provider].kind;
    if let Some(s) = needs.settings.iter().copied().find(|s| kind.lacks(s)) {
        return Some(Unmet::Setting(s));
    }
    if needs.image_urls && !kind.takes_image_urls() {
        return Some(Unmet::ImageUrls);
    }
    needs
        .capabilities
        .iter()
        .copied()
        .find(|c| !model.capabilities.contains(c))
        .map(Unmet::Capability)
}

/// One candidate per catalog model, in catalog order, with cost filled in and
/// quality left for the policy.
pub fn screen(catalog: &Catalog, c: &Constraints<'_>) -> Vec<Candidate> {
    catalog
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let output = c.output_tokens[i];
            let cost = m.cost_usd(c.prompt_tokens, output);
            let needed = u64::from(c.prompt_tokens) + u64::from(output);
            let reason = if c.allow.is_some_and(|a| !a.contains(&i)) {
                "not in the request's candidates".to_owned()
            } else if let Some(r) = catalog.disabled_reason(i) {
                r
            } else if let Some(u) = unmet(catalog, i, c.needs) {
                u.reason(catalog, i)
            } else if needed > u64::from(m.context_window) {
                format!(
                    "{} prompt + {} output tokens exceed the context window of {}",
                    c.prompt_tokens, output, m.context_window
                )
            } else if let Some(max) = c.max_cost_usd.filter(|max| cost > *max) {
                format!("expected cost ${cost:.6} exceeds max_cost_usd ${max:.6}")
            } else {
                String::new()
            };
            Candidate {
                model: i,
                eligible: reason.is_empty(),
                reason,
                expected_quality: m.prior_quality,
                quality_std: 0.0,
                expected_cost_usd: cost,
                load: Default::default(),
                score: 0.0,
                probability: 0.0,
            }
        })
        .collect()
}
