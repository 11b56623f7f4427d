//! From the config's routes and profiles (checked there) to [`Rules`]:
//! model names become catalog indices, regexes and languages are built.

use std::collections::HashMap;

use super::{Knobs, Rule, Rules, Variant, When};
use crate::catalog::Catalog;
use crate::config::{Config, Then, language};

/// A name the config check let through that the catalog does not hold (a
/// bug between the two checks, reported rather than panicking).
#[derive(Debug, thiserror::Error)]
#[error("routes: {0}")]
pub struct CompileError(String);

/// Whether these settings can change a request that named its model.
fn binds(t: &Then) -> bool {
    !t.candidates.is_empty()
        || t.max_usd_per_mtok.is_some()
        || t.max_cost_usd.is_some()
        || t.shadow.is_some()
}

pub(super) fn compile(config: &Config, catalog: &Catalog) -> Result<Rules, CompileError> {
    let by_name: HashMap<String, usize> = config
        .profiles
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), i))
        .collect();
    let model = |m: &str| {
        catalog
            .model_index(m)
            .ok_or_else(|| CompileError(format!("no model {m:?}")))
    };
    let profile = |p: &str| {
        by_name
            .get(p)
            .copied()
            .ok_or_else(|| CompileError(format!("no profile {p:?}")))
    };
    let mut variant_policies: Vec<String> = Vec::new();
    let mut knobs = |kind: &'static str, name: &str, t: &Then| -> Result<Knobs, CompileError> {
        Ok(Knobs {
            kind,
            name: name.to_owned(),
            candidates: if t.candidates.is_empty() {
                None
            } else {
                Some(
                    t.candidates
                        .iter()
                        .map(|m| model(m))
                        .collect::<Result<_, _>>()?,
                )
            },
            model: t.model.as_deref().map(model).transpose()?,
            profile: t.profile.as_deref().map(profile).transpose()?,
            cost_weight: t.cost_weight,
            latency_weight: t.latency_weight,
            max_cost_usd: t.max_cost_usd,
            max_usd_per_mtok: t.max_usd_per_mtok,
            split: match &t.split {
                Some(s) => {
                    let variant = match (&s.model, &s.policy) {
                        (Some(m), _) => Variant::Model(model(m)?),
                        (None, Some(p)) => {
                            let i = match variant_policies.iter().position(|v| v == p) {
                                Some(i) => i,
                                None => {
                                    variant_policies.push(p.clone());
                                    variant_policies.len() - 1
                                }
                            };
                            Variant::Policy(i)
                        }
                        (None, None) => {
                            return Err(CompileError("a split without a variant".into()));
                        }
                    };
                    Some((s.share, variant, s.sticky))
                }
                None => None,
            },
            shadow: match &t.shadow {
                Some(s) => Some((s.share, model(&s.model)?)),
                None => None,
            },
        })
    };
    let profiles = config
        .profiles
        .iter()
        .map(|p| knobs("profile", &p.name, &p.then))
        .collect::<Result<Vec<_>, _>>()?;
    let mut headers = Vec::new();
    let mut routes = Vec::new();
    for r in &config.routes {
        let m = &r.when;
        headers.extend(m.header.keys().cloned());
        let regex = m
            .regex
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| CompileError(e.to_string()))?;
        routes.push(Rule {
            name: r.name.clone(),
            when: When {
                tenant: m.tenant.clone(),
                tier: m.tier.clone(),
                header: m.header.clone().into_iter().collect(),
                metadata: m.metadata.clone().into_iter().collect(),
                profile: m
                    .profile
                    .iter()
                    .map(|p| profile(p))
                    .collect::<Result<_, _>>()?,
                intent: m.intent.clone(),
                min_confidence: m.min_confidence.unwrap_or(0.0),
                language: m.language.iter().filter_map(|l| language(l)).collect(),
                min_prompt_tokens: m.min_prompt_tokens,
                max_prompt_tokens: m.max_prompt_tokens,
                keywords: m.keywords.iter().map(|k| k.to_lowercase()).collect(),
                regex,
                needs: m.needs.clone(),
            },
            binds_pinned: binds(&r.then)
                || r.then
                    .profile
                    .as_deref()
                    .and_then(|p| by_name.get(p))
                    .is_some_and(|&p| binds(&config.profiles[p].then)),
            then: knobs("rule", &r.name, &r.then)?,
            last: r.last,
        });
    }
    headers.sort();
    headers.dedup();
    Ok(Rules {
        routes,
        profiles,
        by_name,
        headers,
        variant_policies,
    })
}
