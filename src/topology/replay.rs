//! Reading back what was written to the output topics after a commit, so that a task's
//! replay can skip the outputs that already reached their topic (see `identity`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::identity::fingerprint;
use crate::config::KafkaConfig;
use crate::kafka::{ConsumerSettings, KafkaError};

/// Reads each partition of `from` (topic, partition, first offset) from that offset up to
/// its end as it is now, and returns the fingerprint of every record found there. Fails if
/// the partitions cannot be read to their ends within `timeout`.
pub fn written_since(
    cfg: &KafkaConfig,
    from: &[(String, i32, i64)],
    timeout: Duration,
) -> Result<Vec<u128>, KafkaError> {
    if from.is_empty() {
        return Ok(Vec::new());
    }
    let consumer = ConsumerSettings::reader("tickflow-read-back").create(cfg)?;
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for (topic, partition, start) in from {
        let (low, high) = consumer.fetch_watermarks(topic, *partition, timeout)?;
        let start = (*start).max(low);
        if start < high {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(start))?;
            ends.insert((topic.clone(), *partition), high);
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut found = Vec::new();
    while !ends.is_empty() {
        if Instant::now() > deadline {
            let left: Vec<String> = ends.keys().map(|(t, p)| format!("{t}-{p}")).collect();
            return Err(KafkaError::Unreachable {
                servers: cfg.bootstrap_servers.clone(),
                timeout,
                message: format!("reading back outputs of {} did not finish", left.join(",")),
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let (key, value) = (m.key().unwrap_or_default(), m.payload().unwrap_or_default());
                found.push(fingerprint(m.topic(), key, value));
                let key = (m.topic().to_string(), m.partition());
                if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&key);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            // Markers and compacted gaps are never delivered: the position tells.
            None => {
                let positions = consumer.position()?;
                for e in positions.elements() {
                    let key = (e.topic().to_string(), e.partition());
                    if let (Offset::Offset(p), Some(end)) = (e.offset(), ends.get(&key))
                        && p >= *end
                    {
                        ends.remove(&key);
                    }
                }
            }
        }
    }
    Ok(found)
}
