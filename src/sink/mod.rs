//! Output stages beyond Kafka: the lake sink lands topics in the lake and registers them in the
//! catalog. (Producing to Kafka is the Kafka edge's: `crate::kafka::KafkaSink`.)

pub mod lake;
