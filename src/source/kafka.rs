//! Reading records of topics for tools (`tail`, the demo's read-back): a member of a
//! throw-away consumer group, run by the Kafka edge's consumer driver, that hands out raw
//! records with their coordinates.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::codec::SourceRecord;
use crate::config::KafkaConfig;
use crate::kafka::{self, ConsumerSettings, DriveOptions, Flow, Group, KafkaError, Stage};

/// Errors reading from Kafka (external).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The consumer could not be created, subscribed or fed.
    #[error("cannot consume {topics}: {source}")]
    Consume {
        /// The topics read.
        topics: String,
        /// Why.
        source: KafkaError,
    },
}

impl crate::error::Classified for SourceError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            SourceError::Consume { source, .. } => source.class(),
        }
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

impl RawRecord {
    fn of(r: &SourceRecord<'_>) -> Self {
        Self {
            topic: r.topic.to_string(),
            partition: r.partition,
            offset: r.offset,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            timestamp_ms: (r.timestamp != 0).then_some(r.timestamp / 1000),
        }
    }
}

/// When a [`read`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadUntil {
    /// The records wanted.
    pub count: usize,
    /// Give up when none arrived for this long before `count` are in (joining the group
    /// counts: a topic that never gets a record ends the read too).
    pub idle: Duration,
    /// Once `count` are in, keep reading what follows until none arrived for this long; zero
    /// stops at once, with exactly `count` records.
    pub linger: Duration,
}

impl ReadUntil {
    /// Up to `count` records, giving up after `idle` without one.
    pub fn count(count: usize, idle: Duration) -> Self {
        Self {
            count,
            idle,
            linger: Duration::ZERO,
        }
    }
}

/// Reads `topics` as a member of consumer group `group`, from the earliest offset the group
/// has not committed, until `until` says it has enough. Commits nothing.
pub fn read(
    cfg: &KafkaConfig,
    group: &str,
    topics: &[&str],
    until: ReadUntil,
) -> Result<Vec<RawRecord>, SourceError> {
    let topic_names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let stage = Arc::new(Mutex::new(Collect {
        records: Vec::with_capacity(until.count.min(1 << 16)),
        until,
        last_seen: Instant::now(),
    }));
    let options = DriveOptions::new("source", topic_names, Duration::from_secs(1));
    let settings = ConsumerSettings::member(group);
    let stop = AtomicBool::new(false);
    kafka::drive(cfg, &settings, stage.clone(), &options, &stop).map_err(|source| {
        SourceError::Consume {
            topics: topics.join(","),
            source,
        }
    })?;
    let records = std::mem::take(&mut stage.lock().expect("source lock").records);
    Ok(records)
}

/// Keeps the records a [`read`] wants, and says when it has them.
struct Collect {
    records: Vec<RawRecord>,
    until: ReadUntil,
    last_seen: Instant,
}

impl Stage for Collect {
    type Error = KafkaError;

    fn record(&mut self, r: &SourceRecord<'_>) -> Result<bool, KafkaError> {
        if self.records.len() < self.until.count || !self.until.linger.is_zero() {
            self.records.push(RawRecord::of(r));
        }
        self.last_seen = Instant::now();
        Ok(true)
    }

    fn tick(&mut self) -> Result<Flow, KafkaError> {
        let quiet = self.last_seen.elapsed();
        let done = if self.records.len() < self.until.count {
            quiet >= self.until.idle
        } else {
            quiet >= self.until.linger
        };
        Ok(if done { Flow::Stop } else { Flow::Continue })
    }

    fn commit(&mut self, _: &dyn Group, _: bool) -> Result<(), KafkaError> {
        Ok(())
    }
}
