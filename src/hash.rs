//! Stable hashes (parameter ids, file fingerprints).

/// 64-bit FNV-1a: stable across runs and platforms (parameter ids, file fingerprints).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
