//! Token counts for cost estimates before a provider has answered.
//!
//! Every provider tokenises differently, so an exact count is impossible before
//! the call; this estimate follows OpenAI's published rule of thumb of about
//! four characters per token for English, plus a few tokens per message for the
//! chat template (role markers and separators). It errs high on very short
//! messages, which keeps `max_cost_usd` conservative.

/// Characters per token in the estimate.
pub const CHARS_PER_TOKEN: usize = 4;
/// Template overhead per message (role, start and end markers).
pub const TOKENS_PER_MESSAGE: u32 = 4;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING_TOKENS: u32 = 3;

/// Estimated prompt tokens of a chat request.
pub fn estimate_prompt_tokens<'a>(contents: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut total = REPLY_PRIMING_TOKENS;
    for c in contents {
        total = total.saturating_add(TOKENS_PER_MESSAGE);
        total = total.saturating_add(estimate_text_tokens(c));
    }
    total
}

/// Estimated tokens of one text (used too when a provider reports no usage).
pub fn estimate_text_tokens(text: &str) -> u32 {
    let chars = text.chars().count();
    u32::try_from(chars.div_ceil(CHARS_PER_TOKEN)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_grow_with_text_and_messages() {
        assert_eq!(estimate_text_tokens(""), 0);
        assert_eq!(estimate_text_tokens("abcd"), 1);
        assert_eq!(estimate_text_tokens("abcde"), 2);
        assert_eq!(estimate_prompt_tokens(["abcd"]), 3 + 4 + 1);
        assert_eq!(estimate_prompt_tokens(["abcd", "abcd"]), 3 + 2 * 5);
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert_eq!(estimate_text_tokens("éééé"), 1);
    }
}
