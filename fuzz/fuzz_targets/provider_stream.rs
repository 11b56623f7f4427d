//! A provider's event stream: the first byte picks the protocol (OpenAI,
//! Anthropic, Gemini), the second how the body is cut into network chunks
//! (1 to 64 bytes, so events and lines split anywhere), the rest is the SSE
//! body the adapter reads.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use switchyard::config::ProviderKind;

const KINDS: [ProviderKind; 3] = [
    ProviderKind::OpenAi,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
];

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(switchyard_fuzz::runtime);

fuzz_target!(|data: &[u8]| {
    let [which, cut, body @ ..] = data else {
        return;
    };
    let chunks = body
        .chunks(usize::from(cut % 64) + 1)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let kind = KINDS[usize::from(*which) % 3];
    RUNTIME.block_on(switchyard::dispatch::read::stream(kind, chunks));
});
