//! Output stages: records leave tickflow here (Kafka topics now; the lake writer joins later).

mod kafka;

pub use kafka::{KafkaSink, SinkError};
