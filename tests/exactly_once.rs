//! `processing_guarantee: exactly_once_v2` against librdkafka's mock cluster, which implements
//! Kafka's transactional API (Tansu does not: it has no EndTxn). The mock checks producer ids
//! and epochs, but it neither bumps the epoch for a second producer with the same
//! transactional id, nor writes transaction markers, nor filters aborted records for
//! `read_committed` readers, nor stores transactional offsets: what is shown here is the
//! engine's side of the protocol (each commit a transaction carrying outputs, changelog
//! records and input offsets; retries; what a fenced instance does; restore from a
//! transactional changelog), not the broker's.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::golden::{
    assert_bars_equal, bars_of, expected_with, read_all, read_at_least, simulate_into,
    symbol_bars_rules, symbol_bars_topology, tick_log,
};
use common::process::{engine_env, interrupt, start_engine, wait_for_metric};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tickflow::codec::RegistryClient;
use tickflow::config::{AppConfig, KafkaConfig, TopologySpec};
use tickflow::metrics::Metrics;
use tickflow::sim::SimConfig;
use tickflow::topology::runtime::{RunOptions, run};

const EOS: &str = "processing_guarantee: exactly_once_v2\n";
const COMMITTED: &str = "tickflow_commits_total{outcome=\"committed\"}";
const RESTORED: &str = "tickflow_restore_records_total";

/// A mock cluster holding `count` simulated ticks (and the end-of-input watermarks) in
/// `{id}.ticks`, a registry, and the topology file of `symbol_bars_topology` under
/// `exactly_once_v2`.
struct Setup {
    id: String,
    cluster: MockCluster<'static, DefaultProducerContext>,
    kafka: KafkaConfig,
    registry: common::TestRegistry,
    client: RegistryClient,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(prefix: &str, count: u64) -> Self {
        let id = common::unique(prefix);
        let (cluster, kafka) = common::mock_cluster(&id);
        let registry = common::TestRegistry::start().await;
        let client = RegistryClient::new(&registry.url).unwrap();
        let input = format!("{id}.ticks");
        simulate_into(&kafka, &client, &input, SimConfig::default(), 50, count).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.yaml"),
            symbol_bars_topology(&id, &input, EOS),
        )
        .unwrap();
        Self {
            id,
            cluster,
            kafka,
            registry,
            client,
            dir,
        }
    }

    fn topology(&self) -> std::path::PathBuf {
        self.dir.path().join("t.yaml")
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    /// The environment of `tickflow run` processes, with a 6 s session timeout: the mock
    /// reassigns a killed member's partitions only after it.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = engine_env(
            &self.kafka.bootstrap_servers,
            &self.registry.url,
            &self.state(),
        );
        env.push((
            "TICKFLOW_KAFKA__PROPERTIES__SESSION.TIMEOUT.MS".into(),
            "6000".into(),
        ));
        env
    }

    /// Checks the bars of a run over the `count` ticks; see [`check_bars`].
    async fn check(&self, count: u64, exact: Option<usize>) {
        check_bars(
            &self.kafka,
            &self.client,
            &self.id,
            count as usize + 8,
            exact,
        )
        .await;
    }
}

/// Checks the bar topics against a brute-force recomputation from the `inputs` input records;
/// `exact`: the number of bar records, none repeated (a run without a crash).
async fn check_bars(
    kafka: &KafkaConfig,
    client: &RegistryClient,
    id: &str,
    inputs: usize,
    exact: Option<usize>,
) {
    let (k, i) = (kafka.clone(), format!("{id}.ticks"));
    let input = tokio::task::spawn_blocking(move || read_all(&k, &[&i], inputs))
        .await
        .unwrap();
    let (want, _) = expected_with(&tick_log(&input, client).await, &symbol_bars_rules());
    let (k, topics) = (
        kafka.clone(),
        [format!("{id}.bars.1s"), format!("{id}.bars.1m")],
    );
    let n = want.len();
    let records = tokio::task::spawn_blocking(move || {
        let topics = [topics[0].as_str(), topics[1].as_str()];
        match exact {
            Some(n) => read_all(&k, &topics, n),
            None => read_at_least(&k, &topics, n),
        }
    })
    .await
    .unwrap();
    assert_bars_equal(&bars_of(&records, client).await, &want);
}

/// Every commit is a transaction, including when the coordinator answers with retriable
/// errors; the bars equal the brute-force ones, each produced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_commit_is_a_transaction_and_the_bars_are_golden() {
    const COUNT: u64 = 100_000;
    let t = Setup::new("eos", COUNT).await;
    let cluster = &t.cluster;

    // The coordinator is loading, then not the coordinator: librdkafka retries both.
    use RDKafkaRespErr::*;
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::TxnOffsetCommit,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS],
    );
    let spec = TopologySpec::load(&t.topology()).unwrap();
    let mut app = AppConfig {
        kafka: t.kafka.clone(),
        ..AppConfig::default()
    };
    app.registry.url = t.registry.url.clone();
    app.state.dir = t.state();
    let options = RunOptions {
        commit_interval: Duration::from_millis(200),
        stop_when_idle: Some(Duration::from_secs(5)),
        instance_id: None,
    };
    let metrics = Metrics::new();
    let stop = Arc::new(AtomicBool::new(false));
    let stats = run(&spec, &app, options, metrics.clone(), stop)
        .await
        .unwrap();
    assert_eq!(stats.records, COUNT + 8);
    let committed = metrics.commits.with_label_values(&["committed"]).get();
    assert!(committed >= 3, "{committed} transactions committed");
    assert_eq!(metrics.commits.with_label_values(&["aborted"]).get(), 0);
    t.check(COUNT, Some(stats.bars as usize)).await;
}

/// A SIGKILL leaves a transaction open; the restarted instance (with its state directory
/// deleted, so it restores from the transactional changelog) resumes from the last committed
/// transaction and the bars equal the brute-force ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_resumes_from_its_last_transaction() {
    // The mock keeps at most 5 MB per partition and drops the oldest records beyond that:
    // 400,000 ticks over 8 partitions stay below it.
    const COUNT: u64 = 400_000;
    let t = Setup::new("eos-kill", COUNT).await;
    let (topology, state, env) = (t.topology(), t.state(), t.env());
    tokio::task::spawn_blocking(move || {
        // Each run commits at least two transactions before it is killed; the restarted
        // ones restore from the changelog first.
        for run in 0..3 {
            let mut engine = start_engine(&topology, &env, None);
            if run > 0 {
                wait_for_metric(&mut engine, RESTORED, |n| n > 0, "a restore");
            }
            wait_for_metric(&mut engine, COMMITTED, |n| n >= 2, "two commits");
            interrupt(engine, 0, "KILL");
            std::fs::remove_dir_all(&state).unwrap();
        }
        let status = start_engine(&topology, &env, None).child.wait().unwrap();
        assert!(status.success(), "the last run finishes");
    })
    .await
    .unwrap();
    t.check(COUNT, None).await;
}

/// What a broker answers a zombie: `PRODUCER_FENCED` to its commit (a newer producer with its
/// transactional id exists), or `ILLEGAL_GENERATION` to its offsets (the group moved on
/// without it, KIP-447). Either way the instance aborts and stops with an error instead of
/// writing on, and the restart resumes from the last committed transaction with the right
/// bars. (The mock gives a second producer with the same transactional id a new producer id
/// instead of bumping the epoch, so it cannot fence by itself: the answers are injected.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_instance_stops_and_its_restart_is_exact() {
    const COUNT: u64 = 400_000;
    let t = Setup::new("eos-fence", COUNT).await;
    let (topology, env) = (t.topology(), t.env());
    use RDKafkaRespErr::*;
    let refusals = [
        (RDKafkaApiKey::EndTxn, RD_KAFKA_RESP_ERR_PRODUCER_FENCED),
        (
            RDKafkaApiKey::TxnOffsetCommit,
            RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
        ),
    ];
    for (api, error) in refusals {
        let (path, e) = (topology.clone(), env.clone());
        let mut engine = tokio::task::spawn_blocking(move || {
            let mut engine = start_engine(&path, &e, None);
            wait_for_metric(&mut engine, COMMITTED, |n| n >= 2, "two commits");
            engine
        })
        .await
        .unwrap();
        t.cluster.request_errors(api, &[error]);
        let status = tokio::task::spawn_blocking(move || engine.child.wait().unwrap())
            .await
            .unwrap();
        assert!(
            !status.success(),
            "{error:?} to {api:?} stops the instance with an error"
        );
    }
    let status = tokio::task::spawn_blocking(move || {
        start_engine(&topology, &env, None).child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "the last run finishes");
    t.check(COUNT, None).await;
}
