//! Output stages: records leave tickflow here, to Kafka topics and to the lake.

mod kafka;
pub mod lake;

pub use kafka::{KafkaSink, SinkError};
