//! Encoding and decoding of records: Avro in the Confluent wire format (magic byte 0, a 4-byte
//! big-endian schema id, then the Avro datum), the schemas tickflow ships, a registry client, and
//! the built-in Confluent-compatible schema registry.

mod avro;
mod client;
mod model;
pub mod registry;

pub use avro::{Decoder, Encoder, RecordKind, split_header};
pub use client::{RegistryClient, RegistryFailure};
pub use model::{Bar, DeadLetter, ENVELOPE_COPY_LIMIT, Reason, SourceRecord, Tick};

/// Key of a watermark control record: a record in a tick topic that tells the engine that no
/// tick older than its event time will follow in that partition, so windows can close even
/// when the input goes quiet. Its value is the event time, 8 bytes big-endian (microseconds).
/// Being part of the log, it makes window closing a deterministic function of the input.
pub const WATERMARK_KEY: &[u8] = b"\0tickflow.watermark";

/// The value of a watermark record for event time `t`.
pub fn watermark_value(t: i64) -> [u8; 8] {
    t.to_be_bytes()
}

/// The event time of a watermark record, or `None` if the record is not one.
pub fn watermark_of(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<i64> {
    if key != Some(WATERMARK_KEY) {
        return None;
    }
    Some(i64::from_be_bytes(value?.try_into().ok()?))
}

/// First two bytes of a repartition record's value: `T`, then the envelope version.
const ORIGIN_MAGIC: [u8; 2] = [b'T', 1];

/// Bytes of the envelope before the original value.
const ORIGIN_BYTES: usize = 22;

/// Where a record of an internal repartition topic came from, and how far its source partition
/// had got. The consuming task drops records it has already counted (a replay of the
/// forwarding task after a crash) by `offset`, and closes windows by the smallest
/// `stream_time` over all source partitions, so results never depend on how the source
/// partitions interleave in the repartition topic.
///
/// It travels in front of the original value (magic `T`, version 1, partition, offset and
/// stream time big-endian) rather than in a record header: Tansu's SQLite storage looks up
/// headers record by record without an index, which makes fetching a topic with headers
/// quadratic in its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Partition of the source topic.
    pub partition: i32,
    /// Offset in that partition; negative for a watermark, which carries no tick.
    pub offset: i64,
    /// Stream time of the source partition once this record was read.
    pub stream_time: i64,
}

impl Origin {
    /// Writes the envelope and then `value` into `out` (cleared first).
    pub fn wrap_into(&self, value: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(ORIGIN_BYTES + value.len());
        out.extend_from_slice(&ORIGIN_MAGIC);
        out.extend_from_slice(&self.partition.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.stream_time.to_be_bytes());
        out.extend_from_slice(value);
    }

    /// Splits a repartition record's value into its origin and the original value.
    pub fn unwrap(value: &[u8]) -> Option<(Self, &[u8])> {
        let (head, rest) = value.split_at_checked(ORIGIN_BYTES)?;
        if head[..2] != ORIGIN_MAGIC {
            return None;
        }
        let origin = Self {
            partition: i32::from_be_bytes(head[2..6].try_into().ok()?),
            offset: i64::from_be_bytes(head[6..14].try_into().ok()?),
            stream_time: i64::from_be_bytes(head[14..22].try_into().ok()?),
        };
        Some((origin, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_envelope_round_trips_and_rejects_other_bytes() {
        let origin = Origin {
            partition: 7,
            offset: -1,
            stream_time: i64::MIN,
        };
        let mut out = vec![9];
        origin.wrap_into(b"\0abc", &mut out);
        assert_eq!(Origin::unwrap(&out), Some((origin, &b"\0abc"[..])));
        assert_eq!(Origin::unwrap(&out[..21]), None);
        assert_eq!(
            Origin::unwrap(b"\0\0\0\0\x01 a Confluent-framed value"),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn origins_round_trip(partition: i32, offset: i64, stream_time: i64, value: Vec<u8>) {
            let origin = Origin { partition, offset, stream_time };
            let mut out = Vec::new();
            origin.wrap_into(&value, &mut out);
            proptest::prop_assert_eq!(Origin::unwrap(&out), Some((origin, &value[..])));
        }

        /// Bytes from a topic never make the envelope, framing or watermark readers panic.
        #[test]
        fn any_bytes_are_read_without_panic(bytes: Vec<u8>, key: Option<Vec<u8>>) {
            let _ = Origin::unwrap(&bytes);
            let _ = split_header(&bytes);
            let _ = watermark_of(key.as_deref(), Some(&bytes));
            let _ = watermark_of(Some(WATERMARK_KEY), Some(&bytes));
        }

        #[test]
        fn watermarks_round_trip(t: i64) {
            proptest::prop_assert_eq!(watermark_of(Some(WATERMARK_KEY), Some(&watermark_value(t))), Some(t));
        }

        /// A Confluent-framed value gives back its schema id and body.
        #[test]
        fn framing_round_trips(id: u32, body: Vec<u8>) {
            let mut framed = vec![0u8];
            framed.extend_from_slice(&id.to_be_bytes());
            framed.extend_from_slice(&body);
            let (got, rest) = split_header(&framed).unwrap();
            proptest::prop_assert_eq!((got, rest), (id, &body[..]));
        }
    }
}

/// Errors of encoding, decoding and talking to the schema registry.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes do not start with the Confluent magic byte and a schema id (bad data).
    #[error("not in the Confluent wire format: {0}")]
    NotFramed(String),
    /// The schema id is not known to this decoder yet; fetch it from the registry.
    #[error("schema id {0} is not known")]
    UnknownSchemaId(u32),
    /// The registry has no schema with this id (bad data).
    #[error("schema id {id} is not in the registry: {message}")]
    SchemaNotFound { id: u32, message: String },
    /// The Avro datum does not match its schema (bad data), or a value does not fit the schema
    /// (our bug).
    #[error("avro: {0}")]
    Avro(#[from] apache_avro::Error),
    /// The writer schema cannot be read as the record type tickflow expects.
    #[error("schema id {id} is incompatible with {record}: {message}")]
    Incompatible {
        id: u32,
        record: &'static str,
        message: String,
    },
    /// The schema registry failed or refused the request (external).
    #[error("schema registry at {url}: {source}")]
    Registry {
        url: String,
        source: RegistryFailure,
    },
    /// The schema registry did not answer or answered with a transient error (timeouts, 5xx,
    /// 429) for longer than `registry.retry_for` (external; never the record's fault).
    #[error("schema registry at {url} unavailable for {waited:?}: {source}")]
    RegistryUnavailable {
        url: String,
        waited: std::time::Duration,
        source: RegistryFailure,
    },
}

impl crate::error::Classified for CodecError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            CodecError::Avro(_) => crate::error::ErrorClass::Internal,
            // The registry, or records written by something else than tickflow.
            _ => crate::error::ErrorClass::External,
        }
    }
}
