//! Reasoning settings between the protocols: OpenAI names an effort
//! (`reasoning_effort`), Anthropic and Gemini a budget of thinking tokens
//! (`thinking.budget_tokens`, `thinkingConfig.thinkingBudget`). A request
//! carries whichever its front speaks; each adapter asks here for its own.
//!
//! Efforts become budgets by one table, and budgets efforts by the nearest
//! step of the same table (docs/wire-conformance.md gives both), as LiteLLM
//! and OpenRouter translate them.

use super::Sampling;

/// Thinking tokens per effort. Anthropic's smallest budget is 1024; the
/// steps double at each level and stay under Gemini 2.5 Flash's ceiling.
const BUDGETS: [(&str, u32); 4] = [
    ("minimal", 1024),
    ("low", 2048),
    ("medium", 8192),
    ("high", 24576),
];

/// The thinking budget the request asks for, if it asks for thinking.
pub fn budget(s: &Sampling) -> Option<u32> {
    s.reasoning_budget.or_else(|| {
        let effort = s.reasoning_effort.as_deref()?;
        BUDGETS.iter().find(|(e, _)| *e == effort).map(|(_, b)| *b)
    })
}

/// Anthropic's smallest thinking budget.
const MIN_BUDGET: u32 = 1024;

/// The budget for a model whose thinking counts within `max_tokens`
/// (Anthropic refuses a budget that does not leave room for the answer):
/// a budget the client gave is sent as given, one from an effort is cut to
/// fit under the client's limit (never below the smallest budget).
pub fn budget_within(s: &Sampling, max_tokens: Option<u32>) -> Option<u32> {
    if s.reasoning_budget.is_some() {
        return s.reasoning_budget;
    }
    let b = budget(s)?;
    Some(match max_tokens {
        Some(max) => b.min(max.saturating_sub(1)).max(MIN_BUDGET),
        None => b,
    })
}

/// The effort the request asks for: as given, or the table's level whose
/// budget is nearest a given budget (ties to the larger).
pub fn effort(s: &Sampling) -> Option<&str> {
    if let Some(e) = s.reasoning_effort.as_deref() {
        return Some(e);
    }
    let b = i64::from(s.reasoning_budget?);
    BUDGETS
        .iter()
        .rev()
        .min_by_key(|(_, step)| (i64::from(*step) - b).abs())
        .map(|(e, _)| *e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(effort: Option<&str>, budget: Option<u32>) -> Sampling {
        Sampling {
            reasoning_effort: effort.map(str::to_owned),
            reasoning_budget: budget,
            ..Sampling::default()
        }
    }

    #[test]
    fn efforts_and_budgets_translate_both_ways() {
        assert_eq!(budget(&with(Some("medium"), None)), Some(8192));
        assert_eq!(budget(&with(None, Some(5000))), Some(5000));
        assert_eq!(budget(&with(None, None)), None);
        assert_eq!(effort(&with(None, Some(1024))), Some("minimal"));
        assert_eq!(effort(&with(None, Some(3000))), Some("low"));
        assert_eq!(effort(&with(None, Some(16000))), Some("medium"));
        assert_eq!(effort(&with(None, Some(100_000))), Some("high"));
        assert_eq!(effort(&with(Some("low"), Some(100_000))), Some("low"));
        assert_eq!(
            budget_within(&with(Some("high"), None), Some(3000)),
            Some(2999)
        );
        assert_eq!(
            budget_within(&with(Some("high"), None), Some(100)),
            Some(1024)
        );
        assert_eq!(
            budget_within(&with(None, Some(5000)), Some(100)),
            Some(5000)
        );
    }
}
