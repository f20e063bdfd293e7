//! The engine's computation is correct to the last tick: a seeded simulation with
//! out-of-order and late ticks goes through the broker and `tickflow`'s engine, and every bar
//! at every resolution equals a brute-force recomputation from the same partitioned log; every
//! late tick is on the late topic. Once for the flagship (bars per symbol) and once re-keyed
//! by venue through a repartition topic.

use crate::common;

use common::golden::{
    Rules, assert_bars_equal, bars_of, expected_with, flagship_rules, late_of, read_all,
    run_until_idle, session_rules, simulate_into, tick_log, venue_hopping_rules,
};
use tickflow::codec::RegistryClient;
use tickflow::config::KafkaConfig;
use tickflow::metrics::Metrics;
use tickflow::sim::SimConfig;
use tickflow::topology::runtime::RunStats;

/// 1% out of order (up to 2 s), and `late` of the ticks late by 1-5 min.
fn disorderly(late: f64) -> SimConfig {
    SimConfig {
        out_of_order_fraction: 0.01,
        late_fraction: late,
        ..SimConfig::default()
    }
}

/// Checks the bar topics `{id}.bars.<resolution>` and the late topic `{id}.late` against a
/// brute-force recomputation from the input topic under `rules`.
async fn check_outputs(
    kafka: &KafkaConfig,
    client: &RegistryClient,
    id: &str,
    input_records: usize,
    stats: &RunStats,
    rules: &Rules<'_>,
) {
    let (k, i) = (kafka.clone(), format!("{id}.ticks"));
    let input = tokio::task::spawn_blocking(move || read_all(&k, &[&i], input_records))
        .await
        .unwrap();
    let log = tick_log(&input, client).await;
    let (want_bars, want_late) = expected_with(&log, rules);
    assert!(
        want_late.len() > 500,
        "the run has late ticks ({})",
        want_late.len()
    );
    let mut bar_topics: Vec<String> = rules
        .windows
        .iter()
        .map(|(r, _, _)| format!("{id}.bars.{r}"))
        .collect();
    if rules.session_gap.is_some() {
        bar_topics.push(format!("{id}.bars.session"));
    }
    let (k, n) = (kafka.clone(), stats.bars as usize);
    let bar_records = tokio::task::spawn_blocking(move || {
        read_all(
            &k,
            &bar_topics.iter().map(String::as_str).collect::<Vec<_>>(),
            n,
        )
    })
    .await
    .unwrap();
    assert_bars_equal(&bars_of(&bar_records, client).await, &want_bars);

    let (k, l, n) = (kafka.clone(), format!("{id}.late"), stats.late as usize);
    let late_records = tokio::task::spawn_blocking(move || read_all(&k, &[&l], n))
        .await
        .unwrap();
    let got_late = late_of(&late_records, client).await;
    assert_eq!(
        got_late.len(),
        late_records.len(),
        "each late (tick, resolution) once"
    );
    assert_eq!(got_late, want_late);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_equal_brute_force_recomputation() {
    // The in-memory driver checks the same at 500,000 ticks (tests/driver.rs); through the
    // broker, 200,000 in the test command and 500,000 with TICKFLOW_TEST_FULL=1.
    let count = common::scaled(500_000);
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("golden");
    // Ticks of 200 symbols over 8 partitions.
    simulate_into(
        &kafka,
        &client,
        &format!("{id}.ticks"),
        disorderly(0.005),
        200,
        count,
    )
    .await;

    let topology = format!(
        "application: {id}\nsources:\n  ticks: {{ topic: {id}.ticks }}\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m, 5m, 1h]\n      grace: 5s\n      aggregates: [open, high, low, close, volume, vwap, trade_count, turnover]\n      late_topic: {id}.late\nsinks:\n  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
    );
    let stats = run_until_idle(&kafka, &registry.url, &topology, Metrics::new()).await;
    assert_eq!(
        stats.records,
        count + 8,
        "every tick and watermark read once"
    );
    assert_eq!((stats.dead_letters, stats.forwarded), (0, 0));

    let rules = flagship_rules();
    check_outputs(&kafka, &client, &id, count as usize + 8, &stats, &rules).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_venue_repartitions_and_equals_brute_force() {
    const COUNT: u64 = 200_000;
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("golden-venue");
    simulate_into(
        &kafka,
        &client,
        &format!("{id}.ticks"),
        disorderly(0.01),
        100,
        COUNT,
    )
    .await;

    let topology = format!(
        "application: {id}\nsources:\n  ticks: {{ topic: {id}.ticks }}\noperators:\n  - filter: {{ id: round_lots, input: ticks, where: [{{ field: size, op: ge, value: 100 }}] }}\n  - group_by: {{ id: by_venue, input: round_lots, field: venue }}\n  - window:\n      id: venue_bars\n      input: by_venue\n      hopping: [{{ size: 1m, advance: 30s }}, {{ size: 5m, advance: 1m }}]\n      grace: 5s\n      aggregates: [open, high, low, close, volume, vwap, trade_count]\n      late_topic: {id}.late\nsinks:\n  - {{ input: venue_bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
    );
    let stats = run_until_idle(&kafka, &registry.url, &topology, Metrics::new()).await;
    assert_eq!((stats.dead_letters, stats.duplicates), (0, 0));
    assert!(
        stats.forwarded > COUNT / 2 && stats.filtered > 0,
        "{stats:?}"
    );
    assert_eq!(
        stats.forwarded + stats.filtered,
        COUNT,
        "each tick forwarded or filtered once"
    );

    let rules = venue_hopping_rules();
    check_outputs(&kafka, &client, &id, COUNT as usize + 8, &stats, &rules).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_bars_equal_brute_force_recomputation() {
    const COUNT: u64 = 100_000;
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("golden-session");
    // 200 trades per second over 100 symbols: bursts and pauses around the 500 ms gap.
    let cfg = SimConfig {
        trades_per_second: 200.0,
        ..disorderly(0.01)
    };
    simulate_into(&kafka, &client, &format!("{id}.ticks"), cfg, 100, COUNT).await;

    let topology = format!(
        "application: {id}\nsources:\n  ticks: {{ topic: {id}.ticks }}\noperators:\n  - window:\n      id: sessions\n      input: ticks\n      session: {{ gap: 500ms }}\n      grace: 3s\n      aggregates: [open, high, low, close, volume, vwap, trade_count]\n      late_topic: {id}.late\nsinks:\n  - {{ input: sessions, topic: \"{id}.bars.{{resolution}}\" }}\n"
    );
    let stats = run_until_idle(&kafka, &registry.url, &topology, Metrics::new()).await;
    assert_eq!(stats.dead_letters, 0);
    assert!(
        stats.bars > 20 * 100,
        "sessions split and merge, not one per symbol: {stats:?}"
    );
    let rules = session_rules();
    check_outputs(&kafka, &client, &id, COUNT as usize + 8, &stats, &rules).await;
}
