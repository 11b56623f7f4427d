//! Offline tools behind the CLI: training and evaluating intent heads from
//! labelled JSONL. They use the same classifier code as the service, so what
//! is measured here is what the service does.

pub mod intents;
