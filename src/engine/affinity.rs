//! Conversation affinity: the turns of one conversation stay on the model
//! its first turn was given, so provider-side prompt caches stay warm and a
//! conversation does not change voice mid-way.
//!
//! A conversation is named by the client (`x-session-id`, gRPC
//! `session_id`) or, with `routing.affinity = "derived"`, by its first
//! messages (the instructions and the first user turn, which every later
//! turn repeats). Keys are scoped by tenant. A derived key is looked up only
//! for a conversation that already has an assistant turn, so identical
//! one-shot prompts (evaluation runs, retries of a first turn) are still
//! routed, and explored, afresh.
//!
//! Entries expire `routing.affinity_ttl_secs` after a conversation's last
//! turn, and the table is bounded: it is a cache (moka), not a record.

use std::hash::{Hash, Hasher};

use moka::sync::Cache;

use crate::config::{Affinity, RoutingConfig};
use crate::dispatch::ChatMessage;

/// At most this many conversations are remembered; the least recently
/// used go first.
const CAPACITY: u64 = 100_000;

pub struct Conversations {
    mode: Affinity,
    models: Cache<Key, usize>,
}

/// A conversation's key and whether to look it up (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    key: Key,
    pub lookup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Session(String, String),
    /// A hash of the tenant and the conversation's first messages.
    Derived(u64),
}

impl Conversations {
    pub fn new(config: &RoutingConfig) -> Self {
        Conversations {
            mode: config.affinity,
            models: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(config.affinity_ttl)
                .build(),
        }
    }

    /// The conversation this request is a turn of, if affinity applies.
    pub fn turn(
        &self,
        tenant: &str,
        session: Option<&str>,
        messages: &[ChatMessage],
    ) -> Option<Turn> {
        match (self.mode, session) {
            (Affinity::Off, _) => None,
            (_, Some(s)) if !s.is_empty() => Some(Turn {
                key: Key::Session(tenant.to_owned(), s.to_owned()),
                lookup: true,
            }),
            (Affinity::Derived, _) => derived(tenant, messages),
            _ => None,
        }
    }

    /// The model the conversation was given, if it is remembered.
    pub fn model(&self, turn: &Turn) -> Option<usize> {
        turn.lookup.then(|| self.models.get(&turn.key)).flatten()
    }

    /// Remembers (or refreshes) the conversation's model.
    pub fn keep(&self, turn: Turn, model: usize) {
        self.models.insert(turn.key, model);
    }
}

fn derived(tenant: &str, messages: &[ChatMessage]) -> Option<Turn> {
    let first_user = messages.iter().find(|m| m.role == "user")?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tenant.hash(&mut h);
    for m in messages
        .iter()
        .take_while(|m| matches!(m.role.as_str(), "system" | "developer"))
        .chain(std::iter::once(first_user))
    {
        m.role.hash(&mut h);
        m.content.hash(&mut h);
    }
    Some(Turn {
        key: Key::Derived(h.finish()),
        lookup: messages.iter().any(|m| m.role == "assistant"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn conversations(mode: Affinity) -> Conversations {
        let mut config = crate::config::Config::embedded().routing;
        config.affinity = mode;
        config.affinity_ttl = Duration::from_secs(60);
        Conversations::new(&config)
    }

    #[test]
    fn a_derived_key_follows_the_conversation_and_is_read_from_its_second_turn() {
        let c = conversations(Affinity::Derived);
        let first = vec![
            ChatMessage::text("system", "be brief"),
            ChatMessage::text("user", "hi"),
        ];
        let t1 = c.turn("t", None, &first).unwrap();
        assert!(!t1.lookup);
        c.keep(t1.clone(), 3);
        let mut later = first.clone();
        later.push(ChatMessage::text("assistant", "hello"));
        later.push(ChatMessage::text("user", "more"));
        let t2 = c.turn("t", None, &later).unwrap();
        assert_eq!(t2.key, t1.key);
        assert_eq!(c.model(&t2), Some(3));
        // Another tenant's identical conversation is another conversation.
        assert_eq!(c.model(&c.turn("u", None, &later).unwrap()), None);
    }

    #[test]
    fn sessions_need_an_id_unless_derived_and_off_is_off() {
        let m = vec![ChatMessage::text("user", "hi")];
        assert!(
            conversations(Affinity::Session)
                .turn("t", None, &m)
                .is_none()
        );
        assert!(
            conversations(Affinity::Session)
                .turn("t", Some("s"), &m)
                .is_some()
        );
        assert!(
            conversations(Affinity::Off)
                .turn("t", Some("s"), &m)
                .is_none()
        );
    }
}
