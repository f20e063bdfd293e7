//! The broker goes away mid-run and comes back: the engine keeps retrying (librdkafka
//! reconnects with backoff, commits wait for the broker) and, once the broker is back,
//! finishes the run with no tick lost or counted twice. The test runs its own broker
//! (`tickflow broker`, SQLite storage, which survives a restart) so it can stop it: SIGKILL,
//! then 8 s down, then a restart on the same port and data directory.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::golden::{
    assert_bars_equal, bars_of, expected_with, read_all, read_at_least, simulate_into,
    symbol_bars_rules, symbol_bars_topology, tick_log,
};
use common::process::{engine_env, start_engine, wait_for_records};
use tickflow::codec::RegistryClient;
use tickflow::config::KafkaConfig;
use tickflow::sim::SimConfig;

const COUNT: u64 = 200_000;

/// Starts `tickflow broker` on `port` with its data in `dir`, and waits until it listens.
fn start_broker(port: u16, dir: &Path) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["broker", "--port", &port.to_string(), "--data-dir"])
        .arg(dir)
        .env("TICKFLOW_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the broker did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_goes_away_and_comes_back_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let data = dir.path().join("broker");
    let mut broker = start_broker(port, &data);
    let kafka = KafkaConfig {
        bootstrap_servers: format!("127.0.0.1:{port}"),
        connect_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    };
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("broker-restart");
    let input = format!("{id}.ticks");
    let cfg = SimConfig {
        late_fraction: 0.005,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 50, COUNT).await;
    let topology = dir.path().join("t.yaml");
    std::fs::write(&topology, symbol_bars_topology(&id, &input, "")).unwrap();
    let env = engine_env(
        &kafka.bootstrap_servers,
        &registry.url,
        &dir.path().join("state"),
    );
    let (t, d) = (topology.clone(), data.clone());
    broker = tokio::task::spawn_blocking(move || {
        let mut engine = start_engine(&t, &env, None);
        wait_for_records(&mut engine, 60_000, "broker stop");
        broker.kill().unwrap();
        broker.wait().unwrap();
        std::thread::sleep(Duration::from_secs(8));
        assert!(
            engine.child.try_wait().unwrap().is_none(),
            "the engine must wait for the broker, not exit"
        );
        let broker = start_broker(port, &d);
        let status = engine.child.wait().unwrap();
        assert!(status.success(), "the engine finishes the run");
        broker
    })
    .await
    .unwrap();

    let (k, i) = (kafka.clone(), input.clone());
    let records = tokio::task::spawn_blocking(move || read_all(&k, &[&i], COUNT as usize + 8))
        .await
        .unwrap();
    let log = tick_log(&records, &client).await;
    let (want, _) = expected_with(&log, &symbol_bars_rules());
    let (k, n) = (kafka.clone(), want.len());
    let topics = [format!("{id}.bars.1s"), format!("{id}.bars.1m")];
    let bar_records = tokio::task::spawn_blocking(move || {
        read_at_least(&k, &[topics[0].as_str(), topics[1].as_str()], n)
    })
    .await
    .unwrap();
    assert_bars_equal(&bars_of(&bar_records, &client).await, &want);
    broker.kill().unwrap();
    broker.wait().unwrap();
}
