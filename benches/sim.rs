//! Simulator benchmarks: generate + encode on one core, and produce to a broker.
//!
//! `cargo bench --bench sim` prints ticks/s for each run and the median. The produce benchmark
//! uses the broker in `TICKFLOW_BENCH_KAFKA` if set, else an embedded Tansu broker with memory
//! storage in this process (which then shares the two cores with the producer).

use std::time::{Duration, Instant};

use tickflow::codec::{Encoder, RecordKind, Tick};
use tickflow::config::KafkaConfig;
use tickflow::kafka::KafkaSink;
use tickflow::sim::{Pace, SimConfig, TickStream, produce_ticks, universe};

const START: i64 = 1_795_703_400_000_000;
const RUNS: usize = 5;

fn stream(count: u64) -> TickStream {
    TickStream::from_config(
        &SimConfig::default(),
        universe(None, 0).unwrap(),
        START,
        Some(count),
    )
    .unwrap()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn report(name: &str, rates: Vec<f64>) {
    let shown: Vec<String> = rates.iter().map(|r| format!("{:.0}", r)).collect();
    println!(
        "{name:<28} median {:>10.0} ticks/s   runs [{}]",
        median(rates),
        shown.join(", ")
    );
}

fn bench_generate_encode() {
    let n = 1_000_000u64;
    let encoder = Encoder::<Tick>::new(RecordKind::Tick, 1);
    let mut buf = Vec::with_capacity(128);
    let (mut gen_only, mut gen_enc, mut enc_only) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        let mut checksum = 0i64;
        for tick in stream(n) {
            checksum = checksum.wrapping_add(tick.size);
        }
        gen_only.push(n as f64 / t.elapsed().as_secs_f64());
        std::hint::black_box(checksum);

        let t = Instant::now();
        let mut bytes = 0usize;
        for tick in stream(n) {
            encoder.encode_into(&tick, &mut buf).unwrap();
            bytes += buf.len();
        }
        gen_enc.push(n as f64 / t.elapsed().as_secs_f64());
        std::hint::black_box(bytes);

        let ticks: Vec<Tick> = stream(n).collect();
        let t = Instant::now();
        for tick in &ticks {
            encoder.encode_into(tick, &mut buf).unwrap();
        }
        enc_only.push(n as f64 / t.elapsed().as_secs_f64());
    }
    report("generate", gen_only);
    report("generate + encode", gen_enc);
    report("encode", enc_only);
}

fn bench_produce() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (servers, _broker) = runtime
        .block_on(tickflow::broker::EmbeddedBroker::from_env_or_memory(
            "TICKFLOW_BENCH_KAFKA",
        ))
        .unwrap();
    println!("produce target: {servers}");
    let kafka = KafkaConfig {
        bootstrap_servers: servers,
        connect_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    };
    let n = 300_000u64;
    let mut rates = Vec::new();
    for run in 0..RUNS {
        let topic = format!("bench-produce-{}-{run}", uuid::Uuid::new_v4().simple());
        runtime
            .block_on(tickflow::kafka::ensure_topic(&kafka, &topic, 8, &[]))
            .unwrap();
        let sink = KafkaSink::new(&kafka, &topic).unwrap();
        let encoder = Encoder::<Tick>::new(RecordKind::Tick, 1);
        let ticks: Vec<Tick> = stream(n).collect();
        let summary =
            produce_ticks(ticks.into_iter(), &encoder, &sink, Pace::default(), |_| {}).unwrap();
        rates.push(summary.rate());
    }
    report("encode + produce (acked)", rates);
}

fn main() {
    bench_generate_encode();
    bench_produce();
}
