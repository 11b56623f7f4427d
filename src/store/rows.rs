//! Rows as the log stores them (and the acknowledgement journal holds them).

use serde::{Deserialize, Deserializer, Serialize};

/// A name from a fixed set. Spelled as an alias so that serde does not take
/// it for text borrowed from the input: it is read through [`one_of`].
pub type Name = &'static str;

/// One routing decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionRow {
    pub id: String,
    pub created_at_ms: i64,
    pub tenant: String,
    /// `route`, `complete` or `complete_stream`.
    #[serde(deserialize_with = "rpc")]
    pub rpc: Name,
    pub model: String,
    pub provider: String,
    pub pinned: bool,
    pub propensity: f64,
    pub explored: bool,
    pub policy_version: String,
    pub cost_weight: f64,
    pub max_cost_usd: Option<f64>,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    pub message_count: u32,
    /// The classifier's embedding as little-endian f16 bytes.
    pub features: Option<Vec<u8>>,
    /// The policy's context vector as little-endian f32 bytes.
    pub context: Option<Vec<u8>>,
    pub intent: Option<String>,
    /// JSON array of every candidate's numbers.
    pub candidates: String,
    /// JSON object of the request's metadata.
    pub metadata: String,
    pub prompt: Option<String>,
    /// The model whose answer was returned, when known at logging time
    /// (Complete); a stream's is set with its attempts.
    pub served_model: Option<String>,
    /// The API key it was made under (keys on).
    #[serde(default)]
    pub key_id: Option<String>,
    /// JSON array of the `[[routes]]` that matched, in order.
    #[serde(default)]
    pub rules: Option<String>,
    /// The profile in force (requested, or set by a rule).
    #[serde(default)]
    pub profile: Option<String>,
    /// The A/B arm the request fell in.
    #[serde(default)]
    pub split: Option<SplitRow>,
    /// The decision whose answer the response cache served again; such a
    /// decision has no attempts and no context.
    #[serde(default)]
    pub cached_from: Option<String>,
}

/// An A/B assignment: the rule, the arm and the arm's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRow {
    pub rule: String,
    /// `variant` or `control`.
    pub arm: String,
    pub probability: f64,
}

/// One call to a provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRow {
    pub model: String,
    pub provider: String,
    /// Which of the model's deployments took the call (`None` in rows
    /// written before models had several).
    #[serde(default)]
    pub deployment: Option<String>,
    /// `ok`, `error`, `timeout` or `cancelled`.
    #[serde(deserialize_with = "outcome")]
    pub outcome: Name,
    pub error: Option<String>,
    pub http_status: Option<u16>,
    pub started_at_ms: i64,
    pub latency_ms: u32,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub usage_estimated: bool,
    pub cost_usd: Option<f64>,
}

/// A quality judgement of a decision's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedbackRow {
    pub decision_id: String,
    pub source: String,
    pub reward: f64,
    pub at_ms: i64,
    /// Only a decision of this tenant takes the feedback (another's is
    /// "not found", as a missing one); `None`: any decision.
    pub tenant: Option<String>,
}

/// One of `known`, as the `'static` name the rows carry.
fn one_of<'de, D: Deserializer<'de>>(
    d: D,
    known: &[&'static str],
) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    known
        .iter()
        .copied()
        .find(|k| *k == s)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown value {s:?}")))
}

fn rpc<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &["route", "complete", "complete_stream"])
}

fn outcome<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &["ok", "error", "timeout", "cancelled"])
}
