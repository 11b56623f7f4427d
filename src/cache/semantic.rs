//! The semantic index: per scope (everything a request's answer depends on
//! except its question), the questions answered in it as MiniLM embeddings,
//! each with the exact key its answer is kept under. A new question takes
//! the answer of the most similar one at or above the threshold.
//!
//! Search is exact, one dot product per question of the scope (the
//! embeddings are L2-normalised, so the dot product is the cosine). Measured
//! by `cargo bench --bench cache_memory` (docs/cache.md): 0.04 ms in a scope
//! of 1,000 questions, 2.7 ms at 10,000, 30 ms at 100,000, where reading the
//! vectors from memory dominates; hence the default bound of 10,000.

use std::sync::{Arc, Mutex};

use super::Key;
use crate::kernels::simd::dot;

struct Question {
    embedding: Box<[f32]>,
    key: Key,
}

type Questions = Arc<Mutex<Vec<Question>>>;

pub(super) struct Semantic {
    /// Weighed by the questions each scope holds, so the whole index holds
    /// at most `max` questions; a scope that grows past it loses its oldest.
    scopes: moka::sync::Cache<Key, Questions>,
    max: usize,
}

fn lock(q: &Questions) -> std::sync::MutexGuard<'_, Vec<Question>> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

impl Semantic {
    pub fn new(max_entries: u64) -> Semantic {
        Semantic {
            scopes: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .weigher(|_: &Key, q: &Questions| u32::try_from(lock(q).len()).unwrap_or(u32::MAX))
                .build(),
            max: usize::try_from(max_entries).unwrap_or(usize::MAX),
        }
    }

    /// The key of the most similar question in `scope`, and its similarity,
    /// when it reaches `threshold`.
    pub fn nearest(&self, scope: &Key, embedding: &[f32], threshold: f32) -> Option<(Key, f32)> {
        let questions = self.scopes.get(scope)?;
        let questions = lock(&questions);
        questions
            .iter()
            .map(|q| (q.key, dot(&q.embedding, embedding)))
            .filter(|(_, s)| *s >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    pub fn add(&self, scope: Key, embedding: Vec<f32>, key: Key) {
        let questions = self.scopes.get_with(scope, Questions::default);
        {
            let mut q = lock(&questions);
            q.retain(|q| q.key != key);
            if q.len() >= self.max {
                q.remove(0);
            }
            q.push(Question {
                embedding: embedding.into_boxed_slice(),
                key,
            });
        }
        // Inserted again so that moka weighs the scope as it is now.
        self.scopes.insert(scope, questions);
    }

    /// Drops a question whose answer has left the cache.
    pub fn forget(&self, scope: &Key, key: &Key) {
        if let Some(questions) = self.scopes.get(scope) {
            lock(&questions).retain(|q| q.key != *key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn the_most_similar_question_at_the_threshold_answers_within_its_scope() {
        let s = Semantic::new(10);
        let (scope, other) = ([1u8; 32], [2u8; 32]);
        s.add(scope, unit(&[1.0, 0.0, 0.0]), [10; 32]);
        s.add(scope, unit(&[1.0, 1.0, 0.0]), [11; 32]);
        s.add(other, unit(&[1.0, 0.1, 0.0]), [12; 32]);
        let q = unit(&[1.0, 0.1, 0.0]);
        let (key, sim) = s.nearest(&scope, &q, 0.9).unwrap();
        assert_eq!(key, [10; 32]);
        assert!(sim > 0.99 && sim < 1.0, "{sim}");
        assert_eq!(s.nearest(&scope, &unit(&[0.0, 0.0, 1.0]), 0.5), None);
        assert_eq!(s.nearest(&[3; 32], &q, 0.0), None, "no such scope");
        s.forget(&scope, &[10; 32]);
        assert_eq!(s.nearest(&scope, &q, 0.9), None);
        assert_eq!(s.nearest(&scope, &q, 0.7).unwrap().0, [11; 32]);
    }

    #[test]
    fn a_scope_past_the_bound_loses_its_oldest_question() {
        let s = Semantic::new(2);
        let scope = [1u8; 32];
        for (i, v) in [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]].iter().enumerate() {
            s.add(scope, unit(v), [i as u8; 32]);
        }
        assert_eq!(s.nearest(&scope, &unit(&[1.0, 0.0]), 0.99), None);
        assert_eq!(
            s.nearest(&scope, &unit(&[0.0, 1.0]), 0.99).unwrap().0,
            [1; 32]
        );
    }
}
