//! Two instances share the partitions of one topology through the consumer group, each with
//! its own state directory (two hosts).
//! - On the test broker, one is stopped mid-run (SIGTERM: it commits and leaves the group),
//!   so the other takes its tasks over and restores their state from the changelogs; then it
//!   is restarted and takes some back. Each bar and late tick is in its topic exactly once,
//!   equal to the brute-force recomputation.
//! - On librdkafka's mock cluster, which expires a dead member after its session timeout
//!   (Tansu 0.6 keeps it as the group's leader), one is SIGKILLed mid-run and another host
//!   takes every task over: each bar and late tick is in its topic exactly once. Another
//!   stopped with SIGTERM while it waits for that hand-over stops within seconds.

use crate::common;

use common::golden::{Feed, assert_outputs_once, symbol_bars_rules, symbol_bars_topology};
use common::process::{
    engine_env, get, interrupt, records_processed, start_engine, start_engine_with,
    wait_for_metric, wait_for_records, wait_scraping,
};
use std::time::{Duration, Instant};
use tickflow::codec::RegistryClient;
use tickflow::sim::SimConfig;

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
    /// Produces the whole input, ended by end-of-input watermarks.
    async fn new(
        kafka: &tickflow::config::KafkaConfig,
        id: &str,
        symbols: usize,
        count: u64,
    ) -> Self {
        let (setup, feed) = Self::with_feed(kafka, id, symbols, count).await;
        tokio::task::spawn_blocking(move || feed.finish())
            .await
            .unwrap();
        setup
    }

    /// Produces nothing yet: the test feeds the input in parts.
    async fn with_feed(
        kafka: &tickflow::config::KafkaConfig,
        id: &str,
        symbols: usize,
        count: u64,
    ) -> (Self, Feed) {
        let registry = common::TestRegistry::start().await;
        let client = RegistryClient::new(&registry.url).unwrap();
        let input = format!("{id}.ticks");
        let cfg = SimConfig {
            late_fraction: 0.005,
            ..SimConfig::default()
        };
        let feed = Feed::new(kafka, &client, &input, cfg, symbols, count).await;
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("t.yaml");
        std::fs::write(&topology, symbol_bars_topology(id, &input, "")).unwrap();
        let setup = Self {
            registry,
            client,
            input,
            dir,
            topology,
        };
        (setup, feed)
    }

    /// The environment of `tickflow run` on `kafka` as host `host` (its own state directory).
    fn env(&self, kafka: &tickflow::config::KafkaConfig, host: &str) -> Vec<(String, String)> {
        let state = self.dir.path().join(host);
        engine_env(&kafka.bootstrap_servers, &self.registry.url, &state)
    }

    /// [`Setup::env`] on the mock cluster: a 6 s session timeout (the mock expires a dead
    /// member after it) and the hand-over timeout `handover`.
    fn mock_env(
        &self,
        kafka: &tickflow::config::KafkaConfig,
        host: &str,
        handover: &str,
    ) -> Vec<(String, String)> {
        let mut env = self.env(kafka, host);
        let session = "TICKFLOW_KAFKA__PROPERTIES__SESSION.TIMEOUT.MS";
        env.push((session.into(), "6000".into()));
        env.push(("TICKFLOW_STATE__HANDOVER_TIMEOUT".into(), handover.into()));
        env
    }
}

/// The input arrives in three parts, each produced when the engines have run the previous one
/// dry, so that every step happens mid-stream however fast the machine is: A and B share the
/// first; A stops and B works on A's tasks in the second; A comes back, takes tasks back, and
/// both finish the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_hands_its_tasks_over_and_takes_them_back() {
    const COUNT: u64 = 400_000;
    let kafka = common::kafka();
    let id = common::unique("failover");
    let (setup, mut feed) = Setup::with_feed(&kafka, &id, 100, COUNT).await;
    let (env_a, env_b) = (setup.env(&kafka, "host-a"), setup.env(&kafka, "host-b"));
    let t = setup.topology.clone();
    tokio::task::spawn_blocking(move || {
        feed.send(100_000);
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
        // (the second part lands on all 8 partitions) before A comes back.
        wait_for_metric(&mut b, PARTITIONS, |n| n == 8, "B runs all 8 tasks");
        let before = records_processed(b.metrics_port).unwrap_or(0);
        feed.send(100_000);
        wait_for_records(&mut b, before + 60_000, "A's return");
        // A takes some back, then both share the rest.
        let mut a = start_engine(&t, &env_a, None);
        wait_for_metric(&mut a, PARTITIONS, |n| n > 0, "A takes tasks back");
        wait_for_metric(&mut b, PARTITIONS, |n| n < 8, "B hands tasks back");
        feed.finish();
        let status = a.child.wait().unwrap();
        assert!(status.success(), "A finishes");
        assert!(b.child.wait().unwrap().success(), "B finishes");
    })
    .await
    .unwrap();

    let rules = symbol_bars_rules();
    let input = (setup.input.as_str(), COUNT as usize + 8);
    assert_outputs_once(&kafka, &setup.client, &id, input, &rules).await;
}

/// A SIGKILL, then failover to a different instance (its own state directory, never the
/// killed one's), on a broker that expires the dead member: the new owner waits for the
/// group to drop the killed instance (6 s session timeout) and for the hand-over (the killed
/// instance never released its partitions: 5 s), restores their last commits from the
/// changelogs, reads back what the killed one wrote after its last commit (it must find some
/// and not write them again), and finishes. Every bar and late tick is
/// in its topic once (counted record by record) and equals the brute-force recomputation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_fails_over_to_another_with_each_bar_once() {
    const COUNT: u64 = 200_000;
    let id = common::unique("failover-kill");
    let (_cluster, kafka) = common::mock_cluster(&id);
    let setup = Setup::new(&kafka, &id, 50, COUNT).await;
    let env = |host| setup.mock_env(&kafka, host, "5s");
    let (env_a, env_b) = (env("host-a"), env("host-b"));
    let t = setup.topology.clone();
    tokio::task::spawn_blocking(move || {
        // Commits a second apart; the kill lands 400 ms after one, so that A has written
        // outputs since its last commit, which B must read back and not write again.
        let mut a = start_engine_with(&t, &env_a, &["--commit-interval", "1s"]);
        wait_for_metric(&mut a, COMMITTED, |n| n >= 1, "a commit");
        std::thread::sleep(std::time::Duration::from_millis(400));
        let killed = records_processed(a.metrics_port).unwrap_or(0);
        assert!(killed < COUNT, "A is killed mid-stream ({killed} records)");
        interrupt(a, 0, "KILL");
        let b = start_engine_with(&t, &env_b, &["--stop-when-idle", "5s"]);
        let (status, metrics) = wait_scraping(b);
        assert!(status.success(), "B finishes");
        let replayed = metrics
            .lines()
            .find_map(|l| l.strip_prefix("tickflow_replayed_outputs_total "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(
            replayed.is_some_and(|n| n > 0),
            "B read back what A wrote after its last commit: {replayed:?}"
        );
    })
    .await
    .unwrap();

    let rules = symbol_bars_rules();
    let input = (setup.input.as_str(), COUNT as usize + 8);
    assert_outputs_once(&kafka, &setup.client, &id, input, &rules).await;
}

/// SIGTERM is honoured while a task waits for its previous owner's hand-over: an instance
/// that finds a killed one's partitions unreleased (hand-over timeout 60 s) stops within
/// seconds, with success, instead of waiting the minute out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_the_hand_over_wait_is_prompt() {
    const COUNT: u64 = 100_000;
    let id = common::unique("failover-stop");
    let (_cluster, kafka) = common::mock_cluster(&id);
    let setup = Setup::new(&kafka, &id, 20, COUNT).await;
    let env = |host| setup.mock_env(&kafka, host, "60s");
    let (env_a, env_b) = (env("host-a"), env("host-b"));
    let t = setup.topology.clone();
    tokio::task::spawn_blocking(move || {
        let mut a = start_engine(&t, &env_a, None);
        wait_for_metric(&mut a, COMMITTED, |n| n >= 1, "a commit");
        interrupt(a, 0, "KILL");
        let mut b = start_engine(&t, &env_b, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !get(b.metrics_port, "/readyz").is_some_and(|r| r.contains("restoring")) {
            assert!(Instant::now() < deadline, "B never began to open its tasks");
            assert!(b.child.try_wait().unwrap().is_none(), "B stopped");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
        let stopping = Instant::now();
        let pid = b.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(sent.unwrap().success());
        assert!(b.child.wait().unwrap().success(), "B stops cleanly");
        let took = stopping.elapsed();
        assert!(took < Duration::from_secs(10), "B took {took:?} to stop");
    })
    .await
    .unwrap();
}
