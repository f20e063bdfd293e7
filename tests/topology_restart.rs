//! A restart resumes exactly where the engine stopped: the process is stopped mid-stream with
//! SIGTERM, then twice with SIGKILL (the second time its state directory is deleted, so the
//! stores are rebuilt from their changelog topics), restarted each time, and the final bars
//! (identical replays collapsed by bar identity) equal the brute-force ones.
//! Once for bars per symbol and once re-keyed by venue through a repartition topic.

mod common;

use std::time::Instant;

use common::golden::{
    Rules, assert_bars_equal, bars_of, expected_with, late_of, read_all, read_at_least,
    simulate_into, tick_log,
};
use common::process::{engine_env, interrupt, start_engine};
use tickflow::codec::RegistryClient;
use tickflow::sim::SimConfig;

const COUNT: u64 = 300_000;
const S: i64 = 1_000_000;

/// Simulates `COUNT` ticks, runs the topology made of `operators` (its window has id `bars`)
/// four times (SIGTERM, SIGKILL, SIGKILL and the state deleted, to the end) and checks the outputs against `rules`.
async fn restart_scenario(prefix: &str, operators: &str, rules: Rules<'_>) {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique(prefix);
    let input = format!("{id}.ticks");
    let cfg = SimConfig {
        late_fraction: 0.005,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 100, COUNT).await;

    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "application: {id}\nsources:\n  ticks: {{ topic: {input} }}\noperators:\n{operators}      late_topic: {id}.late\nsinks:\n  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
        ),
    )
    .unwrap();
    let env = engine_env(
        &kafka.bootstrap_servers,
        &registry.url,
        &dir.path().join("state"),
    );

    let started = Instant::now();
    let (t, e) = (topology.clone(), env.clone());
    let state = dir.path().join("state");
    tokio::task::spawn_blocking(move || {
        interrupt(start_engine(&t, &e, Some("restart-test")), 40_000, "TERM");
        interrupt(start_engine(&t, &e, Some("restart-test")), 40_000, "KILL");
        interrupt(start_engine(&t, &e, Some("restart-test")), 40_000, "KILL");
        // A new host: the state directory is gone and is rebuilt from the changelogs.
        std::fs::remove_dir_all(&state).unwrap();
        let status = start_engine(&t, &e, Some("restart-test"))
            .child
            .wait()
            .unwrap();
        assert!(status.success());
    })
    .await
    .unwrap();
    eprintln!("{prefix}: four engine runs took {:?}", started.elapsed());

    let (k, i) = (kafka.clone(), input.clone());
    let records = tokio::task::spawn_blocking(move || read_all(&k, &[&i], COUNT as usize + 8))
        .await
        .unwrap();
    let log = tick_log(&records, &client).await;
    let (want_bars, want_late) = expected_with(&log, &rules);
    let n_bars = want_bars.len();
    let bar_topics: Vec<String> = rules
        .windows
        .iter()
        .map(|(r, _, _)| format!("{id}.bars.{r}"))
        .collect();
    let k = kafka.clone();
    let bar_records = tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = bar_topics.iter().map(String::as_str).collect();
        read_at_least(&k, &topics, n_bars)
    })
    .await
    .unwrap();
    assert_bars_equal(&bars_of(&bar_records, &client).await, &want_bars);
    let (k, l, n) = (kafka.clone(), format!("{id}.late"), want_late.len());
    let late_records = tokio::task::spawn_blocking(move || read_at_least(&k, &[&l], n))
        .await
        .unwrap();
    assert_eq!(late_of(&late_records, &client).await, want_late);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigkill_mid_stream_change_nothing() {
    let operators = "  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m]\n      grace: 2s\n      aggregates: [open, high, low, close, volume, vwap]\n";
    let rules = Rules {
        windows: &[("1s", S, S), ("1m", 60 * S, 60 * S)],
        grace: 2 * S,
        key: |t| t.symbol.clone(),
        keep: |_| true,
        session_gap: None,
    };
    restart_scenario("restart", operators, rules).await;
}

/// A crash between forwarding and committing replays ticks into the repartition topic; the
/// window tasks must count each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_a_group_by_counts_replayed_ticks_once() {
    let operators = "  - group_by: { id: by_venue, input: ticks, field: venue }\n  - window:\n      id: bars\n      input: by_venue\n      tumbling: [1s, 1m]\n      grace: 2s\n      aggregates: [open, high, low, close, volume, vwap]\n";
    let rules = Rules {
        windows: &[("1s", S, S), ("1m", 60 * S, 60 * S)],
        grace: 2 * S,
        key: |t| t.venue.clone(),
        keep: |_| true,
        session_gap: None,
    };
    restart_scenario("restart-venue", operators, rules).await;
}
