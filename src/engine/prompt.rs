//! Which text of a conversation the classifier reads: the last user turn
//! with text (or the last non-empty message when no user turn has any). It
//! says what is asked now, and it bounds the cost of long conversations.

use crate::dispatch::ChatMessage;

/// The last user turn with text, else the last message with text.
pub fn text_to_read(messages: &[ChatMessage]) -> &str {
    let has_text = |m: &&ChatMessage| !m.content.trim().is_empty();
    messages
        .iter()
        .rev()
        .filter(has_text)
        .find(|m| m.role == "user")
        .or_else(|| messages.iter().rev().find(has_text))
        .map(|m| m.content.as_str())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, content: &str) -> ChatMessage {
        ChatMessage::text(role, content)
    }

    #[test]
    fn reads_the_last_user_turn_with_text() {
        let msgs = [
            m("system", "be brief"),
            m("user", "first"),
            m("assistant", "ok"),
            m("user", "second"),
            m("user", " "),
        ];
        assert_eq!(text_to_read(&msgs), "second");
        assert_eq!(text_to_read(&[m("system", "only system")]), "only system");
    }
}
