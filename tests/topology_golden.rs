//! The flagship computation is correct to the last tick: a seeded simulation with
//! out-of-order and late ticks goes through the broker and `tickflow`'s engine, and every bar
//! at every resolution equals a brute-force recomputation from the same partitioned log; every
//! late tick is on the late topic.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::golden::{
    assert_bars_equal, bars_of, expected, late_of, read_all, simulate_into, tick_log,
};
use tickflow::codec::RegistryClient;
use tickflow::config::{AppConfig, TopologySpec};
use tickflow::metrics::Metrics;
use tickflow::sim::SimConfig;
use tickflow::topology::runtime::{RunOptions, run};

const COUNT: u64 = 500_000;
const S: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_equal_brute_force_recomputation() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("golden");
    let input = format!("{id}.ticks");
    // 500,000 ticks of 200 symbols, 1% out of order (up to 2 s), 0.5% late (1-5 min).
    let cfg = SimConfig {
        out_of_order_fraction: 0.01,
        late_fraction: 0.005,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 200, COUNT).await;

    let topology = format!(
        "application: {id}\nsources:\n  ticks: {{ topic: {input} }}\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m, 5m]\n      grace: 5s\n      aggregates: [open, high, low, close, volume, vwap, trade_count, turnover]\n      late_topic: {id}.late\nsinks:\n  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
    );
    let spec = TopologySpec::parse("golden.yaml", &topology).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut app = AppConfig {
        kafka: kafka.clone(),
        ..AppConfig::default()
    };
    app.registry.url = registry.url.clone();
    app.state.dir = state.path().to_path_buf();
    let options = RunOptions {
        commit_interval: Duration::from_millis(500),
        stop_when_idle: Some(Duration::from_secs(30)),
        instance_id: None,
    };
    let stats = run(
        &spec,
        &app,
        options,
        Metrics::new(),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    assert_eq!(
        stats.records,
        COUNT + 8,
        "every tick and watermark read once"
    );
    assert_eq!(stats.dead_letters, 0);

    let (k, i) = (kafka.clone(), input.clone());
    let input_records =
        tokio::task::spawn_blocking(move || read_all(&k, &[&i], COUNT as usize + 8))
            .await
            .unwrap();
    let log = tick_log(&input_records, &client).await;
    let (want_bars, want_late) =
        expected(&log, &[("1s", S), ("1m", 60 * S), ("5m", 300 * S)], 5 * S);
    assert!(
        want_late.len() > 1000,
        "the run has late ticks ({})",
        want_late.len()
    );

    let bar_topics = ["1s", "1m", "5m"].map(|r| format!("{id}.bars.{r}"));
    let (k, b, n) = (kafka.clone(), bar_topics.clone(), stats.bars as usize);
    let bar_records = tokio::task::spawn_blocking(move || {
        read_all(&k, &b.iter().map(String::as_str).collect::<Vec<_>>(), n)
    })
    .await
    .unwrap();
    let got_bars = bars_of(&bar_records, &client).await;
    assert_bars_equal(&got_bars, &want_bars);

    let (k, l, n) = (kafka.clone(), format!("{id}.late"), stats.late as usize);
    let late_records = tokio::task::spawn_blocking(move || read_all(&k, &[&l], n))
        .await
        .unwrap();
    let got_late = late_of(&late_records, &client).await;
    assert_eq!(
        got_late.len(),
        late_records.len(),
        "each late (tick, resolution) once"
    );
    assert_eq!(got_late, want_late);
}
