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
