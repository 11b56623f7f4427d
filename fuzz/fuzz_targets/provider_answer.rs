//! A provider's whole answer: the first byte picks the protocol (OpenAI,
//! Anthropic, Gemini), the rest is the body the adapter reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::config::ProviderKind;

const KINDS: [ProviderKind; 3] = [
    ProviderKind::OpenAi,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let _ = switchyard::dispatch::read::answer(KINDS[usize::from(which) % 3], body);
});
