//! The framing both local journals write: `[u32 length][u64 FNV-1a of the
//! payload][JSON payload]` per record, so that a torn or corrupt tail (a
//! crash mid-write) is told from a whole record and ends the replay there.

use std::io;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Length and checksum before each payload.
const HEADER: usize = 12;

/// One record, ready for a single `write(2)`.
pub(super) fn encode(value: &impl Serialize) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(value)?;
    let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Every whole record from the start of `bytes`; a torn or corrupt one ends
/// the list (and is logged, naming the file at `path`).
pub(super) fn decode<T: DeserializeOwned>(mut bytes: &[u8], path: &Path) -> Vec<T> {
    let mut entries = Vec::new();
    while bytes.len() >= HEADER {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default()) as usize;
        let sum = u64::from_le_bytes(bytes[4..HEADER].try_into().unwrap_or_default());
        let Some(payload) = bytes.get(HEADER..HEADER + len) else {
            break;
        };
        if fnv1a(payload) != sum {
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(e) => entries.push(e),
            Err(_) => break,
        }
        bytes = &bytes[HEADER + len..];
    }
    if !bytes.is_empty() {
        tracing::warn!(
            path = %path.display(),
            bytes = bytes.len(),
            "a journal ends in a torn or corrupt record; replaying what precedes it"
        );
    }
    entries
}

/// 64-bit FNV-1a: enough to tell a torn record from a whole one.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
