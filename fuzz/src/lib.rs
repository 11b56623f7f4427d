//! What the fuzz targets share: the engine's own checks, applied to an input
//! a front has read, as the engine applies them before routing.

use switchyard::engine::validate;
use switchyard::engine::{CompleteInput, RouteInput};

/// The largest prompt the default configuration admits.
const MAX_PROMPT_BYTES: usize = 1 << 20;

/// Runs every check of a Route request that needs no catalog.
pub fn check_route(r: &RouteInput) {
    let _ = validate::messages(&r.messages, MAX_PROMPT_BYTES);
    let _ = validate::tenant(&r.tenant);
    let _ = validate::metadata(&r.metadata);
    let _ = validate::non_negative("cost_weight", r.cost_weight);
    let _ = validate::non_negative("max_cost_usd", r.max_cost_usd);
}

/// Runs every check of a Complete request that needs no catalog.
pub fn check_complete(c: &CompleteInput) {
    check_route(&c.route);
    let _ = validate::positive_u32("max_tokens", c.max_tokens);
    let _ = validate::temperature(c.temperature);
    let _ = validate::positive_u32("deadline_ms", c.deadline_ms);
    let _ = validate::stop(&c.stop);
    let _ = validate::sampling(&c.sampling);
    let _ = validate::tools(&c.tools);
    let _ = validate::response_format(c.response_format.as_ref());
}

/// A current-thread runtime for the targets that read streams.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
}
