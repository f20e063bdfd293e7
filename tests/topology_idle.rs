//! A live feed that just stops (no end-of-input watermark): with `idle_watermark`, the engine
//! appends watermarks to the quiet partitions and every window closes; the bars equal a
//! brute-force recomputation from the input log, which now holds those watermarks.

use crate::common;

use common::golden::{
    Rules, assert_bars_equal, bars_of, expected_with, read_all, read_at_least, run_until_idle,
    simulate_open_ended, tick_log,
};
use tickflow::codec::RegistryClient;
use tickflow::metrics::Metrics;
use tickflow::sim::SimConfig;

const COUNT: u64 = 30_000;
const S: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_partitions_get_watermarks_and_every_window_closes() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("idle");
    let input = format!("{id}.ticks");
    simulate_open_ended(&kafka, &client, &input, SimConfig::default(), 50, COUNT).await;

    let topology = format!(
        "application: {id}\nsources:\n  ticks: {{ topic: {input}, idle_watermark: 2s }}\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 5s]\n      grace: 1s\n      aggregates: [open, high, low, close, volume, vwap]\n      late_topic: {id}.late\nsinks:\n  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
    );
    let stats = run_until_idle(&kafka, &registry.url, &topology, Metrics::new()).await;
    assert!(stats.idle_watermarks >= 8, "{stats:?}");

    let (k, i) = (kafka.clone(), input.clone());
    let records = tokio::task::spawn_blocking(move || read_at_least(&k, &[&i], COUNT as usize))
        .await
        .unwrap();
    let log = tick_log(&records, &client).await;
    let rules = Rules {
        windows: &[("1s", S, S), ("5s", 5 * S, 5 * S)],
        grace: S,
        key: |t| t.symbol.clone(),
        keep: |_| true,
        session_gap: None,
    };
    let (want_bars, _) = expected_with(&log, &rules);
    assert_eq!(stats.bars as usize, want_bars.len(), "every window closed");
    let (k, n) = (kafka.clone(), stats.bars as usize);
    let (b1, b2) = (format!("{id}.bars.1s"), format!("{id}.bars.5s"));
    let bar_records = tokio::task::spawn_blocking(move || read_all(&k, &[&b1, &b2], n))
        .await
        .unwrap();
    assert_bars_equal(&bars_of(&bar_records, &client).await, &want_bars);
}
