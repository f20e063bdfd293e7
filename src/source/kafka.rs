//! A Kafka consumer-group member that hands out raw records with their coordinates.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::KafkaConfig;
use crate::kafka::{self, AuthContext, client_config_with};

/// Errors reading from Kafka (external).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The consumer could not be created or subscribed.
    #[error("cannot consume {topics}: {message}")]
    Subscribe { topics: String, message: String },
    /// The broker reported an error while fetching.
    #[error("fetch failed: {0}")]
    Fetch(String),
}

impl crate::error::Classified for SourceError {
    fn class(&self) -> crate::error::ErrorClass {
        // The broker.
        crate::error::ErrorClass::External
    }
}

/// One record as read from Kafka, bytes untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// Topic it was read from.
    pub topic: String,
    /// Partition it was read from.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Value bytes, if any.
    pub value: Option<Vec<u8>>,
    /// Broker or producer timestamp, milliseconds, if any.
    pub timestamp_ms: Option<i64>,
}

/// A member of consumer group `group` reading `topics` from the earliest offset the group
/// has not committed.
pub struct KafkaSource {
    consumer: BaseConsumer<AuthContext>,
}

impl KafkaSource {
    /// Joins `group` and subscribes to `topics`.
    pub fn subscribe(cfg: &KafkaConfig, group: &str, topics: &[&str]) -> Result<Self, SourceError> {
        let err = |e: rdkafka::error::KafkaError| SourceError::Subscribe {
            topics: topics.join(","),
            message: e.to_string(),
        };
        let c = client_config_with(
            cfg,
            &[
                ("group.id", group),
                ("auto.offset.reset", "earliest"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.wait.max.ms", "50"),
            ],
        );
        let consumer = kafka::consumer(cfg, &c).map_err(|e| SourceError::Subscribe {
            topics: topics.join(","),
            message: e.to_string(),
        })?;
        consumer.subscribe(topics).map_err(err)?;
        Ok(Self { consumer })
    }

    /// The next record, or `None` if none arrived within `timeout` (or the consumer served a
    /// non-message event such as a rebalance: `None` does not mean the topic is drained).
    pub fn poll(&self, timeout: Duration) -> Result<Option<RawRecord>, SourceError> {
        match self.consumer.poll(timeout) {
            None => Ok(None),
            Some(Err(e)) => Err(SourceError::Fetch(e.to_string())),
            Some(Ok(m)) => Ok(Some(RawRecord {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                timestamp_ms: m.timestamp().to_millis(),
            })),
        }
    }

    /// Reads until `count` records have arrived or nothing arrives for `idle`.
    pub fn read_up_to(&self, count: usize, idle: Duration) -> Result<Vec<RawRecord>, SourceError> {
        let mut out = Vec::with_capacity(count.min(1 << 16));
        let mut last_seen = std::time::Instant::now();
        while out.len() < count && last_seen.elapsed() < idle {
            if let Some(r) = self.poll(Duration::from_millis(100))? {
                out.push(r);
                last_seen = std::time::Instant::now();
            }
        }
        Ok(out)
    }
}
