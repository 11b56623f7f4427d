//! How vectors are stored in the log's blob columns: the embedding as
//! little-endian half floats (`decisions.features`), the bandit context as
//! little-endian f32 (`decisions.context`). Every reader of the log decodes
//! with these, so the layout is written down once.

/// An embedding as little-endian IEEE half floats: 2 bytes per component,
/// ample for unit-norm vectors (relative error < 1e-3) and half the log size.
pub fn pack_f16(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect()
}

/// Inverse of [`pack_f16`].
pub fn unpack_f16(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// The context vector as logged: little-endian f32, exact.
pub fn pack_f32(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Inverse of [`pack_f32`].
pub fn unpack_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip_is_close() {
        let v: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin() / 14.0).collect();
        let back = unpack_f16(&pack_f16(&v));
        assert_eq!(back.len(), v.len());
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn f32_round_trip_is_exact() {
        let v = [1.0f32, -0.5, f32::MIN_POSITIVE, 3.25e7];
        assert_eq!(unpack_f32(&pack_f32(&v)), v);
    }
}
