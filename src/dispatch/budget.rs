//! The retry budget: retries may add at most `ratio` extra attempts per
//! request over time, so a provider in trouble sees at most (1 + ratio)× its
//! normal traffic from us instead of (1 + max_retries)×.
//!
//! A token bucket in the style of Finagle's RetryBudget: every request
//! deposits `ratio` tokens, every retry withdraws one. A small reserve
//! (`min_reserve`) lets a quiet service still retry its rare failures.

use std::sync::Mutex;

#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    cap: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    balance: f64,
    requests: u64,
    retries: u64,
    refused: u64,
}

/// What the budget has seen, for health snapshots and metrics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BudgetSnapshot {
    pub ratio: f64,
    pub balance: f64,
    pub requests: u64,
    pub retries: u64,
    /// Retries not made because the budget was spent.
    pub refused: u64,
}

impl RetryBudget {
    /// `ratio` in [0, 1]; `min_reserve` retries are allowed before any
    /// traffic has paid for them, and the balance never exceeds it plus
    /// what 100 requests deposit (so a long quiet spell cannot bank a burst).
    pub fn new(ratio: f64, min_reserve: u32) -> Self {
        let reserve = f64::from(min_reserve);
        RetryBudget {
            ratio,
            cap: reserve + ratio * 100.0,
            state: Mutex::new(State {
                balance: reserve,
                requests: 0,
                retries: 0,
                refused: 0,
            }),
        }
    }

    /// Called once per request.
    pub fn deposit(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests += 1;
        s.balance = (s.balance + self.ratio).min(self.cap);
    }

    /// Takes a retry from the budget; false when it is spent.
    pub fn try_withdraw(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.balance >= 1.0 {
            s.balance -= 1.0;
            s.retries += 1;
            true
        } else {
            s.refused += 1;
            false
        }
    }

    pub fn snapshot(&self) -> BudgetSnapshot {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        BudgetSnapshot {
            ratio: self.ratio,
            balance: s.balance,
            requests: s.requests,
            retries: s.retries,
            refused: s.refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_the_ratio_of_traffic() {
        let b = RetryBudget::new(0.2, 5);
        let mut granted = 0;
        for _ in 0..1000 {
            b.deposit();
            // Every request fails and wants three retries.
            for _ in 0..3 {
                granted += u32::from(b.try_withdraw());
            }
        }
        // 5 in reserve + 20% of 1000.
        assert!((200..=205).contains(&granted), "{granted}");
        let s = b.snapshot();
        assert_eq!(s.retries, u64::from(granted));
        assert_eq!(s.refused, 3000 - u64::from(granted));
    }
}
