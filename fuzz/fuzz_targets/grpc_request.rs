//! A protobuf request to the Router service: the first byte picks the
//! message (Route, Complete, Feedback), the rest is decoded as it and read
//! into the engine's input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use switchyard::pb;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(r) = pb::RouteRequest::decode(bytes) {
                switchyard_fuzz::check_route(&switchyard::server::route_input(Some(r)));
            }
        }
        1 => {
            if let Ok(r) = pb::CompleteRequest::decode(bytes)
                && let Ok(input) = switchyard::server::complete_input(r)
            {
                switchyard_fuzz::check_complete(&input);
            }
        }
        _ => {
            let _ = pb::FeedbackRequest::decode(bytes);
        }
    }
});
