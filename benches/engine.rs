//! Engine benchmark, in process on one core: pre-encoded ticks of 1,000 symbols go through
//! decode → 1s/1m/5m windows → RocksDB state commits → bar encoding. Prints ticks/s per run and
//! the median. `cargo bench --bench engine`.

mod support;

use std::time::Instant;
use support::{START, universe};

use tickflow::codec::{Bar, Decoder, Encoder, RecordKind, Tick};
use tickflow::config::topology::WindowSpec;
use tickflow::operators::{Output, WindowOperator};
use tickflow::sim::{SimConfig, TickStream};
use tickflow::state::WindowStore;

const TICKS: u64 = 2_000_000;
const RUNS: usize = 5;
const COMMIT_EVERY: usize = 100_000;

fn main() {
    let cfg = SimConfig {
        trades_per_second: 20_000.0,
        ..SimConfig::default()
    };
    let encoder = Encoder::<Tick>::new(RecordKind::Tick, 1);
    let encoded: Vec<Vec<u8>> = TickStream::from_config(&cfg, universe(), START, Some(TICKS))
        .unwrap()
        .map(|t| encoder.encode(&t).unwrap())
        .collect();
    let spec: WindowSpec = serde_saphyr::from_str(
        "id: bars\ninput: ticks\ntumbling: [1s, 1m, 5m]\ngrace: 5s\naggregates: [open, high, low, close, volume, vwap]\n",
    )
    .unwrap();
    let bar_encoder = Encoder::<Bar>::new(RecordKind::Bar, 2);
    let mut rates = Vec::new();
    let mut bars_total = 0;
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let store = WindowStore::open(dir.path()).unwrap();
        let mut decoder = Decoder::<Tick>::new(RecordKind::Tick);
        decoder.learn(1, RecordKind::Tick.schema_text()).unwrap();
        let mut op = WindowOperator::new(&spec).unwrap();
        let (mut out, mut buf, mut bars) = (Vec::new(), Vec::with_capacity(256), 0u64);
        let started = Instant::now();
        for (offset, bytes) in encoded.iter().enumerate() {
            let tick = decoder.decode(bytes).unwrap();
            op.process(&tick.symbol, &tick, offset as i64, &mut out);
            for o in out.drain(..) {
                if let Output::Bar(b) = o {
                    bar_encoder.encode_into(&b, &mut buf).unwrap();
                    bars += 1;
                }
            }
            if (offset + 1) % COMMIT_EVERY == 0 {
                store
                    .commit(&op.take_changes(), offset as i64 + 1, op.stream_time(), &[])
                    .unwrap();
            }
        }
        store
            .commit(&op.take_changes(), TICKS as i64, op.stream_time(), &[])
            .unwrap();
        rates.push(TICKS as f64 / started.elapsed().as_secs_f64());
        bars_total = bars;
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "decode → windows (1s/1m/5m, 1000 symbols) → RocksDB → encode: median {:.0} ticks/s   runs [{}]   ({} bars per run)",
        sorted[RUNS / 2],
        shown.join(", "),
        bars_total
    );
}
