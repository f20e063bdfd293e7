//! End-to-end benchmark through a broker: the flagship computation (1s/1m/5m bars of 1,000
//! symbols) run by `tickflow`'s engine on a topic of pre-produced ticks, next to a consume-only
//! baseline reading the same topic. Each rate is measured from the first record to the last,
//! so group joins do not count. Prints both rates per run, their ratio, and medians.
//!
//! `cargo bench --bench pipeline`. Uses an in-process Tansu broker with memory storage, or
//! the broker at `TICKFLOW_BENCH_KAFKA`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{START, start_registry, universe};

use tickflow::codec::SourceRecord;
use tickflow::codec::{Encoder, RecordKind, RegistryClient, Tick};
use tickflow::config::{AppConfig, KafkaConfig, TopologySpec};
use tickflow::kafka::{
    ConsumerSettings, DriveOptions, Flow, Group, KafkaError, KafkaSink, Stage, drive,
};
use tickflow::metrics::Metrics;
use tickflow::sim::{Pace, SimConfig, TickStream, end_of_input, produce_ticks};
use tickflow::topology::runtime::{RunOptions, run};

const TICKS: u64 = 1_000_000;
const PARTITIONS: i32 = 8;
const RUNS: usize = 3;

/// Records per second between the first and the last of `n` records.
fn rate(n: u64, first: Instant, last: Instant) -> f64 {
    (n - 1) as f64 / (last - first).as_secs_f64()
}

/// The consume-only baseline: a stage on tickflow's consumer driver (the engine's) that
/// touches every value and does nothing else.
struct Touch {
    want: u64,
    seen: u64,
    bytes: usize,
    first: Option<Instant>,
    last: Option<Instant>,
    deadline: Instant,
}

impl Stage for Touch {
    type Error = KafkaError;

    fn record(&mut self, r: &SourceRecord<'_>) -> Result<bool, KafkaError> {
        self.first.get_or_insert_with(Instant::now);
        self.bytes += r.value.map_or(0, <[u8]>::len);
        self.seen += 1;
        self.last = Some(Instant::now());
        Ok(true)
    }

    fn tick(&mut self) -> Result<Flow, KafkaError> {
        let done = self.seen >= self.want || Instant::now() > self.deadline;
        Ok(if done { Flow::Stop } else { Flow::Continue })
    }

    fn commit(&mut self, _: &dyn Group, _: bool) -> Result<(), KafkaError> {
        Ok(())
    }
}

/// Reads the whole topic with a fresh consumer group, touching every value.
fn consume_only(kafka: &KafkaConfig, topic: &str, n: u64) -> f64 {
    let group = format!("bench-consume-{}", uuid::Uuid::new_v4().simple());
    let touch = Arc::new(std::sync::Mutex::new(Touch {
        want: n,
        seen: 0,
        bytes: 0,
        first: None,
        last: None,
        deadline: Instant::now() + Duration::from_secs(600),
    }));
    let options = DriveOptions::new("bench", vec![topic.to_string()], Duration::from_secs(1));
    let settings = ConsumerSettings::member(&group);
    drive(
        kafka,
        &settings,
        touch.clone(),
        &options,
        &AtomicBool::new(false),
    )
    .unwrap();
    let touch = touch.lock().unwrap();
    assert_eq!(touch.seen, n, "baseline read the whole topic");
    std::hint::black_box(touch.bytes);
    rate(n, touch.first.unwrap(), touch.last.unwrap())
}

/// Runs the flagship topology over the topic with a fresh application id and stops it once
/// every record is processed.
fn engine(runtime: &tokio::runtime::Runtime, app: &AppConfig, topic: &str, n: u64) -> f64 {
    let id = format!("bench-engine-{}", uuid::Uuid::new_v4().simple());
    let yaml = format!(
        "application: {id}\nsources:\n  ticks: {{ topic: {topic} }}\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m, 5m]\n      grace: 5s\n      aggregates: [open, high, low, close, volume, vwap, trade_count, turnover]\n      late_topic: {id}.late\nsinks:\n  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
    );
    let spec = TopologySpec::parse("bench.yaml", &yaml).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut app = app.clone();
    app.state.dir = state.path().to_path_buf();
    let (metrics, stop) = (Metrics::new(), Arc::new(AtomicBool::new(false)));
    let (m, s) = (metrics.clone(), stop.clone());
    let handle =
        runtime.spawn(async move { run(&spec, &app, RunOptions::default(), m, s).await.unwrap() });
    let (mut first, deadline) = (None, Instant::now() + Duration::from_secs(600));
    while metrics.records_total() < n && Instant::now() < deadline {
        if metrics.records_total() > 0 {
            first.get_or_insert_with(Instant::now);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let last = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let stats = runtime.block_on(handle).unwrap();
    assert_eq!(stats.records, n, "engine read the whole topic");
    rate(n, first.unwrap(), last)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (servers, _broker) = runtime
        .block_on(tickflow::broker::EmbeddedBroker::from_env_or_memory(
            "TICKFLOW_BENCH_KAFKA",
        ))
        .unwrap();
    let (_registry_dir, registry_url) = start_registry(&runtime);
    let mut app = AppConfig {
        kafka: KafkaConfig {
            bootstrap_servers: servers.clone(),
            connect_timeout: Duration::from_secs(10),
            ..KafkaConfig::default()
        },
        ..AppConfig::default()
    };
    app.registry.url = registry_url.clone();

    let topic = format!("bench-pipeline-{}", uuid::Uuid::new_v4().simple());
    runtime
        .block_on(tickflow::kafka::ensure_topic(
            &app.kafka,
            &topic,
            PARTITIONS,
            &[],
        ))
        .unwrap();
    let client = RegistryClient::new(&registry_url).unwrap();
    let schema_id = runtime
        .block_on(client.register_value(&topic, RecordKind::Tick))
        .unwrap();
    let cfg = SimConfig {
        trades_per_second: 20_000.0,
        ..SimConfig::default()
    };
    let ticks = TickStream::from_config(&cfg, universe(), START, Some(TICKS)).unwrap();
    let sink = KafkaSink::new(&app.kafka, &topic).unwrap();
    let encoder = Encoder::<Tick>::new(RecordKind::Tick, schema_id);
    let summary = produce_ticks(ticks, &encoder, &sink, Pace::default(), |_| {}).unwrap();
    end_of_input(&app.kafka, &topic, &summary).unwrap();
    let n = TICKS + PARTITIONS as u64;
    println!("broker {servers}: {n} records in {topic} ({PARTITIONS} partitions)");

    let (mut base, mut eng, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let b = consume_only(&app.kafka, &topic, n);
        let e = engine(&runtime, &app, &topic, n);
        println!(
            "run {run}: consume-only {b:.0} records/s, engine {e:.0} records/s, ratio {:.2}",
            e / b
        );
        base.push(b);
        eng.push(e);
        ratio.push(e / b);
    }
    println!(
        "median: consume-only {:.0} records/s, engine (decode → 1s/1m/5m windows → RocksDB → bars produced) {:.0} records/s, ratio {:.2}",
        median(&base),
        median(&eng),
        median(&ratio)
    );
}
