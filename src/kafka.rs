//! Shared Kafka plumbing for the source and sink stages: client configuration, a reachability
//! check that fails fast, and topic creation.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;
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

/// A topic to create if it does not exist.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec<'a> {
    /// Topic name.
    pub name: &'a str,
    /// Partitions, if it is created.
    pub partitions: i32,
    /// Topic configs, if it is created (e.g. `cleanup.policy=compact`).
    pub configs: &'a [(&'a str, &'a str)],
}

/// Creates `topic` with `partitions` partitions and `configs` if it does not exist, and returns
/// its partition count (which may differ from `partitions` when it already existed).
pub async fn ensure_topic(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<i32, KafkaError> {
    let spec = TopicSpec {
        name: topic,
        partitions,
        configs,
    };
    Ok(ensure_topics(cfg, &[spec]).await?[0])
}

/// Creates the topics of `topics` that do not exist, in one request, and returns every
/// topic's partition count, in order (an existing topic's may differ from its spec). One
/// metadata fetch finds the existing ones. A topic that exists is used as it is, so a
/// locked-down cluster (no CreateTopics permission, or a broker without the API) works when
/// an administrator created the topics.
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    topics: &[TopicSpec<'_>],
) -> Result<Vec<i32>, KafkaError> {
    let existing = existing_topics(cfg);
    // Each missing topic once: a request naming a topic twice is invalid.
    let mut named = std::collections::HashSet::new();
    let missing: Vec<&TopicSpec<'_>> = topics
        .iter()
        .filter(|t| !existing.contains_key(t.name) && named.insert(t.name))
        .collect();
    if !missing.is_empty() {
        create_topics(cfg, &missing).await?;
    }
    topics
        .iter()
        .map(|t| match existing.get(t.name) {
            Some(n) => Ok(*n),
            None => partition_count(cfg, t.name),
        })
        .collect()
}

async fn create_topics(cfg: &KafkaConfig, topics: &[&TopicSpec<'_>]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let replication = TopicReplication::Fixed(-1);
            let topic = NewTopic::new(t.name, t.partitions, replication);
            t.configs
                .iter()
                .fold(topic, |topic, (k, v)| topic.set(k, v))
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(cfg.connect_timeout));
    for r in admin.create_topics(&new, &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    message: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The partition counts of the topics in the broker's metadata now (none if it cannot be
/// fetched: creating them then reports the error). It asks for every topic: a request naming
/// a topic could make a broker that auto-creates topics create it with its defaults.
fn existing_topics(cfg: &KafkaConfig) -> HashMap<String, i32> {
    let fetched = client_config(cfg)
        .create::<BaseConsumer>()
        .ok()
        .and_then(|c| c.fetch_metadata(None, cfg.connect_timeout).ok());
    let Some(md) = fetched else {
        return HashMap::new();
    };
    md.topics()
        .iter()
        .filter_map(|t| Some((t.name().to_string(), partitions_in(&md, t.name())?)))
        .collect()
}

/// The partition count of `topic` in `md`, if it is there without error and has partitions.
fn partitions_in(md: &Metadata, topic: &str) -> Option<i32> {
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    (t.error().is_none() && !t.partitions().is_empty()).then(|| t.partitions().len() as i32)
}

/// The number of partitions of `topic`, waiting briefly for metadata to show a new topic.
pub fn partition_count(cfg: &KafkaConfig, topic: &str) -> Result<i32, KafkaError> {
    let consumer: BaseConsumer = client_config(cfg).create()?;
    let deadline = std::time::Instant::now() + cfg.connect_timeout;
    loop {
        let md = consumer.fetch_metadata(Some(topic), cfg.connect_timeout)?;
        if let Some(n) = partitions_in(&md, topic) {
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
