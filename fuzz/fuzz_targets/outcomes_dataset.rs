//! A routing-outcomes dataset: its models file, a NUL byte, then its JSON
//! lines, read as `train`, `eval` and `replay` read them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (models, rows) = text.split_once('\0').unwrap_or((text, ""));
    if let Ok(d) = switchyard::offline::replay::Dataset::parse(models, rows) {
        let _ = switchyard::offline::eval::data::restrict(d, None);
    }
});
