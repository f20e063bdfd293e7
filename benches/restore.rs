//! Restore benchmark: time to rebuild a store of 1,000,000 window entries from its changelog
//! partition (sealed every 10,000 entries, like commits), into an empty RocksDB directory.
//! Prints entries/s and seconds per run, and the median. `cargo bench --bench restore`.
//! Uses an in-process Tansu broker with memory storage, or the broker at
//! `TICKFLOW_BENCH_KAFKA`. Tansu's memory storage skips the rest of a record batch when a
//! fetch starts inside it, so a restore from it may read fewer records than were written:
//! the bench prints how many it read and rates only those.

use std::time::{Duration, Instant};

use tickflow::config::KafkaConfig;
use tickflow::kafka::KafkaSink;
use tickflow::state::WindowStore;
use tickflow::state::changelog::{ChangelogPartition, SEALED_KEY};

const ENTRIES: u64 = 1_000_000;
const SEAL_EVERY: u64 = 10_000;
const RUNS: usize = 3;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (servers, _broker) = runtime
        .block_on(tickflow::broker::EmbeddedBroker::from_env_or_memory(
            "TICKFLOW_BENCH_KAFKA",
        ))
        .unwrap();
    let kafka = KafkaConfig {
        bootstrap_servers: servers,
        connect_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    };
    let topic = format!("bench-restore-{}", uuid::Uuid::new_v4().simple());
    runtime
        .block_on(tickflow::kafka::ensure_topic(
            &kafka,
            &topic,
            1,
            &[("cleanup.policy", "compact")],
        ))
        .unwrap();
    // Window entries as the engine writes them: `w/` + resolution + start + symbol, and a
    // 120-byte aggregate.
    let sink = KafkaSink::new(&kafka, &topic).unwrap();
    let value = [7u8; 120];
    let started = Instant::now();
    for i in 0..ENTRIES {
        let mut key = b"w/".to_vec();
        key.extend_from_slice(&((i % 3) as u16).to_be_bytes());
        key.extend_from_slice(&(i / 3000).to_be_bytes());
        key.extend_from_slice(format!("S{:04}", i % 1000).as_bytes());
        sink.send_entry(&topic, 0, &key, Some(&value)).unwrap();
        if (i + 1) % SEAL_EVERY == 0 {
            sink.send_entry(&topic, 0, SEALED_KEY, Some(&(i as i64).to_be_bytes()))
                .unwrap();
        }
    }
    sink.flush(Duration::from_secs(120)).unwrap();
    println!(
        "wrote {ENTRIES} entries to {topic} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let part = ChangelogPartition::new(&kafka, &topic, 0, false);
    let mut seconds = Vec::new();
    for run in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let store = WindowStore::open(dir.path()).unwrap();
        let t = Instant::now();
        let restored = part.restore(&store, "bench", |_, _| {}).unwrap();
        let s = t.elapsed().as_secs_f64();
        let written = ENTRIES + ENTRIES / SEAL_EVERY;
        println!(
            "run {run}: read {} of {written} changelog records in {s:.2}s ({:.0} records/s)",
            restored.records,
            restored.records as f64 / s
        );
        seconds.push((restored.records as f64 / s, s));
    }
    seconds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rate, s) = seconds[RUNS / 2];
    println!(
        "median: {rate:.0} records/s ({s:.2}s for the run); 1,000,000 entries at that rate: {:.2}s",
        ENTRIES as f64 / rate
    );
}
