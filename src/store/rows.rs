//! Rows as the log stores them.

/// One routing decision.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub id: String,
    pub created_at_ms: i64,
    pub tenant: String,
    /// `route`, `complete` or `complete_stream`.
    pub rpc: &'static str,
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
}

/// One call to a provider.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub model: String,
    pub provider: String,
    /// `ok`, `error`, `timeout` or `cancelled`.
    pub outcome: &'static str,
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
#[derive(Debug, Clone)]
pub struct FeedbackRow {
    pub decision_id: String,
    pub source: String,
    pub reward: f64,
    pub at_ms: i64,
}
