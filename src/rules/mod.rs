//! The rules layer: `[[routes]]` evaluated in order before the policy, and
//! the profiles (`switchyard/<name>`) a request or a rule selects.
//!
//! Every rule whose `match` holds applies, in order, until one marked
//! `last` matches. Limits combine so the tightest holds (candidate lists
//! intersect, price ceilings and `max_cost_usd` take the minimum); weights
//! and pins take the last value set; a split or shadow is the last matching
//! rule's. A requested profile applies first, as if it were the first rule.
//! Evaluation is pure and deterministic for a given request (an A/B split
//! hashes the sticky id; only a request with none, and the shadow share,
//! draw from the generator), so what decided is in the log: the matched
//! rules, the profile, the split's arm and its probability.

mod compile;

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::config::{Capability, Config, Sticky};

pub use compile::CompileError;

/// The compiled rules and profiles.
#[derive(Debug, Default)]
pub struct Rules {
    routes: Vec<Rule>,
    profiles: Vec<Knobs>,
    by_name: HashMap<String, usize>,
    /// Lower-case header names some rule matches on.
    headers: Vec<String>,
    /// The policies splits name as variants, each once.
    variant_policies: Vec<String>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    when: When,
    then: Knobs,
    last: bool,
    /// Whether it can change a request that named its model: it limits
    /// models or costs, or shadows. Only these are evaluated for such a
    /// request (a pin, a split or a weight would not apply to it), which
    /// keeps a language rule's detection off the pinned path.
    binds_pinned: bool,
}

#[derive(Debug, Default)]
struct When {
    tenant: Vec<String>,
    tier: Vec<String>,
    header: Vec<(String, String)>,
    metadata: Vec<(String, String)>,
    profile: Vec<usize>,
    intent: Vec<String>,
    min_confidence: f64,
    language: Vec<whatlang::Lang>,
    min_prompt_tokens: Option<u32>,
    max_prompt_tokens: Option<u32>,
    /// Lower-cased.
    keywords: Vec<String>,
    regex: Option<regex::Regex>,
    needs: Vec<Capability>,
}

/// What a rule or profile sets, with models as catalog indices.
#[derive(Debug, Default, Clone)]
struct Knobs {
    /// "rule" or "profile".
    kind: &'static str,
    name: String,
    candidates: Option<Vec<usize>>,
    model: Option<usize>,
    profile: Option<usize>,
    cost_weight: Option<f64>,
    latency_weight: Option<f64>,
    max_cost_usd: Option<f64>,
    max_usd_per_mtok: Option<f64>,
    split: Option<(f64, Variant, Sticky)>,
    shadow: Option<(f64, usize)>,
}

/// What the rules are evaluated on: one request, after the classifier.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub tenant: &'a str,
    pub tier: &'a str,
    /// Request headers (gRPC metadata), names lower-case.
    pub headers: &'a [(String, String)],
    pub metadata: &'a BTreeMap<String, String>,
    /// The profile the request named, by index ([`Rules::profile`]).
    pub profile: Option<usize>,
    /// The classifier's label and its probability (none when not read).
    pub intent: Option<(&'a str, f64)>,
    /// The text the classifier reads (the last user turn).
    pub text: &'a str,
    pub prompt_tokens: u32,
    pub needs: &'a [Capability],
    pub user: Option<&'a str>,
    pub session: Option<&'a str>,
    /// The client named the model.
    pub pinned: bool,
}

impl Default for Facts<'_> {
    fn default() -> Self {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        Facts {
            tenant: "",
            tier: "",
            headers: &[],
            metadata: &NONE,
            profile: None,
            intent: None,
            text: "",
            prompt_tokens: 0,
            needs: &[],
            user: None,
            session: None,
            pinned: false,
        }
    }
}

/// A limit on which models may answer, and who set it.
#[derive(Debug, Clone)]
struct Limit {
    by: String,
    candidates: Option<Vec<usize>>,
    max_usd_per_mtok: Option<f64>,
}

/// What an A/B split's variant arm gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// This model (catalog index), pinned.
    Model(usize),
    /// This policy ([`Rules::variant_policies`] index) chooses instead of
    /// the running one.
    Policy(usize),
}

/// The A/B arm a request fell in.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub rule: String,
    /// "variant" or "control".
    pub arm: &'static str,
    /// The probability of this arm: the share, or one minus it.
    pub probability: f64,
    /// The variant (a pinned model or another policy on the variant arm).
    pub variant: Variant,
}

/// What the rules decided for one request.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    /// Names of the rules that matched, in order.
    pub matched: Vec<String>,
    /// The profile in force (requested or set by a rule).
    pub profile: Option<String>,
    limits: Vec<Limit>,
    /// A pinned model and what pinned it ("rule:<name>", "profile:<name>",
    /// "ab:<rule>"): the policy version its decision is logged under.
    pub pin: Option<(usize, String)>,
    pub cost_weight: Option<f64>,
    pub latency_weight: Option<f64>,
    pub max_cost_usd: Option<f64>,
    pub split: Option<Assignment>,
    /// A model to mirror this request to, and the rule that asked.
    pub shadow: Option<(usize, String)>,
}

impl Verdict {
    /// Why the rules keep model `i` (of `catalog`) out; `None` if they do not.
    pub fn excludes(&self, catalog: &Catalog, i: usize) -> Option<String> {
        let m = &catalog.models[i];
        self.limits.iter().find_map(|l| {
            if l.candidates.as_ref().is_some_and(|c| !c.contains(&i)) {
                return Some(format!("not among {}'s candidates", l.by));
            }
            let price = m.input_usd_per_mtok.max(m.output_usd_per_mtok);
            l.max_usd_per_mtok
                .filter(|max| price > *max)
                .map(|max| format!("${price}/Mtok is above {}'s ceiling of ${max}/Mtok", l.by))
        })
    }

    /// Whether a rule (not the request) chose the model.
    pub fn forced(&self) -> bool {
        self.pin.is_some()
    }
}

impl Rules {
    /// Compiles the config's routes and profiles against the catalog.
    pub fn new(config: &Config, catalog: &Catalog) -> Result<Rules, CompileError> {
        compile::compile(config, catalog)
    }

    /// Whether there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.profiles.is_empty()
    }

    /// The index of the profile `name` (without `switchyard/`).
    pub fn profile(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The policies A/B splits name as variants ("prior", or a policy
    /// directory), each once: the engine is given one loaded policy per entry.
    pub fn variant_policies(&self) -> &[String] {
        &self.variant_policies
    }

    /// Profile names, in config order.
    pub fn profiles(&self) -> impl Iterator<Item = &str> {
        self.profiles.iter().map(|p| p.name.as_str())
    }

    /// The request headers some rule reads, from a transport's lookup by
    /// lower-case name (only these are copied off the request).
    pub fn headers_of<'h>(&self, get: impl Fn(&str) -> Option<&'h str>) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter_map(|h| get(h).map(|v| (h.clone(), v.to_owned())))
            .collect()
    }

    /// Evaluates the rules on one request; `draw` gives uniform [0, 1)
    /// numbers for what is not sticky.
    pub fn evaluate(&self, f: &Facts<'_>, draw: &mut dyn FnMut() -> f64) -> Verdict {
        let mut v = Verdict::default();
        if let Some(p) = f.profile {
            self.apply(&self.profiles[p], &mut v, f, draw);
            v.profile = Some(self.profiles[p].name.clone());
        }
        let language = OnceCell::new();
        for r in &self.routes {
            if (f.pinned && !r.binds_pinned) || !r.when.holds(f, &language) {
                continue;
            }
            v.matched.push(r.name.clone());
            if let Some(p) = r.then.profile {
                self.apply(&self.profiles[p], &mut v, f, draw);
                v.profile = Some(self.profiles[p].name.clone());
            }
            self.apply(&r.then, &mut v, f, draw);
            if r.last {
                break;
            }
        }
        if let Some(a) = v.split.as_ref().filter(|a| a.arm == "variant")
            && let Variant::Model(m) = a.variant
        {
            v.pin = Some((m, format!("ab:{}", a.rule)));
        }
        v
    }

    fn apply(&self, k: &Knobs, v: &mut Verdict, f: &Facts<'_>, draw: &mut dyn FnMut() -> f64) {
        if k.candidates.is_some() || k.max_usd_per_mtok.is_some() {
            v.limits.push(Limit {
                by: format!("{} {}", k.kind, k.name),
                candidates: k.candidates.clone(),
                max_usd_per_mtok: k.max_usd_per_mtok,
            });
        }
        // A request that named its model keeps it and takes no A/B arm.
        if let Some(m) = k.model.filter(|_| !f.pinned) {
            v.pin = Some((m, format!("{}:{}", k.kind, k.name)));
        }
        v.cost_weight = k.cost_weight.or(v.cost_weight);
        v.latency_weight = k.latency_weight.or(v.latency_weight);
        if let Some(max) = k.max_cost_usd {
            v.max_cost_usd = Some(v.max_cost_usd.map_or(max, |m| m.min(max)));
        }
        if let Some((share, variant, sticky)) = k.split.filter(|_| !f.pinned) {
            let u = sticky_id(f, sticky).map_or_else(&mut *draw, |id| unit(&k.name, id));
            let (arm, probability) = if u < share {
                ("variant", share)
            } else {
                ("control", 1.0 - share)
            };
            v.split = Some(Assignment {
                rule: k.name.clone(),
                arm,
                probability,
                variant,
            });
        }
        if let Some((share, model)) = k.shadow
            && draw() < share
        {
            v.shadow = Some((model, k.name.clone()));
        }
    }
}

impl When {
    fn holds(&self, f: &Facts<'_>, language: &OnceCell<Option<whatlang::Lang>>) -> bool {
        let any = |list: &[String], x: &str| list.is_empty() || list.iter().any(|l| l == x);
        if !any(&self.tenant, f.tenant) || !any(&self.tier, f.tier) {
            return false;
        }
        let header = |name: &str| f.headers.iter().find(|(h, _)| h == name).map(|(_, v)| v);
        if !self.header.iter().all(|(h, want)| header(h) == Some(want)) {
            return false;
        }
        if !self
            .metadata
            .iter()
            .all(|(k, want)| f.metadata.get(k) == Some(want))
        {
            return false;
        }
        if !self.profile.is_empty() && !f.profile.is_some_and(|p| self.profile.contains(&p)) {
            return false;
        }
        if !self.intent.is_empty() {
            let Some((label, p)) = f.intent else {
                return false;
            };
            if !self.intent.iter().any(|i| i == label) || p < self.min_confidence {
                return false;
            }
        }
        if self.min_prompt_tokens.is_some_and(|n| f.prompt_tokens < n)
            || self.max_prompt_tokens.is_some_and(|n| f.prompt_tokens > n)
        {
            return false;
        }
        if !self.needs.iter().all(|c| f.needs.contains(c)) {
            return false;
        }
        if !self.keywords.is_empty() {
            let text = f.text.to_lowercase();
            if !self.keywords.iter().any(|k| text.contains(k.as_str())) {
                return false;
            }
        }
        if self.regex.as_ref().is_some_and(|r| !r.is_match(f.text)) {
            return false;
        }
        // Last: detection is the costliest test, and done once per request.
        if !self.language.is_empty() {
            let lang = language.get_or_init(|| whatlang::detect_lang(f.text));
            if !lang.is_some_and(|l| self.language.contains(&l)) {
                return false;
            }
        }
        true
    }
}

/// The id a split sticks to.
fn sticky_id<'a>(f: &Facts<'a>, sticky: Sticky) -> Option<&'a str> {
    let user = f
        .user
        .or_else(|| f.metadata.get("user").map(String::as_str));
    let id = match sticky {
        Sticky::User => user.or(f.session),
        Sticky::Session => f.session.or(user),
    };
    id.filter(|s| !s.is_empty())
}

/// A uniform number in [0, 1) fixed by the rule and the id: the same user
/// stays in the same arm across requests, restarts and replicas.
fn unit(rule: &str, id: &str) -> f64 {
    let h = Sha256::new()
        .chain_update(rule.as_bytes())
        .chain_update([0])
        .chain_update(id.as_bytes())
        .finalize();
    let x = u64::from_le_bytes(h[..8].try_into().expect("a SHA-256 has 8 bytes"));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
