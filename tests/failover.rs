//! Two instances share the partitions of one topology through the consumer group, each with
//! its own state directory (two hosts).
//! - On the test broker, one is stopped mid-run (SIGTERM: it commits and leaves the group),
//!   so the other takes its tasks over and restores their state from the changelogs; then it
//!   is restarted and takes some back. The final bars equal the brute-force ones.
//! - On librdkafka's mock cluster, which expires a dead member after its session timeout
//!   (Tansu 0.6 keeps it as the group's leader), one is SIGKILLed mid-run and another host
//!   takes every task over: each bar and late tick is in its topic exactly once.

use crate::common;

use common::golden::assert_outputs_once;
use common::golden::{
    assert_bars_equal, bars_of, expected_with, late_of, read_all, read_at_least, simulate_into,
    symbol_bars_rules, symbol_bars_topology, tick_log,
};
use common::process::{
    engine_env, interrupt, records_processed, start_engine, start_engine_with, wait_for_metric,
    wait_for_records,
};
use tickflow::codec::RegistryClient;
use tickflow::sim::SimConfig;

const COUNT: u64 = 1_000_000;
const PARTITIONS: &str = "tickflow_assigned_partitions";
const COMMITTED: &str = "tickflow_commits_total{outcome=\"committed\"}";

/// A registry, `count` simulated ticks of `symbols` symbols (0.5 % late) in `{id}.ticks`, and
/// the topology file of `symbol_bars_topology` in a temporary directory.
struct Setup {
    registry: common::TestRegistry,
    client: RegistryClient,
    input: String,
    dir: tempfile::TempDir,
    topology: std::path::PathBuf,
}

impl Setup {
    async fn new(
        kafka: &tickflow::config::KafkaConfig,
        id: &str,
        symbols: usize,
        count: u64,
    ) -> Self {
        let registry = common::TestRegistry::start().await;
        let client = RegistryClient::new(&registry.url).unwrap();
        let input = format!("{id}.ticks");
        let cfg = SimConfig {
            late_fraction: 0.005,
            ..SimConfig::default()
        };
        simulate_into(kafka, &client, &input, cfg, symbols, count).await;
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("t.yaml");
        std::fs::write(&topology, symbol_bars_topology(id, &input, "")).unwrap();
        Self {
            registry,
            client,
            input,
            dir,
            topology,
        }
    }

    /// The environment of `tickflow run` on `kafka` as host `host` (its own state directory).
    fn env(&self, kafka: &tickflow::config::KafkaConfig, host: &str) -> Vec<(String, String)> {
        let state = self.dir.path().join(host);
        engine_env(&kafka.bootstrap_servers, &self.registry.url, &state)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_hands_its_tasks_over_and_takes_them_back() {
    let kafka = common::kafka();
    let id = common::unique("failover");
    let setup = Setup::new(&kafka, &id, 100, COUNT).await;
    let (env_a, env_b) = (setup.env(&kafka, "host-a"), setup.env(&kafka, "host-b"));
    let Setup {
        client,
        input,
        topology,
        ..
    } = &setup;
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
    let (want_bars, want_late) = expected_with(&tick_log(&records, client).await, &rules);
    let (k, n) = (kafka.clone(), want_bars.len());
    let (b1, b2) = (format!("{id}.bars.1s"), format!("{id}.bars.1m"));
    let bar_records = tokio::task::spawn_blocking(move || read_at_least(&k, &[&b1, &b2], n))
        .await
        .unwrap();
    assert_bars_equal(&bars_of(&bar_records, client).await, &want_bars);
    let (k, l, n) = (kafka.clone(), format!("{id}.late"), want_late.len());
    let late_records = tokio::task::spawn_blocking(move || read_at_least(&k, &[&l], n))
        .await
        .unwrap();
    assert_eq!(late_of(&late_records, client).await, want_late);
}

/// A SIGKILL, then failover to a different instance (its own state directory, never the
/// killed one's), on a broker that expires the dead member: the new owner waits for the
/// group to drop the killed instance (6 s session timeout) and for the hand-over (the killed
/// instance never released its partitions: 5 s), restores their last commits from the
/// changelogs, reads back what was written since, and finishes. Every bar and late tick is
/// in its topic once (counted record by record) and equals the brute-force recomputation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_fails_over_to_another_with_each_bar_once() {
    const COUNT: u64 = 200_000;
    let id = common::unique("failover-kill");
    let (_cluster, kafka) = common::mock_cluster(&id);
    let setup = Setup::new(&kafka, &id, 50, COUNT).await;
    let env = |host: &str| {
        let mut env = setup.env(&kafka, host);
        env.push((
            "TICKFLOW_KAFKA__PROPERTIES__SESSION.TIMEOUT.MS".into(),
            "6000".into(),
        ));
        env.push(("TICKFLOW_STATE__HANDOVER_TIMEOUT".into(), "5s".into()));
        env
    };
    let (env_a, env_b) = (env("host-a"), env("host-b"));
    let t = setup.topology.clone();
    tokio::task::spawn_blocking(move || {
        let mut a = start_engine(&t, &env_a, None);
        wait_for_metric(&mut a, COMMITTED, |n| n >= 3, "three commits");
        let killed = records_processed(a.metrics_port).unwrap_or(0);
        assert!(killed < COUNT, "A is killed mid-stream ({killed} records)");
        interrupt(a, 0, "KILL");
        let mut b = start_engine_with(&t, &env_b, &["--stop-when-idle", "5s"]);
        assert!(b.child.wait().unwrap().success(), "B finishes");
    })
    .await
    .unwrap();

    let rules = symbol_bars_rules();
    let input = (setup.input.as_str(), COUNT as usize + 8);
    assert_outputs_once(&kafka, &setup.client, &id, input, &rules).await;
}
