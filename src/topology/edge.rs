//! The engine core's only view of the log it reads and writes: producers of outputs and of
//! changelog records, the ends of partitions, reading outputs back, and changelog partitions.
//! `runtime` implements it over Kafka; `memory` in memory, for the test driver.

use crate::kafka::PartitionEnd;
use crate::kafka::SinkError;
use crate::state::changelog::ChangelogLog;

use super::engine::RuntimeError;

/// Queues records to topics and tells which offsets the log acknowledged.
pub trait Producer: Send + Sync {
    /// Queues a record: to `partition`, or partitioned by key (murmur2, like the Java
    /// client) without one. A record without a value is a tombstone.
    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), SinkError>;
    /// Waits until every queued record is acknowledged.
    fn flush(&self) -> Result<(), SinkError>;
    /// The offset of the last acknowledged record this producer wrote to a partition.
    fn last_offset(&self, topic: &str, partition: i32) -> Option<i64>;
}

/// Everything the engine core does with the log besides consuming its input.
pub trait Cluster: Send + Sync {
    /// The producer of outputs (bars, late and dead-letter envelopes, repartitioned ticks,
    /// watermarks).
    fn outputs(&self) -> &dyn Producer;
    /// The producer of changelog records (the same as `outputs` under transactions).
    fn changelogs(&self) -> &dyn Producer;
    /// The end (high watermark) of each partition, in order.
    fn ends(&self, partitions: &[(String, i32)]) -> Result<Vec<PartitionEnd>, RuntimeError>;
    /// The fingerprints (see `identity`) of every record from each (topic, partition, offset)
    /// of `from` up to the partition's end as it is now.
    fn written_since(&self, from: &[(String, i32, i64)]) -> Result<Vec<u128>, RuntimeError>;
    /// One partition of a changelog topic.
    fn changelog(&self, topic: &str, partition: i32) -> Box<dyn ChangelogLog>;
    /// Commits the open transaction with the next input offsets `positions` (topic,
    /// partition, offset), and begins the next one unless `last` (`exactly_once_v2` only).
    fn commit_transaction(
        &self,
        positions: &[(String, i32, i64)],
        last: bool,
    ) -> Result<(), RuntimeError>;
}

/// The partition the Java client's default partitioner picks for `key` among `partitions`:
/// murmur2 of the key, made positive, modulo the count.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (seed 0x9747b28c), as `org.apache.kafka.common.utils.Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if let Some(b) = rest.first() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values of Kafka's own test of Utils.murmur2, as signed 32-bit integers.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(
                murmur2(key) as i32,
                want,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert!((0..8).contains(&partition_of(b"AAPL", 8)));
    }
}
