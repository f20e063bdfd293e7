//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod golden;
pub mod lake;
pub mod landing;
pub mod process;
pub mod trino;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tickflow::codec::registry::SchemaRegistry;
use tickflow::config::KafkaConfig;

/// The broker started by `scripts/test.sh`. Tests that need it fail (they do not skip) when it
/// is missing, so that a run without services cannot pass by testing nothing.
pub fn kafka() -> KafkaConfig {
    let servers = std::env::var("TICKFLOW_TEST_KAFKA")
        .expect("TICKFLOW_TEST_KAFKA is not set: run the tests with scripts/test.sh, which starts the broker");
    KafkaConfig {
        bootstrap_servers: servers,
        connect_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    }
}

/// A mock cluster with every topic of `symbol_bars_topology(id, …)` created (the mock has no
/// CreateTopics; the engine uses topics that exist).
pub fn mock_cluster(id: &str) -> (MockCluster<'static, DefaultProducerContext>, KafkaConfig) {
    let cluster = MockCluster::new(3).unwrap();
    let topics = [
        format!("{id}.ticks"),
        format!("{id}-bars-changelog"),
        format!("{id}.bars.1s"),
        format!("{id}.bars.1m"),
        format!("{id}.late"),
        format!("{id}.dlq"),
    ];
    for t in &topics {
        cluster.create_topic(t, 8, 3).unwrap();
    }
    let kafka = KafkaConfig {
        bootstrap_servers: cluster.bootstrap_servers(),
        connect_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    };
    (cluster, kafka)
}

/// `n` in a full run (`TICKFLOW_TEST_FULL=1`), 40 % of it in the default one: the crash tests'
/// tick counts and kill ranges, so that CI stays within its time while the full scale stays
/// one variable away.
pub fn scaled(n: u64) -> u64 {
    if std::env::var("TICKFLOW_TEST_FULL").is_ok_and(|v| v == "1") {
        n
    } else {
        n * 2 / 5
    }
}

/// `n` seeded random numbers in `low..high`, for the points where crash tests kill a
/// process. `TICKFLOW_CRASH_SEED` (a number) replaces `seed`, to try other points.
pub fn kill_points(seed: u64, n: usize, low: u64, high: u64) -> Vec<u64> {
    let mut rng = std::env::var("TICKFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(seed, |s| s | 1);
    (0..n)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            low + rng % (high - low)
        })
        .collect()
}

/// A port nothing listens on now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A topic name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A built-in registry serving from a temporary directory on an ephemeral port.
pub struct TestRegistry {
    pub url: String,
    pub dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestRegistry {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        let registry = Arc::new(SchemaRegistry::open(dir.path()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(registry.serve(listener));
        Self { url, dir, task }
    }

    /// Stops serving and hands back the state directory.
    pub fn stop(self) -> tempfile::TempDir {
        self.task.abort();
        self.dir
    }
}

/// Registers the Avro schema text `schema` under `subject` through the registry's HTTP API
/// (for schemas tickflow does not ship); returns its id.
pub async fn register_schema(registry_url: &str, subject: &str, schema: &str) -> u32 {
    let body = serde_json::json!({ "schema": schema });
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{registry_url}/subjects/{subject}/versions"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["id"].as_u64().expect("registered") as u32
}
