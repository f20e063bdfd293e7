//! Shared Kafka plumbing for the source and sink stages: client configuration, a reachability
//! check that fails fast, and topic creation.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// Errors talking to the broker (external).
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The broker did not answer in time.
    #[error("cannot reach Kafka at {servers} within {timeout:?}: {message}")]
    Unreachable {
        servers: String,
        timeout: Duration,
        message: String,
    },
    /// Creating a topic failed.
    #[error("cannot create topic {topic}: {message}")]
    CreateTopic { topic: String, message: String },
    /// Any other client error.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// librdkafka configuration for `cfg`: bootstrap servers plus the pass-through properties.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    client_config_with(cfg, &[])
}

/// Like [`client_config`], with a stage's own `defaults` set first, so that the user's
/// `kafka.properties` override them.
pub fn client_config_with(cfg: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Fails with [`KafkaError::Unreachable`] unless a broker answers a metadata request within
/// `cfg.connect_timeout`.
pub fn check_reachable(cfg: &KafkaConfig) -> Result<(), KafkaError> {
    let unreachable = |message: String| KafkaError::Unreachable {
        servers: cfg.bootstrap_servers.clone(),
        timeout: cfg.connect_timeout,
        message,
    };
    let consumer: BaseConsumer = client_config(cfg)
        .set("socket.connection.setup.timeout.ms", "5000")
        .create()
        .map_err(|e| unreachable(e.to_string()))?;
    consumer
        .fetch_metadata(None, cfg.connect_timeout)
        .map(|_| ())
        .map_err(|e| unreachable(e.to_string()))
}

/// Creates `topic` with `partitions` partitions and `configs` if it does not exist, and returns
/// its partition count (which may differ from `partitions` when it already existed). A topic
/// that exists is used as it is, so a locked-down cluster (no CreateTopics permission, or a
/// broker without the API) works when an administrator created the topics.
pub async fn ensure_topic(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<i32, KafkaError> {
    if let Some(n) = existing_partitions(cfg, topic) {
        return Ok(n);
    }
    create_topic(cfg, topic, partitions, configs).await?;
    partition_count(cfg, topic)
}

async fn create_topic(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(cfg.connect_timeout));
    for r in admin.create_topics([&new], &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic: topic.into(),
                    message: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The partition count of `topic` if the broker's metadata has it now. It asks for every
/// topic: a request naming the topic could make a broker that auto-creates topics create it
/// with its defaults.
fn existing_partitions(cfg: &KafkaConfig, topic: &str) -> Option<i32> {
    let consumer: BaseConsumer = client_config(cfg).create().ok()?;
    let md = consumer.fetch_metadata(None, cfg.connect_timeout).ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    (t.error().is_none() && !t.partitions().is_empty()).then(|| t.partitions().len() as i32)
}

/// The number of partitions of `topic`, waiting briefly for metadata to show a new topic.
pub fn partition_count(cfg: &KafkaConfig, topic: &str) -> Result<i32, KafkaError> {
    let consumer: BaseConsumer = client_config(cfg).create()?;
    let deadline = std::time::Instant::now() + cfg.connect_timeout;
    loop {
        let md = consumer.fetch_metadata(Some(topic), cfg.connect_timeout)?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .unwrap_or(0);
        if n > 0 {
            return Ok(n);
        }
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::CreateTopic {
                topic: topic.into(),
                message: "topic has no partitions in the broker's metadata".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
