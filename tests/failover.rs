//! Two instances share the partitions of one topology through the consumer group, each with
//! its own state directory (two hosts). One is stopped mid-run (SIGTERM: it commits and leaves
//! the group), so the other takes its tasks over and restores their state from the
//! changelogs; then it is restarted and takes some back. The final bars equal the brute-force
//! ones.

use crate::common;

use common::golden::{
    assert_bars_equal, bars_of, expected_with, late_of, read_all, read_at_least, simulate_into,
    symbol_bars_rules, symbol_bars_topology, tick_log,
};
use common::process::{
    engine_env, records_processed, start_engine, wait_for_metric, wait_for_records,
};
use tickflow::codec::RegistryClient;
use tickflow::sim::SimConfig;

const COUNT: u64 = 1_000_000;
const PARTITIONS: &str = "tickflow_assigned_partitions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_hands_its_tasks_over_and_takes_them_back() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("failover");
    let input = format!("{id}.ticks");
    let cfg = SimConfig {
        late_fraction: 0.005,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 100, COUNT).await;

    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("t.yaml");
    std::fs::write(&topology, symbol_bars_topology(&id, &input, "")).unwrap();
    let servers = kafka.bootstrap_servers.clone();
    let env_a = engine_env(&servers, &registry.url, &dir.path().join("host-a"));
    let env_b = engine_env(&servers, &registry.url, &dir.path().join("host-b"));
    let t = topology.clone();
    tokio::task::spawn_blocking(move || {
        let mut a = start_engine(&t, &env_a, None);
        let mut b = start_engine(&t, &env_b, None);
        wait_for_records(&mut a, 20_000, "failover");
        wait_for_records(&mut b, 20_000, "failover");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &a.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(a.child.wait().unwrap().success(), "A stops cleanly");
        // B takes every task over, restoring A's from the changelogs, and works on them
        // before A comes back.
        wait_for_metric(&mut b, PARTITIONS, |n| n == 8, "B runs all 8 tasks");
        let before = records_processed(b.metrics_port).unwrap_or(0);
        wait_for_records(&mut b, before + 30_000, "A's return");
        // A takes some back mid-stream.
        let mut a = start_engine(&t, &env_a, None);
        wait_for_metric(&mut a, PARTITIONS, |n| n > 0, "A takes tasks back");
        wait_for_metric(&mut b, PARTITIONS, |n| n < 8, "B hands tasks back");
        let status = a.child.wait().unwrap();
        assert!(status.success(), "A finishes");
        assert!(b.child.wait().unwrap().success(), "B finishes");
    })
    .await
    .unwrap();

    let (k, i) = (kafka.clone(), input.clone());
    let records = tokio::task::spawn_blocking(move || read_all(&k, &[&i], COUNT as usize + 8))
        .await
        .unwrap();
    let rules = symbol_bars_rules();
    let (want_bars, want_late) = expected_with(&tick_log(&records, &client).await, &rules);
    let (k, n) = (kafka.clone(), want_bars.len());
    let (b1, b2) = (format!("{id}.bars.1s"), format!("{id}.bars.1m"));
    let bar_records = tokio::task::spawn_blocking(move || read_at_least(&k, &[&b1, &b2], n))
        .await
        .unwrap();
    assert_bars_equal(&bars_of(&bar_records, &client).await, &want_bars);
    let (k, l, n) = (kafka.clone(), format!("{id}.late"), want_late.len());
    let late_records = tokio::task::spawn_blocking(move || read_at_least(&k, &[&l], n))
        .await
        .unwrap();
    assert_eq!(late_of(&late_records, &client).await, want_late);
}
