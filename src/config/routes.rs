//! `[[routes]]` and `[[profiles]]`: the rules evaluated before the policy,
//! and the named virtual models (`switchyard/<name>`) a request or a rule
//! may select. Their shape is checked here (names, models, shares, regexes,
//! languages); `rules` compiles them against the catalog. See
//! docs/governance.md for what each field does.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{Capability, ConfigError, ModelConfig, invalid};

/// One rule: when `match` holds, `then` applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    pub name: String,
    #[serde(rename = "match", default)]
    pub when: Match,
    #[serde(default)]
    pub then: Then,
    /// No rule after this one is evaluated when this one matches.
    #[serde(default)]
    pub last: bool,
}

/// Conditions; every one that is set must hold (an empty match always holds).
/// Lists hold when any entry does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub tenant: Vec<String>,
    /// The API key's tier label.
    #[serde(default)]
    pub tier: Vec<String>,
    /// Request headers (gRPC metadata) by lower-case name, values exact.
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    /// The request's metadata entries, values exact.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The profile the request asked for (`switchyard/<name>`).
    #[serde(default)]
    pub profile: Vec<String>,
    /// The classifier's intent label.
    #[serde(default)]
    pub intent: Vec<String>,
    /// With `intent`: the label's probability must reach this.
    pub min_confidence: Option<f64>,
    /// The prompt's language, as ISO 639-3 codes ("deu") or English names ("German").
    #[serde(default)]
    pub language: Vec<String>,
    pub min_prompt_tokens: Option<u32>,
    pub max_prompt_tokens: Option<u32>,
    /// Case-insensitive words, any of which the prompt contains.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// A regular expression the prompt matches.
    pub regex: Option<String>,
    /// Capabilities the request needs (tools, vision, json_schema, reasoning).
    #[serde(default)]
    pub needs: Vec<Capability>,
}

/// What a matching rule (or a profile) sets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Then {
    /// Route among these models only (intersected with earlier limits).
    #[serde(default)]
    pub candidates: Vec<String>,
    /// Pin this model: the policy does not choose.
    pub model: Option<String>,
    /// Apply this profile's settings here.
    pub profile: Option<String>,
    pub cost_weight: Option<f64>,
    pub latency_weight: Option<f64>,
    pub max_cost_usd: Option<f64>,
    /// No model whose input or output price per million tokens is above this.
    pub max_usd_per_mtok: Option<f64>,
    pub split: Option<Split>,
    pub shadow: Option<Shadow>,
}

/// Send `share` of the rule's traffic to the variant, sticky per user or
/// session: a `model`, or a `policy` that chooses instead of the running
/// one ("prior", or a directory `switchyard train` wrote).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub share: f64,
    pub model: Option<String>,
    pub policy: Option<String>,
    #[serde(default)]
    pub sticky: Sticky,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sticky {
    /// The request's `user` (or metadata `user`), else its session, else none.
    #[default]
    User,
    /// The request's session id, else its user, else none.
    Session,
}

/// Mirror `share` of the rule's completions to `model`, never answering with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub share: f64,
    pub model: String,
}

/// A named virtual model: `switchyard/<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub then: Then,
}

/// Checks names, references, numbers, regexes and languages.
pub(super) fn validate(
    routes: &[RouteRule],
    profiles: &[Profile],
    models: &[ModelConfig],
) -> Result<(), ConfigError> {
    let known: HashSet<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let profile_names: HashSet<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    let mut seen = HashSet::new();
    for (i, p) in profiles.iter().enumerate() {
        let at = format!("profiles[{i}]");
        name(&at, &p.name, &mut seen)?;
        if p.name == "auto" {
            return Err(invalid(at, "the profile name \"auto\" is the router's own"));
        }
        if p.then.profile.is_some() || p.then.split.is_some() || p.then.shadow.is_some() {
            return Err(invalid(
                at,
                "a profile sets candidates, model and weights; profile, split and shadow belong to [[routes]]",
            ));
        }
        then(&at, &p.then, &known, &profile_names)?;
    }
    let mut seen = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        name(&at, &r.name, &mut seen)?;
        when(&at, &r.when, &profile_names)?;
        then(&at, &r.then, &known, &profile_names)?;
    }
    Ok(())
}

fn name<'a>(at: &str, name: &'a str, seen: &mut HashSet<&'a str>) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(invalid(
            format!("{at}.name"),
            format!("{name:?}: use letters, digits, '-', '_' or '.'"),
        ));
    }
    if !seen.insert(name) {
        return Err(invalid(
            format!("{at}.name"),
            format!("{name:?} is used twice"),
        ));
    }
    Ok(())
}

fn when(at: &str, m: &Match, profiles: &HashSet<&str>) -> Result<(), ConfigError> {
    if let Some(p) = m.profile.iter().find(|p| !profiles.contains(p.as_str())) {
        return Err(invalid(
            format!("{at}.match.profile"),
            format!("no profile {p:?}"),
        ));
    }
    if let Some(c) = m.min_confidence
        && !(0.0..=1.0).contains(&c)
    {
        return Err(invalid(
            format!("{at}.match.min_confidence"),
            "must be in [0, 1]",
        ));
    }
    if m.min_confidence.is_some() && m.intent.is_empty() {
        return Err(invalid(
            format!("{at}.match.min_confidence"),
            "applies to `intent`, which is not set",
        ));
    }
    if let Some(l) = m.language.iter().find(|l| language(l).is_none()) {
        return Err(invalid(
            format!("{at}.match.language"),
            format!(
                "{l:?} is not a language we detect (use ISO 639-3 codes such as \"deu\", or English names)"
            ),
        ));
    }
    if let Some(re) = &m.regex {
        regex::Regex::new(re).map_err(|e| invalid(format!("{at}.match.regex"), e.to_string()))?;
    }
    if m.header
        .keys()
        .any(|h| h.chars().any(|c| c.is_ascii_uppercase()))
    {
        return Err(invalid(
            format!("{at}.match.header"),
            "header names are lower case",
        ));
    }
    Ok(())
}

fn then(
    at: &str,
    t: &Then,
    models: &HashSet<&str>,
    profiles: &HashSet<&str>,
) -> Result<(), ConfigError> {
    let model = |field: &str, m: &str| {
        if models.contains(m) {
            Ok(())
        } else {
            Err(invalid(
                format!("{at}.then.{field}"),
                format!("no model {m:?} in the catalog"),
            ))
        }
    };
    for m in &t.candidates {
        model("candidates", m)?;
    }
    if let Some(m) = &t.model {
        model("model", m)?;
    }
    if let Some(p) = t.profile.as_deref().filter(|p| !profiles.contains(p)) {
        return Err(invalid(
            format!("{at}.then.profile"),
            format!("no profile {p:?}"),
        ));
    }
    for (field, v) in [
        ("cost_weight", t.cost_weight),
        ("latency_weight", t.latency_weight),
        ("max_cost_usd", t.max_cost_usd),
        ("max_usd_per_mtok", t.max_usd_per_mtok),
    ] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(invalid(
                format!("{at}.then.{field}"),
                "must be finite and >= 0",
            ));
        }
    }
    if let Some(s) = &t.split {
        match (&s.model, &s.policy) {
            (Some(m), None) => model("split.model", m)?,
            (None, Some(p)) if !p.trim().is_empty() => {}
            _ => {
                return Err(invalid(
                    format!("{at}.then.split"),
                    "name the variant: a `model`, or a `policy` (\"prior\" or a policy directory)",
                ));
            }
        }
        share(&format!("{at}.then.split.share"), s.share)?;
    }
    if let Some(s) = &t.shadow {
        model("shadow.model", &s.model)?;
        share(&format!("{at}.then.shadow.share"), s.share)?;
    }
    Ok(())
}

fn share(at: &str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(at, "must be in [0, 1]"))
    }
}

/// The language a config names, by ISO 639-3 code or English name.
pub fn language(name: &str) -> Option<whatlang::Lang> {
    whatlang::Lang::from_code(name.to_ascii_lowercase()).or_else(|| {
        whatlang::Lang::all()
            .iter()
            .copied()
            .find(|l| l.eng_name().eq_ignore_ascii_case(name))
    })
}
