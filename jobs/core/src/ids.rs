//! Deterministic ids: content hashes for event ids, batch ids and run ids.

use xxhash_rust::xxh3::{Xxh3, xxh3_128};

/// 128-bit xxh3 of `bytes` as 32 lower-case hex digits.
pub fn hash_hex(bytes: &[u8]) -> String {
    let mut out = [0u8; 32];
    String::from(hash_hex_into(bytes, &mut out))
}

/// 128-bit xxh3 of `bytes` as 32 lower-case hex digits, written into `out`
/// without allocating (the forward stage computes one per NDJSON record).
pub fn hash_hex_into<'a>(bytes: &[u8], out: &'a mut [u8; 32]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = xxh3_128(bytes);
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((h >> (124 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(out).expect("hex digits are ASCII")
}

/// Incremental id builder: feed parts, get a 128-bit hex id. Parts are
/// length-prefixed so that ("ab", "c") and ("a", "bc") differ.
#[derive(Default, Clone)]
pub struct IdHasher(Xxh3);

impl IdHasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        IdHasher(Xxh3::new())
    }

    /// Adds one part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// The id so far, 32 hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0.digest128())
    }
}

impl std::fmt::Debug for IdHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdHasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_delimited() {
        let a = IdHasher::new().part(b"ab").part(b"c").hex();
        let b = IdHasher::new().part(b"a").part(b"bc").hex();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(hash_hex(b"x"), hash_hex(b"x"));
        assert_eq!(hash_hex(b"x"), format!("{:032x}", xxh3_128(b"x")));
    }
}
