//! Changelog topics: every commit of a store is mirrored to a compacted Kafka topic
//! (`<application>-<store>-changelog`, one partition per task), so that a task whose local
//! RocksDB directory is gone rebuilds exactly its last committed state.
//!
//! A commit writes its entries to the task's changelog partition and then a seal record
//! ([`SEALED_KEY`]). Only entries before the last seal are restored; entries after it belong
//! to a commit that a crash interrupted. Their keys are written again, with the committed
//! values, in the task's next commit ("repair"), so that compaction, which keeps the newest
//! record per key, never keeps an interrupted commit's value. The local store remembers the
//! changelog offset it is current to; a restart whose local store is current reads nothing.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{Entry, StateError, WindowStore};
use crate::config::KafkaConfig;
use crate::kafka::client_config_with;

/// Key of the record that seals a commit in a changelog partition.
pub const SEALED_KEY: &[u8] = b"m/sealed";

/// The changelog topic of store `store` of `application`, named like Kafka Streams'.
pub fn changelog_topic(application: &str, store: &str) -> String {
    format!("{application}-{store}-changelog")
}

/// What bringing a store up to date from its changelog did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Restored {
    /// Changelog records read.
    pub records: u64,
    /// Keys of entries after the last seal (an interrupted commit), to write again with their
    /// committed values in the next commit.
    pub repair: Vec<Vec<u8>>,
}

/// Where a task's changelog lives.
#[derive(Debug, Clone)]
pub struct ChangelogPartition {
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// Changelog topic.
    pub topic: String,
    /// The task's partition.
    pub partition: i32,
}

impl ChangelogPartition {
    fn err(&self, message: impl std::fmt::Display) -> StateError {
        StateError::Changelog {
            topic: self.topic.clone(),
            partition: self.partition,
            message: message.to_string(),
        }
    }

    /// Brings `store` up to date: reads the partition from where the store is current (from
    /// the start, after clearing the store, if it never saw the changelog) to its end, applies
    /// every sealed commit, and reports the keys of an interrupted one. `progress` is called
    /// with (records read, records remaining) as the restore goes.
    pub fn restore(
        &self,
        store: &WindowStore,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Restored, StateError> {
        let consumer: BaseConsumer = client_config_with(
            &self.kafka,
            &[
                ("group.id", "tickflow-restore"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.wait.max.ms", "50"),
            ],
        )
        .create()
        .map_err(|e| self.err(e))?;
        let (_, end) = consumer
            .fetch_watermarks(&self.topic, self.partition, Duration::from_secs(30))
            .map_err(|e| self.err(e))?;
        let start = match store.changelog_next()? {
            Some(next) if next >= end => {
                if next > end {
                    tracing::warn!(
                        topic = self.topic,
                        partition = self.partition,
                        next,
                        end,
                        "local state is ahead of its changelog (was the topic recreated?); keeping the local state"
                    );
                }
                return Ok(Restored::default());
            }
            Some(next) => next,
            None => {
                store.clear()?;
                0
            }
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(start))
            .map_err(|e| self.err(e))?;
        consumer.assign(&tpl).map_err(|e| self.err(e))?;
        self.replay(&consumer, store, start, end, &mut progress)
    }

    /// Applies records `start..end` of the assigned partition, sealed commit by sealed commit.
    fn replay(
        &self,
        consumer: &BaseConsumer,
        store: &WindowStore,
        start: i64,
        end: i64,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<Restored, StateError> {
        let (mut pending, mut restored): (Vec<Entry>, Restored) = (Vec::new(), Restored::default());
        let (mut next, mut last_seen) = (start, Instant::now());
        while next < end {
            if last_seen.elapsed() > Duration::from_secs(60) {
                return Err(self.err(format!("no record at offset {next} of {end} for 60 s")));
            }
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.map_err(|e| self.err(e))?;
            last_seen = Instant::now();
            next = m.offset() + 1;
            restored.records += 1;
            let key = m
                .key()
                .ok_or_else(|| self.err(format!("record at {} has no key", m.offset())))?;
            if key == SEALED_KEY {
                store.write(&pending, Some(next))?;
                pending.clear();
            } else {
                pending.push((key.to_vec(), m.payload().map(<[u8]>::to_vec)));
            }
            if restored.records % 10_000 == 0 {
                progress(restored.records, (end - next).max(0) as u64);
            }
        }
        if restored.records > 0 {
            progress(restored.records, 0);
        }
        restored.repair = pending.into_iter().map(|(k, _)| k).collect();
        Ok(restored)
    }
}
