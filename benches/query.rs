//! Saved queries on the embedded engine over a lake of 10,000,000 simulated ticks (about four
//! trading days, 1,000 symbols, 8 Kafka partitions), landed into Avro files (snappy) on the
//! local filesystem by the lake sink's writer with its default roll. Each query runs 5 times;
//! prints each run's time, the median, the rows the query covers per second, and the files
//! its scans read of the files the table holds (partition pruning).
//!
//! `cargo bench --bench query`.

mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;
use support::{START, start_registry, universe};
use tickflow::catalog::{Catalog, LocalCatalog};
use tickflow::codec::{Encoder, RecordKind, RegistryClient, Tick};
use tickflow::config::AppConfig;
use tickflow::config::lake::LakeSpec;
use tickflow::kafka::record_of;
use tickflow::lake::store::LakeStore;
use tickflow::metrics::Metrics;
use tickflow::query::{LocalEngine, saved};
use tickflow::sim::{SimConfig, TickStream};
use tickflow::sink::lake::LakeWriter;

const TICKS: u64 = 10_000_000;
const PARTITIONS: i32 = 8;
const RUNS: usize = 5;
const TOPIC: &str = "ticks.raw";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Lands the simulated ticks into `dir`, streaming; returns ticks per UTC day.
fn build_lake(
    runtime: &tokio::runtime::Runtime,
    app: &AppConfig,
    spec: &LakeSpec,
    schema_id: u32,
) -> BTreeMap<String, u64> {
    // About 2.3 million trades per session: the 10 million ticks span four to five days.
    let cfg = SimConfig {
        trades_per_second: 100.0,
        ..SimConfig::default()
    };
    let mut writer = runtime
        .block_on(LakeWriter::open("bench", spec, app, Metrics::new()))
        .unwrap();
    runtime
        .block_on(runtime.spawn_blocking(move || {
            let encoder = Encoder::<Tick>::new(RecordKind::Tick, schema_id);
            let mut next = [0i64; PARTITIONS as usize];
            let mut days: BTreeMap<String, u64> = BTreeMap::new();
            for p in 0..PARTITIONS {
                writer.start_partition(TOPIC, p, None);
            }
            let ticks = TickStream::from_config(&cfg, universe(), START, Some(TICKS)).unwrap();
            for t in ticks {
                let p = (t.symbol.bytes().map(u32::from).sum::<u32>() % PARTITIONS as u32) as i32;
                let day = chrono::DateTime::from_timestamp_micros(t.event_time)
                    .unwrap()
                    .format("%Y-%m-%d")
                    .to_string();
                *days.entry(day).or_default() += 1;
                let m = OwnedMessage::new(
                    Some(encoder.encode(&t).unwrap()),
                    Some(t.symbol.as_bytes().to_vec()),
                    TOPIC.into(),
                    Timestamp::NotAvailable,
                    p,
                    next[p as usize],
                    None,
                );
                next[p as usize] += 1;
                writer.land(&record_of(&m)).unwrap();
            }
            writer.flush(None).unwrap();
            assert_eq!(writer.stats().records, TICKS);
            days
        }))
        .unwrap()
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_registry_dir, registry_url) = start_registry(&runtime);
    let mut app = AppConfig::default();
    app.registry.url = registry_url.clone();
    app.kafka.bootstrap_servers = "127.0.0.1:9".into();
    let client = RegistryClient::new(&registry_url).unwrap();
    let id = runtime
        .block_on(client.register_value(TOPIC, RecordKind::Tick))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let yaml = format!("url: {url}\ntopics: [{{ topic: {TOPIC}, table: ticks }}]\n");
    let spec: LakeSpec = serde_saphyr::from_str(&yaml).unwrap();
    let started = Instant::now();
    let days = build_lake(&runtime, &app, &spec, id);
    println!(
        "landed {TICKS} ticks in {:.1}s; ticks per day: {days:?}",
        started.elapsed().as_secs_f64()
    );
    let newest = days.keys().next_back().unwrap().clone();

    let store = runtime.block_on(LakeStore::open(&url, &app.aws)).unwrap();
    let catalog = Catalog::Local(LocalCatalog::new(store.clone()));
    let engine = runtime
        .block_on(LocalEngine::open(
            &store,
            &catalog,
            &spec.database,
            &["ticks".to_string()],
        ))
        .unwrap();
    let params = BTreeMap::from([("day".to_string(), newest.clone())]);
    let queries = [
        (
            "queries/volume_by_hour_venue.sql",
            std::fs::read_to_string("queries/volume_by_hour_venue.sql").unwrap(),
            days[&newest],
        ),
        (
            "queries/vwap_deviation.sql",
            std::fs::read_to_string("queries/vwap_deviation.sql").unwrap(),
            days[&newest],
        ),
        (
            "every tick (no partition filter)",
            "SELECT venue, count(*) AS trades, sum(size) AS volume FROM ticks GROUP BY venue"
                .to_string(),
            TICKS,
        ),
    ];
    for (name, text, covered) in queries {
        let sql = saved::bind(name, &text, &params).unwrap();
        let mut times = Vec::new();
        let mut last = None;
        for run in 1..=RUNS {
            let t = Instant::now();
            let (rows, stats) = runtime.block_on(engine.query_with_stats(&sql)).unwrap();
            let secs = t.elapsed().as_secs_f64();
            println!("{name} run {run}: {:.3}s, {} rows", secs, rows.rows.len());
            times.push(secs);
            last = Some(stats);
        }
        let stats = last.unwrap();
        let m = median(times);
        println!(
            "{name} (day {newest}): median {m:.3}s, {:.0} ticks/s covered; files read {} of {} ({:.0}% pruned)",
            covered as f64 / m,
            stats.files_read,
            stats.files_present,
            100.0 * (1.0 - stats.files_read as f64 / stats.files_present as f64)
        );
    }
}
