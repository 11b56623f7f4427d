//! Hard constraints, applied before any policy scores a model. A constraint
//! that fails makes the model ineligible with a reason a person can act on.

use super::Candidate;
use crate::catalog::Catalog;

/// The request's constraints.
#[derive(Debug, Clone)]
pub struct Constraints<'a> {
    /// Allow-listed model indices; `None` means every model.
    pub allow: Option<&'a [usize]>,
    pub prompt_tokens: u32,
    /// Expected output tokens per catalog model, for cost and the context window.
    pub output_tokens: &'a [u32],
    pub max_cost_usd: Option<f64>,
    /// Generation settings the request sets, by OpenAI name: the model's
    /// protocol must have a field for each.
    pub settings: &'a [&'static str],
}

/// The first of `settings` that model `i`'s protocol cannot carry.
pub fn unsupported(catalog: &Catalog, i: usize, settings: &[&'static str]) -> Option<&'static str> {
    let kind = catalog.providers[catalog.models[i].provider].kind;
    settings.iter().copied().find(|s| kind.lacks(s))
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
            } else if let Some(r) = catalog.providers[m.provider].disabled_reason() {
                r
            } else if let Some(name) = unsupported(catalog, i, c.settings) {
                format!(
                    "its provider's protocol ({}) has no `{name}` parameter",
                    catalog.providers[m.provider].kind.name()
                )
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
