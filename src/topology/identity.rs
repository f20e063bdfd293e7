//! Recognising, after a crash, the outputs a replay already wrote.
//!
//! Under `at_least_once`, a task that crashed replays its input from its last commit and,
//! processing being deterministic, emits the same outputs again, byte for byte. Every output
//! is unique to the task that writes it (a bar to its key and window, a late or dead-letter
//! envelope to its source record, a repartitioned tick to its source offset), so its content
//! identifies it. At each commit a task stores, per output partition, the offset from which
//! later outputs can only be found ([`encode_positions`]); when the task is opened again,
//! the records written since are read back and fingerprinted, and the replay skips each of
//! its outputs whose fingerprint is among them, once per copy found. No record header is
//! needed (headers make fetches quadratic on the test broker's SQLite storage).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};

/// A 128-bit fingerprint of an output record: its topic, key and value.
pub fn fingerprint(topic: &str, key: &[u8], value: &[u8]) -> u128 {
    let half = |seed: u64| {
        let mut h = DefaultHasher::new();
        h.write_u64(seed);
        for part in [topic.as_bytes(), key, value] {
            h.write_usize(part.len());
            h.write(part);
        }
        h.finish()
    };
    (u128::from(half(0x7469_636b)) << 64) | u128::from(half(0x666c_6f77))
}

/// Outputs found in their topics after the last commit: a multiset of fingerprints.
#[derive(Debug, Default, Clone)]
pub struct Suppress {
    written: HashMap<u128, u32>,
}

impl Suppress {
    /// Remembers one copy of an output found in its topic.
    pub fn insert(&mut self, fingerprint: u128) {
        *self.written.entry(fingerprint).or_default() += 1;
    }

    /// Whether a copy of this output was found and not yet skipped; takes it.
    pub fn take(&mut self, fingerprint: u128) -> bool {
        match self.written.get_mut(&fingerprint) {
            Some(1) => {
                self.written.remove(&fingerprint);
                true
            }
            Some(n) => {
                *n -= 1;
                true
            }
            None => false,
        }
    }

    /// Distinct outputs still remembered.
    pub fn len(&self) -> usize {
        self.written.len()
    }

    /// Whether nothing is left to skip.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.written.clear();
    }
}

/// Output positions, `[u16 topic length][topic][i32 partition][i64 offset]` repeated: for
/// each output partition, the offset from which outputs written after the commit are found.
pub fn encode_positions(positions: &[(String, i32, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(positions.len() * 32);
    for (topic, partition, offset) in positions {
        let name = topic.as_bytes();
        let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&name[..usize::from(len)]);
        out.extend_from_slice(&partition.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out
}

/// Reads [`encode_positions`]' bytes; `None` if they are malformed.
pub fn decode_positions(mut bytes: &[u8]) -> Option<Vec<(String, i32, i64)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?));
        let topic = std::str::from_utf8(bytes.get(2..2 + len)?)
            .ok()?
            .to_string();
        let rest = bytes.get(2 + len..)?;
        let partition = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        let offset = i64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
        out.push((topic, partition, offset));
        bytes = &rest[12..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_positions(&bytes);
        }

        #[test]
        fn positions_round_trip(
            positions in proptest::collection::vec(("[a-z._-]{1,40}", any::<i32>(), any::<i64>()), 0..50)
        ) {
            let bytes = encode_positions(&positions);
            prop_assert_eq!(decode_positions(&bytes), Some(positions));
        }

        /// The parts are delimited: moving bytes from the key to the value changes the
        /// fingerprint.
        #[test]
        fn fingerprints_tell_parts_apart(key in proptest::collection::vec(any::<u8>(), 2..16), value in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut moved_value = key[1..].to_vec();
            moved_value.extend_from_slice(&value);
            prop_assert_ne!(fingerprint("t", &key, &value), fingerprint("t", &key[..1], &moved_value));
            prop_assert_eq!(fingerprint("t", &key, &value), fingerprint("t", &key, &value));
        }
    }

    #[test]
    fn each_copy_found_is_skipped_once() {
        let (a, b) = (
            fingerprint("bars", b"A", b"1"),
            fingerprint("bars", b"B", b"1"),
        );
        let mut s = Suppress::default();
        s.insert(a);
        s.insert(a);
        s.insert(b);
        assert!(s.take(a) && s.take(a), "two copies found, two skipped");
        assert!(!s.take(a), "a third is new");
        assert!(s.take(b) && s.is_empty());
        assert!(!s.take(fingerprint("bars", b"C", b"1")));
    }
}
