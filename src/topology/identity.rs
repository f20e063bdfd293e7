//! Output identities: how a replay after a crash recognises the outputs it already wrote.
//!
//! Under `at_least_once`, a task that crashed replays its input from its last commit and,
//! processing being deterministic, emits the same outputs again in the same order. Every
//! output that a record causes (bars, late and dead-letter envelopes, repartitioned ticks)
//! carries a header [`HEADER`] naming the application, the task, the input offset and the
//! output's index among that input's outputs. At each commit a task stores, per output
//! partition, the offset from which later outputs can only be found ([`encode_positions`]);
//! when the task is opened again, the outputs written since are read back, and those with
//! this task's identity are suppressed as the replay reaches them.

use std::collections::HashSet;

/// The Kafka header that carries an output's identity.
pub const HEADER: &str = "tickflow.id";

/// Version byte of the identity encoding.
const VERSION: u8 = 1;

/// Identity of one output record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputId {
    /// FNV-1a hash of the application id (several applications may share an output topic).
    pub app: u32,
    /// The task's stage: `F` forwarding, `W` windowing the source, `R` windowing the
    /// repartition topic.
    pub stage: u8,
    /// The task's input partition.
    pub partition: i32,
    /// Offset of the input record that caused the output.
    pub offset: i64,
    /// The output's index among the outputs of that input record.
    pub index: u32,
}

impl OutputId {
    /// Encoded length: version, app, stage, partition, offset, index.
    pub const LEN: usize = 1 + 4 + 1 + 4 + 8 + 4;

    /// `[version][app u32][stage u8][partition i32][offset i64][index u32]`, big-endian.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = VERSION;
        out[1..5].copy_from_slice(&self.app.to_be_bytes());
        out[5] = self.stage;
        out[6..10].copy_from_slice(&self.partition.to_be_bytes());
        out[10..18].copy_from_slice(&self.offset.to_be_bytes());
        out[18..22].copy_from_slice(&self.index.to_be_bytes());
        out
    }

    /// Reads an identity; `None` for anything else (another version, another length).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN || bytes[0] != VERSION {
            return None;
        }
        Some(Self {
            app: u32::from_be_bytes(bytes[1..5].try_into().ok()?),
            stage: bytes[5],
            partition: i32::from_be_bytes(bytes[6..10].try_into().ok()?),
            offset: i64::from_be_bytes(bytes[10..18].try_into().ok()?),
            index: u32::from_be_bytes(bytes[18..22].try_into().ok()?),
        })
    }
}

/// The 32-bit FNV-1a hash of an application id.
pub fn app_hash(application: &str) -> u32 {
    application.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Outputs a task already wrote after its last commit: its replay skips them.
#[derive(Debug, Default, Clone)]
pub struct Suppress {
    written: HashSet<(i64, u32)>,
}

impl Suppress {
    /// Remembers that the output (input `offset`, `index`) is in its topic.
    pub fn insert(&mut self, offset: i64, index: u32) {
        self.written.insert((offset, index));
    }

    /// Whether the output (input `offset`, `index`) was written before; each is skipped once.
    pub fn take(&mut self, offset: i64, index: u32) -> bool {
        !self.written.is_empty() && self.written.remove(&(offset, index))
    }

    /// Outputs still expected from the replay.
    pub fn len(&self) -> usize {
        self.written.len()
    }

    /// Whether nothing is left to skip.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
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
        let topic = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?.to_string();
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
        fn identities_round_trip(app: u32, stage: u8, partition: i32, offset: i64, index: u32) {
            let id = OutputId { app, stage, partition, offset, index };
            prop_assert_eq!(OutputId::decode(&id.encode()), Some(id));
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = OutputId::decode(&bytes);
            let _ = decode_positions(&bytes);
        }

        #[test]
        fn positions_round_trip(
            positions in proptest::collection::vec(("[a-z._-]{1,40}", any::<i32>(), any::<i64>()), 0..50)
        ) {
            let bytes = encode_positions(&positions);
            prop_assert_eq!(decode_positions(&bytes), Some(positions));
        }
    }

    #[test]
    fn a_suppressed_output_is_skipped_once() {
        let mut s = Suppress::default();
        s.insert(10, 0);
        s.insert(10, 1);
        assert!(s.take(10, 1));
        assert!(!s.take(10, 1), "skipped once only");
        assert!(!s.take(11, 0));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn application_hashes_differ() {
        assert_ne!(app_hash("ohlc-vwap"), app_hash("venue-vwap"));
        assert_eq!(app_hash(""), 0x811c_9dc5);
    }
}
