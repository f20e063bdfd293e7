//! Input stages: records enter tickflow here, from Kafka through a consumer group.

mod kafka;

pub use kafka::{RawRecord, ReadUntil, SourceError, read};
