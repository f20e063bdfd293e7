//! An in-memory log for the engine core: topics of partitions of records, producers with
//! Kafka's delivery semantics where the engine's guarantees depend on them, and crashes.
//!
//! An idempotent producer's record is readable as soon as it is sent and acknowledged at the
//! next flush; a crash either keeps or loses the records not yet acknowledged (both happen to
//! a killed Kafka client). A transactional producer's records become readable when its
//! transaction commits; a crash aborts the open transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::edge::{Cluster, Producer, partition_of};
use super::engine::RuntimeError;
use super::identity::fingerprint;
use crate::kafka::PartitionEnd;
use crate::kafka::SinkError;
use crate::state::StateError;
use crate::state::changelog::{ChangelogLog, ReadEach};

/// One record of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Its timestamp, UTC microseconds.
    pub timestamp: i64,
    /// Acknowledged to its producer (always true for records a test appends).
    acked: bool,
}

/// Topics of partitions of records, shared by producers and readers.
#[derive(Debug, Default)]
pub struct MemoryLog {
    topics: Mutex<HashMap<String, Vec<Vec<LogRecord>>>>,
}

impl MemoryLog {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Vec<LogRecord>>>> {
        self.topics.lock().expect("memory log lock")
    }

    /// Creates `topic` with `partitions` partitions, if it does not exist.
    pub fn create(&self, topic: &str, partitions: i32) {
        let mut topics = self.lock();
        topics
            .entry(topic.to_string())
            .or_insert_with(|| vec![Vec::new(); partitions.max(1) as usize]);
    }

    /// The partition count of `topic` (0 if it does not exist).
    pub fn partitions(&self, topic: &str) -> i32 {
        self.lock().get(topic).map_or(0, |t| t.len() as i32)
    }

    /// Appends a record, acknowledged, and returns its offset.
    pub fn append(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Option<i64> {
        self.push(topic, partition, key, value, timestamp, true)
    }

    fn push(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        acked: bool,
    ) -> Option<i64> {
        let mut topics = self.lock();
        let records = topics.get_mut(topic)?.get_mut(partition as usize)?;
        records.push(LogRecord {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            timestamp,
            acked,
        });
        Some(records.len() as i64 - 1)
    }

    /// The end (next offset) of a partition.
    pub fn end(&self, topic: &str, partition: i32) -> i64 {
        let topics = self.lock();
        let records = topics.get(topic).and_then(|t| t.get(partition as usize));
        records.map_or(0, |r| r.len() as i64)
    }

    /// The records of a partition from `from` on.
    pub fn read(&self, topic: &str, partition: i32, from: i64) -> Vec<LogRecord> {
        let topics = self.lock();
        let records = topics.get(topic).and_then(|t| t.get(partition as usize));
        let from = from.max(0) as usize;
        records.map_or(Vec::new(), |r| r.get(from..).unwrap_or_default().to_vec())
    }

    /// Every record of a topic, partition by partition.
    pub fn topic(&self, topic: &str) -> Vec<(i32, i64, LogRecord)> {
        let topics = self.lock();
        let Some(partitions) = topics.get(topic) else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for (p, records) in partitions.iter().enumerate() {
            for (offset, r) in records.iter().enumerate() {
                all.push((p as i32, offset as i64, r.clone()));
            }
        }
        all
    }

    /// A crash of every client: records not yet acknowledged are kept (they reached the
    /// broker, unacknowledged) or lost (they were still in the client's queue).
    pub fn crash(&self, keep_unacknowledged: bool) {
        let mut topics = self.lock();
        for partitions in topics.values_mut() {
            for records in partitions {
                if !keep_unacknowledged {
                    records.retain(|r| r.acked);
                }
                for r in records.iter_mut() {
                    r.acked = true;
                }
            }
        }
    }
}

/// A record a transactional producer holds until its transaction commits.
type Held = (String, i32, Vec<u8>, Option<Vec<u8>>);

/// A producer writing to a [`MemoryLog`].
pub struct MemoryProducer {
    log: Arc<MemoryLog>,
    /// Records sent and not yet acknowledged: (topic, partition, offset).
    unacked: Mutex<Vec<(String, i32, i64)>>,
    /// Last acknowledged offset per partition.
    acked: Mutex<HashMap<(String, i32), i64>>,
    /// The open transaction's records, for a transactional producer.
    transaction: Option<Mutex<Vec<Held>>>,
}

impl MemoryProducer {
    fn new(log: Arc<MemoryLog>, transactional: bool) -> Self {
        Self {
            log,
            unacked: Mutex::new(Vec::new()),
            acked: Mutex::new(HashMap::new()),
            transaction: transactional.then(|| Mutex::new(Vec::new())),
        }
    }

    fn ack(&self, topic: &str, partition: i32, offset: i64) {
        let mut acked = self.acked.lock().expect("producer lock");
        let last = acked
            .entry((topic.to_string(), partition))
            .or_insert(offset);
        *last = (*last).max(offset);
    }

    /// Makes the open transaction's records readable and acknowledged.
    fn commit(&self) -> Result<(), SinkError> {
        let Some(transaction) = &self.transaction else {
            return Ok(());
        };
        let held = std::mem::take(&mut *transaction.lock().expect("producer lock"));
        for (topic, p, key, value) in held {
            let offset = self.log.append(&topic, p, Some(&key), value.as_deref(), 0);
            let offset = offset.ok_or_else(|| no_partition(&topic, p))?;
            self.ack(&topic, p, offset);
        }
        Ok(())
    }
}

fn no_partition(topic: &str, partition: i32) -> SinkError {
    SinkError::Refused {
        topic: topic.into(),
        message: format!("no partition {partition}"),
    }
}

impl Producer for MemoryProducer {
    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), SinkError> {
        let p = partition.unwrap_or_else(|| partition_of(key, self.log.partitions(topic)));
        if let Some(transaction) = &self.transaction {
            if p >= self.log.partitions(topic) {
                return Err(no_partition(topic, p));
            }
            let held = (
                topic.to_string(),
                p,
                key.to_vec(),
                value.map(<[u8]>::to_vec),
            );
            transaction.lock().expect("producer lock").push(held);
            return Ok(());
        }
        let offset = self.log.push(topic, p, Some(key), value, 0, false);
        let offset = offset.ok_or_else(|| no_partition(topic, p))?;
        let mut unacked = self.unacked.lock().expect("producer lock");
        unacked.push((topic.to_string(), p, offset));
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        let sent = std::mem::take(&mut *self.unacked.lock().expect("producer lock"));
        let mut topics = self.log.lock();
        for (topic, p, offset) in &sent {
            if let Some(r) = topics
                .get_mut(topic)
                .and_then(|t| t.get_mut(*p as usize))
                .and_then(|r| r.get_mut(*offset as usize))
            {
                r.acked = true;
            }
        }
        drop(topics);
        for (topic, p, offset) in sent {
            self.ack(&topic, p, offset);
        }
        Ok(())
    }

    fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let acked = self.acked.lock().expect("producer lock");
        acked.get(&(topic.to_string(), partition)).copied()
    }
}

/// The engine core's view of a [`MemoryLog`].
pub struct MemoryCluster {
    log: Arc<MemoryLog>,
    outputs: MemoryProducer,
    /// Changelog records go through `outputs` (and its transactions) when this is `None`.
    changelogs: Option<MemoryProducer>,
    /// The input positions committed with the last transaction.
    pub committed: Mutex<Vec<(String, i32, i64)>>,
}

impl MemoryCluster {
    /// Producers on `log`: two idempotent ones, or one transactional one.
    pub fn new(log: Arc<MemoryLog>, transactional: bool) -> Self {
        let changelogs = (!transactional).then(|| MemoryProducer::new(log.clone(), false));
        Self {
            outputs: MemoryProducer::new(log.clone(), transactional),
            changelogs,
            log,
            committed: Mutex::new(Vec::new()),
        }
    }
}

impl Cluster for MemoryCluster {
    fn outputs(&self) -> &dyn Producer {
        &self.outputs
    }

    fn changelogs(&self) -> &dyn Producer {
        self.changelogs.as_ref().unwrap_or(&self.outputs)
    }

    fn ends(&self, partitions: &[(String, i32)]) -> Result<Vec<PartitionEnd>, RuntimeError> {
        let end = |(t, p): &(String, i32)| ((t.clone(), *p), self.log.end(t, *p));
        Ok(partitions.iter().map(end).collect())
    }

    fn written_since(&self, from: &[(String, i32, i64)]) -> Result<Vec<u128>, RuntimeError> {
        let mut found = Vec::new();
        for (topic, p, offset) in from {
            for r in self.log.read(topic, *p, *offset) {
                let (key, value) = (r.key.unwrap_or_default(), r.value.unwrap_or_default());
                found.push(fingerprint(topic, &key, &value));
            }
        }
        Ok(found)
    }

    fn changelog(&self, topic: &str, partition: i32) -> Box<dyn ChangelogLog> {
        Box::new(MemoryChangelog {
            log: self.log.clone(),
            topic: topic.into(),
            partition,
        })
    }

    fn commit_transaction(
        &self,
        positions: &[(String, i32, i64)],
        _last: bool,
    ) -> Result<(), RuntimeError> {
        self.outputs.commit()?;
        *self.committed.lock().expect("cluster lock") = positions.to_vec();
        Ok(())
    }
}

/// A changelog partition of a [`MemoryLog`].
struct MemoryChangelog {
    log: Arc<MemoryLog>,
    topic: String,
    partition: i32,
}

impl ChangelogLog for MemoryChangelog {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> i32 {
        self.partition
    }

    fn end(&self) -> Result<i64, StateError> {
        Ok(self.log.end(&self.topic, self.partition))
    }

    fn read(&self, start: i64, end: i64, each: &mut ReadEach<'_>) -> Result<(), StateError> {
        let records = self.log.read(&self.topic, self.partition, start);
        for (offset, r) in (start..end).zip(records) {
            if !each(offset, r.key.as_deref(), r.value.as_deref())? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unacknowledged_records_are_readable_and_a_crash_keeps_or_loses_them() {
        for keep in [true, false] {
            let log = Arc::new(MemoryLog::default());
            log.create("t", 1);
            let producer = MemoryProducer::new(log.clone(), false);
            producer.send("t", Some(0), b"a", Some(b"1")).unwrap();
            producer.flush().unwrap();
            producer.send("t", Some(0), b"b", Some(b"2")).unwrap();
            assert_eq!(
                (log.end("t", 0), producer.last_offset("t", 0)),
                (2, Some(0))
            );
            log.crash(keep);
            assert_eq!(log.end("t", 0), if keep { 2 } else { 1 });
        }
    }

    #[test]
    fn a_transaction_is_readable_once_committed() {
        let log = Arc::new(MemoryLog::default());
        log.create("t", 2);
        let cluster = MemoryCluster::new(log.clone(), true);
        cluster
            .outputs()
            .send("t", None, b"key", Some(b"v"))
            .unwrap();
        cluster.outputs().flush().unwrap();
        assert_eq!(log.end("t", 0) + log.end("t", 1), 0);
        cluster.commit_transaction(&[], false).unwrap();
        assert_eq!(log.end("t", 0) + log.end("t", 1), 1);
        assert!(
            cluster
                .outputs()
                .send("nope", None, b"k", Some(b"v"))
                .is_err()
        );
    }
}
