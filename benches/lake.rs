//! Landing throughput of the lake sink's writer: 1,000,000 ticks in the Confluent wire format
//! (as the consumer hands them over) into Avro files on the local filesystem, on one thread:
//! each tick decoded for its event-time partition, copied into a file of its Kafka partition
//! and hour, files rolled and written with conditional puts, partitions registered in the
//! local catalog. Next to it, a writer that puts one JSON object per message, as tutorial
//! pipelines do: to the local filesystem, and to S3 when `TICKFLOW_BENCH_AWS_ENDPOINT` names
//! an S3 endpoint (moto). Prints each run, medians, and the ratio.
//!
//! Avro with snappy and deflate, and Parquet with snappy. The ratio is against the default,
//! Avro with snappy. `cargo bench --bench lake`.

mod support;

use std::time::{Duration, Instant};

use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;
use support::{START, start_registry, universe};
use tickflow::codec::{Encoder, RecordKind, RegistryClient, Tick};
use tickflow::config::lake::LakeSpec;
use tickflow::config::{AppConfig, AwsConfig};
use tickflow::kafka::record_of;
use tickflow::lake::store::LakeStore;
use tickflow::metrics::Metrics;
use tickflow::sim::{SimConfig, TickStream};
use tickflow::sink::lake::LakeWriter;

const TICKS: u64 = 1_000_000;
const PARTITIONS: i32 = 8;
const RUNS: usize = 3;
const TOPIC: &str = "ticks.raw";
/// Messages written one object each by the baseline.
const PER_MESSAGE: usize = 5_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The simulated ticks as Kafka records, spread over the partitions by symbol.
fn records(id: u32) -> (Vec<OwnedMessage>, Vec<Tick>) {
    let cfg = SimConfig::default();
    let ticks: Vec<Tick> = TickStream::from_config(&cfg, universe(), START, Some(TICKS))
        .unwrap()
        .collect();
    let encoder = Encoder::<Tick>::new(RecordKind::Tick, id);
    let mut next = vec![0i64; PARTITIONS as usize];
    let messages = ticks
        .iter()
        .map(|t| {
            let p = (t.symbol.bytes().map(u32::from).sum::<u32>() % PARTITIONS as u32) as i32;
            let offset = next[p as usize];
            next[p as usize] += 1;
            OwnedMessage::new(
                Some(encoder.encode(t).unwrap()),
                Some(t.symbol.as_bytes().to_vec()),
                TOPIC.into(),
                Timestamp::NotAvailable,
                p,
                offset,
                None,
            )
        })
        .collect();
    (messages, ticks)
}

/// Lands every record into a fresh lake directory; returns ticks per second and files.
fn land(
    runtime: &tokio::runtime::Runtime,
    app: &AppConfig,
    messages: &[OwnedMessage],
    (format, codec): (&str, &str),
) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "url: file://{}\nformat: {format}\ncodec: {codec}\ntopics: [{{ topic: {TOPIC}, table: ticks }}]\n",
        dir.path().display()
    );
    let spec: LakeSpec = serde_saphyr::from_str(&yaml).unwrap();
    let mut writer = runtime
        .block_on(LakeWriter::open("bench", &spec, app, Metrics::new()))
        .unwrap();
    let messages = messages.to_vec();
    let (writer, took) = runtime
        .block_on(runtime.spawn_blocking(move || {
            for p in 0..PARTITIONS {
                writer.start_partition(TOPIC, p, None);
            }
            let started = Instant::now();
            for m in &messages {
                writer.land(&record_of(m)).unwrap();
            }
            writer.flush(None).unwrap();
            (writer, started.elapsed())
        }))
        .unwrap();
    let stats = writer.stats().clone();
    assert_eq!(stats.records, TICKS, "every tick landed");
    (TICKS as f64 / took.as_secs_f64(), stats.files)
}

/// Puts one JSON object per tick, one after the other; returns messages per second.
fn per_message(runtime: &tokio::runtime::Runtime, store: &LakeStore, ticks: &[Tick]) -> f64 {
    let started = Instant::now();
    runtime.block_on(async {
        for (i, t) in ticks.iter().take(PER_MESSAGE).enumerate() {
            let body = serde_json::to_vec(t).unwrap();
            store
                .put(&format!("raw/{TOPIC}/{i}.json"), body)
                .await
                .unwrap();
        }
    });
    PER_MESSAGE as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_registry_dir, registry_url) = start_registry(&runtime);
    let mut app = AppConfig::default();
    app.registry.url = registry_url.clone();
    // The writer's dead-letter producer is never used here and needs no broker.
    app.kafka.bootstrap_servers = "127.0.0.1:9".into();
    let client = RegistryClient::new(&registry_url).unwrap();
    let id = runtime
        .block_on(client.register_value(TOPIC, RecordKind::Tick))
        .unwrap();
    let (messages, ticks) = records(id);
    println!(
        "{} ticks in {PARTITIONS} partitions, default roll",
        messages.len()
    );

    let mut landed = 0.0;
    for (format, codec) in [
        ("avro", "snappy"),
        ("avro", "deflate"),
        ("parquet", "snappy"),
    ] {
        let mut rates = Vec::new();
        for run in 1..=RUNS {
            let (rate, files) = land(&runtime, &app, &messages, (format, codec));
            println!("{format}/{codec} run {run}: landed {rate:.0} ticks/s into {files} files");
            rates.push(rate);
        }
        let m = median(rates);
        println!("{format}/{codec} median: {m:.0} ticks/s landed");
        if (format, codec) == ("avro", "snappy") {
            landed = m;
        }
    }
    let local_dir = tempfile::tempdir().unwrap();
    let local = runtime
        .block_on(LakeStore::open(
            &format!("file://{}", local_dir.path().display()),
            &AwsConfig::default(),
        ))
        .unwrap();
    let one_file = per_message(&runtime, &local, &ticks);
    println!(
        "one object per message, local filesystem: {one_file:.0} messages/s; landing is {:.0}x faster",
        landed / one_file
    );
    if let Ok(endpoint) = std::env::var("TICKFLOW_BENCH_AWS_ENDPOINT") {
        let bucket = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let created = runtime.block_on(async {
            reqwest::Client::new()
                .put(format!("{endpoint}/{bucket}"))
                .timeout(Duration::from_secs(10))
                .send()
                .await
        });
        assert!(
            created.is_ok_and(|r| r.status().is_success()),
            "bucket created"
        );
        let aws = AwsConfig {
            region: "us-east-1".into(),
            endpoint: Some(endpoint.clone()),
        };
        let s3 = runtime
            .block_on(LakeStore::open(&format!("s3://{bucket}"), &aws))
            .unwrap();
        let one_object = per_message(&runtime, &s3, &ticks);
        println!(
            "one object per message, S3 at {endpoint}: {one_object:.0} messages/s; landing is {:.0}x faster",
            landed / one_object
        );
    }
}
