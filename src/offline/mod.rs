//! Offline tools behind the CLI: training and evaluating intent heads from
//! labelled JSONL, and distilling the fast-mode static table. They use the same
//! classifier code as the service, so what is measured here is what the service does.
//! `eval` replays routing-outcome datasets through the service's classifier and policy.

pub mod distill;
pub mod eval;
pub mod evaluate;
pub mod intents;
pub mod logset;
pub mod ope;
pub mod policy_cli;
pub mod replay;
pub mod report;
pub mod train;
