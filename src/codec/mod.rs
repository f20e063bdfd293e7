//! Encoding and decoding of records: Avro in the Confluent wire format (magic byte 0, a 4-byte
//! big-endian schema id, then the Avro datum), the schemas tickflow ships, a registry client, and
//! the built-in Confluent-compatible schema registry.

mod avro;
mod client;
mod model;
pub mod registry;

pub use avro::{Decoder, Encoder, RecordKind, split_header};
pub use client::RegistryClient;
pub use model::{Bar, DeadLetter, Tick};

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
    Avro(String),
    /// The writer schema cannot be read as the record type tickflow expects.
    #[error("schema id {id} is incompatible with {record}: {message}")]
    Incompatible {
        id: u32,
        record: &'static str,
        message: String,
    },
    /// The schema registry failed or refused the request (external).
    #[error("schema registry at {url}: {message}")]
    Registry { url: String, message: String },
}

impl From<apache_avro::Error> for CodecError {
    fn from(e: apache_avro::Error) -> Self {
        CodecError::Avro(e.to_string())
    }
}
