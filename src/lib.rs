//! Switchyard: a learned LLM router.
//!
//! A request flows through the modules in this order:
//! - [`server`] accepts gRPC calls and [`http`] OpenAI-compatible HTTP calls,
//!   and both convert wire types (thin);
//! - [`engine`] validates, asks the policy for a model, logs the decision and
//!   dispatches; it is the core both fronts share;
//! - [`policy`] applies hard constraints and chooses (pure: no I/O, no clock);
//! - [`dispatch`] calls the chosen model's provider, one module per wire protocol;
//! - [`store`] durably logs decisions, attempts and feedback in SQLite.
//!
//! [`config`] turns TOML into validated values and [`catalog`] into the runtime
//! model list; [`metrics`] is the Prometheus registry every front shares; [`mock`] is an OpenAI-compatible provider for tests and demos.

pub mod app;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod classify;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod http;
pub mod kernels;
pub mod learn;
pub mod metrics;
pub mod mock;
pub mod modelfetch;
pub mod offline;
pub mod policy;
pub mod redis_link;
pub mod rules;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tokens;

/// Types generated from `proto/switchyard/v1/router.proto`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("switchyard.v1");

    /// The encoded descriptors served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/switchyard_descriptor.bin"));
}
