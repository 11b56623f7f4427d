//! The one integration-test binary: every suite is a module, so candle and the
//! server link once. Shared harness code lives in `tests/common`.

#[path = "../common/mod.rs"]
mod common;

mod affinity;
mod auth;
mod cache;
mod classify;
mod classify_service;
mod console_api;
mod cost;
mod deployments;
mod dispatch_conformance;
mod durability;
mod eval;
mod eval_prior;
mod failure_policy;
mod grpc;
mod hardening;
mod http;
mod http_ops;
mod learning;
mod limits;
mod load_and_stop;
mod otlp;
mod overload;
mod promotion;
mod replay;
mod replicas;
mod roundtrip;
mod rules;
mod settings;
mod static_embed;
mod store_conformance;
mod tools;
mod vision;
