//! An OpenAI chat-completions body, read by the HTTP front and checked as the
//! engine checks it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let headers = axum::http::HeaderMap::new();
    if let Ok(input) = switchyard::http::codec::read_chat(data, &headers) {
        switchyard_fuzz::check_complete(&input);
    }
});
