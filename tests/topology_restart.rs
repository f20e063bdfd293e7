//! A restart resumes exactly where the engine stopped. Bars per symbol: a seeded simulation
//! of 625,000 ticks (250,000 unless `TICKFLOW_TEST_FULL=1`) with late and out-of-order
//! ones; the engine is SIGKILLed at 10 random points, and 3 times its state directory is
//! deleted before the restart, so the stores are rebuilt from their changelog topics.
//! Re-keyed by venue through a repartition topic: 300,000 ticks (120,000 unless full),
//! SIGTERM, SIGKILL, and SIGKILL with the state deleted. Each time the final bars and late
//! ticks equal the brute-force ones, and the topics hold each once: every record is counted,
//! none may be extra (a replay after a crash must not write its outputs again).

use crate::common;

use std::time::Instant;

use common::golden::{Rules, assert_outputs_once, simulate_into, symbol_bars_rules};
use common::process::{crash_env, interrupt, start_engine};
use tickflow::codec::RegistryClient;
use tickflow::sim::SimConfig;

const S: i64 = 1_000_000;

/// One interruption: after how many records (counted from the restart), which signal, and
/// whether the state directory is deleted before the next start.
type Stop = (u64, &'static str, bool);

/// `n` SIGKILLs after a seeded random 12,000 to 48,000 records each (scaled, see
/// `common::scaled`), deleting the state before every third restart.
fn random_kills(n: usize) -> Vec<Stop> {
    let (low, high) = (common::scaled(12_000), common::scaled(48_000));
    common::kill_points(0x2545_f491_4f6c_dd1d, n, low, high)
        .into_iter()
        .zip(1..)
        .map(|(after, i)| (after, "KILL", i % 3 == 0))
        .collect()
}

/// Simulates `count` ticks, runs the topology made of `operators` (its window has id `bars`),
/// interrupting it at each of `stops` and then running it to the end, and checks the outputs
/// against `rules`.
async fn restart_scenario(
    prefix: &str,
    operators: &str,
    rules: Rules<'_>,
    count: u64,
    stops: Vec<Stop>,
) {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique(prefix);
    let input = format!("{id}.ticks");
    let cfg = SimConfig {
        late_fraction: 0.005,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 100, count).await;

    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "application: {id}\nsources:\n  ticks: {{ topic: {input} }}\noperators:\n{operators}      late_topic: {id}.late\nsinks:\n  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
        ),
    )
    .unwrap();
    let env = crash_env(&kafka.bootstrap_servers, &registry.url, dir.path());

    let started = Instant::now();
    let (t, e) = (topology.clone(), env.clone());
    let state = dir.path().join("state");
    let runs = stops.len() + 1;
    tokio::task::spawn_blocking(move || {
        for (records, signal, delete_state) in stops {
            interrupt(start_engine(&t, &e, Some("restart-test")), records, signal);
            if delete_state {
                // A new host: the state directory is gone and is rebuilt from the changelogs.
                std::fs::remove_dir_all(&state).unwrap();
            }
        }
        let status = start_engine(&t, &e, Some("restart-test"))
            .child
            .wait()
            .unwrap();
        assert!(status.success());
    })
    .await
    .unwrap();
    eprintln!("{prefix}: {runs} engine runs took {:?}", started.elapsed());

    assert_outputs_once(&kafka, &client, &id, (&input, count as usize + 8), &rules).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_three_with_the_state_lost_change_nothing() {
    let operators = "  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m]\n      grace: 2s\n      aggregates: [open, high, low, close, volume, vwap]\n";
    let rules = symbol_bars_rules();
    let stops = random_kills(10);
    assert_eq!(stops.iter().filter(|s| s.2).count(), 3);
    restart_scenario("restart", operators, rules, common::scaled(625_000), stops).await;
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
    let after = common::scaled(40_000);
    let stops = vec![
        (after, "TERM", false),
        (after, "KILL", false),
        (after, "KILL", true),
    ];
    restart_scenario(
        "restart-venue",
        operators,
        rules,
        common::scaled(300_000),
        stops,
    )
    .await;
}
