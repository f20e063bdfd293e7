//! The lake's storage format, shared by the stage that writes it (`sink::lake`) and those that
//! read it (`catalog`, `query`): the object store ([`store`]), how files and partitions are
//! named ([`layout`]), the Avro container files ([`file`], with millisecond timestamps from
//! [`millis`]) and their Parquet form ([`columnar`]), the offsets a file holds ([`offsets`]),
//! and reading a file's metadata and records back ([`file_info`], [`file_records`]).
//! Nothing here knows Kafka or the catalog.

pub mod columnar;
pub mod file;
pub mod layout;
pub mod millis;
pub mod offsets;
pub mod store;

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::types::Value;
use bytes::Bytes;

use self::offsets::OffsetRanges;
use crate::config::lake::LakeFormat;
use crate::error::BoxError;

/// Metadata key of the offsets a file holds (`a-b,c-d`).
pub const OFFSETS_KEY: &str = "tickflow.offsets";
/// Metadata key of the registry id of the file's schema.
pub const SCHEMA_ID_KEY: &str = "tickflow.schema_id";
/// Metadata key of the topic a file's records come from.
pub const TOPIC_KEY: &str = "tickflow.topic";
/// Metadata key of a Parquet file's Avro schema (the key Avro container files use).
pub const AVRO_SCHEMA_KEY: &str = "avro.schema";

/// Errors of reading and writing the lake.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// Avro encoding failed.
    #[error("avro: {0}")]
    Avro(#[from] apache_avro::Error),
    /// Converting between Avro and Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[source] BoxError),
    /// The object store failed.
    #[error("lake store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// A lake's directory cannot be created or resolved.
    #[error("lake store: {url}: {source}")]
    Dir {
        /// The lake's URL.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// A lake's files cannot be listed.
    #[error("lake store: {root}: cannot list: {source}")]
    List {
        /// The lake's root.
        root: String,
        /// Why.
        source: object_store::Error,
    },
    /// The lake cannot be used as configured (an unknown URL scheme, a missing object).
    #[error("lake store: {0}")]
    Store(String),
    /// A lake file cannot be read.
    #[error("lake file {path}: {message}")]
    File {
        /// The file, under the lake root.
        path: String,
        /// What is wrong.
        message: String,
        /// The reader's error, when a library found it.
        source: Option<BoxError>,
    },
    /// A file with the same name and other content exists: another writer landed records
    /// of this partition.
    #[error("{0} exists with other content: is another sink writing this lake?")]
    Conflict(String),
}

impl crate::error::Classified for LakeError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            LakeError::Avro(_) | LakeError::Parquet(_) => crate::error::ErrorClass::Internal,
            // The object store, or files someone else wrote.
            _ => crate::error::ErrorClass::External,
        }
    }
}

impl LakeError {
    /// A lake file that is not what tickflow writes, as tickflow found.
    fn bad_file(path: &str, message: String) -> Self {
        Self::File {
            path: path.into(),
            message,
            source: None,
        }
    }

    /// A lake file a library could not read.
    fn unreadable_file(path: &str, e: impl Into<BoxError>) -> Self {
        let e = e.into();
        Self::File {
            path: path.into(),
            message: e.to_string(),
            source: Some(e),
        }
    }
}

/// Decodes one binary Avro datum written with `schema`.
pub fn decode_datum(schema: &Schema, mut datum: &[u8]) -> Result<Value, apache_avro::Error> {
    apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()?
        .read_value(&mut datum)
}

/// What a lake file says about itself, in its metadata.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Offsets of its records, in record order.
    pub offsets: OffsetRanges,
    /// Registry id of its records' schema.
    pub schema_id: u32,
    /// Its records' Avro schema.
    pub schema: Schema,
}

/// The metadata of the lake file at `path` (Avro or Parquet, by the name's extension).
pub fn file_info(path: &str, bytes: &Bytes) -> Result<FileInfo, LakeError> {
    let bad = |message: String| LakeError::bad_file(path, message);
    let (pairs, schema) = match LakeFormat::of_path(path) {
        Some(LakeFormat::Avro) => {
            let reader = apache_avro::Reader::new(&bytes[..])
                .map_err(|e| LakeError::unreadable_file(path, e))?;
            let pairs: HashMap<String, String> = reader
                .user_metadata()
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            (pairs, reader.writer_schema().clone())
        }
        Some(LakeFormat::Parquet) => {
            let pairs = columnar::metadata(bytes)?;
            let text = pairs
                .get(AVRO_SCHEMA_KEY)
                .ok_or_else(|| bad(format!("no {AVRO_SCHEMA_KEY} metadata")))?;
            let schema =
                Schema::parse_str(text).map_err(|e| LakeError::unreadable_file(path, e))?;
            (pairs, schema)
        }
        None => return Err(bad("not a .avro or .parquet file".into())),
    };
    let field = |key: &str| {
        pairs
            .get(key)
            .ok_or_else(|| bad(format!("no {key} metadata")))
    };
    Ok(FileInfo {
        offsets: OffsetRanges::parse(field(OFFSETS_KEY)?)
            .ok_or_else(|| bad(format!("unreadable {OFFSETS_KEY}")))?,
        schema_id: field(SCHEMA_ID_KEY)?
            .parse()
            .map_err(|_| bad(format!("unreadable {SCHEMA_ID_KEY}")))?,
        schema,
    })
}

/// The metadata and the records of the lake file at `path`; as many records as offsets.
pub fn file_records(path: &str, bytes: &Bytes) -> Result<(FileInfo, Vec<Value>), LakeError> {
    let bad = |message: String| LakeError::bad_file(path, message);
    let info = file_info(path, bytes)?;
    let converted;
    let avro: &[u8] = if LakeFormat::of_path(path) == Some(LakeFormat::Parquet) {
        let schema =
            serde_json::to_string(&info.schema).map_err(|e| LakeError::unreadable_file(path, e))?;
        converted = columnar::to_avro(bytes.clone(), &schema)?;
        &converted
    } else {
        bytes
    };
    let reader = apache_avro::Reader::new(avro).map_err(|e| LakeError::unreadable_file(path, e))?;
    let values: Vec<Value> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| LakeError::unreadable_file(path, e))?;
    if values.len() as u64 != info.offsets.count() {
        let offsets = info.offsets.count();
        return Err(bad(format!("{} records, {offsets} offsets", values.len())));
    }
    Ok((info, values))
}
