//! The Kafka edge, shared by every stage: client configuration and authentication, a
//! reachability check that fails fast, topic creation, partition ends and lag, and producing
//! records with their delivery accounted for ([`KafkaSink`]), the one consumer driver every
//! stage runs on ([`consumer`]), and consumer groups seen from outside ([`group`]).

pub mod auth;
pub mod consumer;
mod error_log;
pub mod group;
mod producer;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;

pub use auth::{Auth, AuthContext};
pub use consumer::{
    ConsumerSettings, DriveOptions, Flow, Group, Part, Position, Stage, drive, record_of,
};
pub use error_log::ErrorLog;
pub use producer::{KafkaSink, SinkError};

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
    /// The broker did not answer a metadata request in time.
    #[error("cannot reach Kafka at {servers} within {timeout:?}: {source}")]
    NoAnswer {
        servers: String,
        timeout: Duration,
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The broker refused the client's credentials (a wrong SASL password or user name, a
    /// mechanism the listener does not offer, an MSK IAM identity without access).
    #[error(
        "Kafka at {servers} refused the client's authentication ({source}): check \
         sasl.mechanism, sasl.username and the password (sasl.password or sasl.password_file), \
         or the MSK IAM role's permissions"
    )]
    AuthRefused {
        servers: String,
        source: RDKafkaErrorCode,
    },
    /// A created topic does not show in the broker's metadata.
    #[error("cannot create topic {topic}: {message}")]
    CreateTopic { topic: String, message: String },
    /// The broker refused to create a topic.
    #[error("cannot create topic {topic}: {source}")]
    TopicRefused {
        topic: String,
        source: RDKafkaErrorCode,
    },
    /// Any other client error.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// Topics that a stage needs did not appear in time.
    #[error(
        "topics {topics} do not exist after waiting {waited:?} (is the stage that creates them running?)"
    )]
    MissingTopics { topics: String, waited: Duration },
    /// Authentication could not be set up (MSK IAM).
    #[error("kafka authentication: {message}")]
    Auth { message: String },
    /// No token for OAUTHBEARER authentication (MSK IAM).
    #[error("kafka authentication: {0}")]
    Token(#[from] auth::TokenError),
}

impl crate::error::Classified for KafkaError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            // Bad authentication settings (a missing token file, an unknown mechanism).
            KafkaError::Auth { .. } | KafkaError::AuthRefused { .. } => {
                crate::error::ErrorClass::User
            }
            KafkaError::Token(e) => e.class(),
            _ => crate::error::ErrorClass::External,
        }
    }
}

/// librdkafka configuration for `cfg`: bootstrap servers plus the pass-through properties.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    client_config_with(cfg, &[])
}

/// Like [`client_config`], with a stage's own `defaults` set first, so that the user's
/// `kafka.properties` override them.
/// With `aws_iam`, SASL/OAUTHBEARER over TLS comes first too (MSK's IAM listener).
pub fn client_config_with(cfg: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers);
    if cfg.aws_iam {
        c.set("security.protocol", "SASL_SSL");
        c.set("sasl.mechanism", "OAUTHBEARER");
    }
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Fails with [`KafkaError::NoAnswer`] unless a broker answers a metadata request within
/// `cfg.connect_timeout`, or with [`KafkaError::AuthRefused`] when it refused the client's
/// credentials meanwhile.
pub fn check_reachable(cfg: &KafkaConfig) -> Result<(), KafkaError> {
    let mut config = client_config(cfg);
    config.set("socket.connection.setup.timeout.ms", "5000");
    // A client that cannot be made is the settings' fault (a bad property, no IAM region),
    // not the broker's.
    let consumer = consumer(cfg, &config)?;
    consumer
        .fetch_metadata(None, cfg.connect_timeout)
        .map(|_| ())
        .map_err(|source| match auth_refusal(&consumer) {
            Some(source) => KafkaError::AuthRefused {
                servers: cfg.bootstrap_servers.clone(),
                source,
            },
            None => KafkaError::NoAnswer {
                servers: cfg.bootstrap_servers.clone(),
                timeout: cfg.connect_timeout,
                source: Box::new(source),
            },
        })
}

/// The authentication failure among the errors `consumer` has queued, if any: librdkafka
/// reports a refused SASL handshake there, while the request that waited on it only times
/// out.
fn auth_refusal<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<RDKafkaErrorCode> {
    use rdkafka::error::KafkaError as RdError;
    // A poll serves one event and says nothing (None) of a log line, so an empty answer does
    // not mean an empty queue: serve a bounded number (the queue holds the logs and errors
    // of the few connection attempts made so far).
    (0..1000).find_map(|_| match consumer.poll(Duration::ZERO) {
        Some(Err(RdError::MessageConsumption(code) | RdError::MessageConsumptionFatal(code)))
            if code == RDKafkaErrorCode::Authentication =>
        {
            Some(code)
        }
        _ => None,
    })
}

/// A plain consumer (metadata, readers) of `config`, with `cfg`'s authentication set up: its
/// first MSK IAM token is set before it makes any request.
pub fn consumer(
    cfg: &KafkaConfig,
    config: &ClientConfig,
) -> Result<BaseConsumer<AuthContext>, KafkaError> {
    let auth = Auth::of(cfg)?;
    let consumer: BaseConsumer<AuthContext> =
        config.create_with_context(AuthContext { auth: auth.clone() })?;
    auth.prime(consumer.client().native_client())?;
    Ok(consumer)
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
    let auth = Auth::of(cfg)?;
    let admin: AdminClient<AuthContext> =
        client_config(cfg).create_with_context(AuthContext { auth: auth.clone() })?;
    auth.prime(admin.inner().native_client())?;
    let replicas = cfg
        .topics
        .replication_factor
        .map_or(-1, |n| i32::from(n.get()));
    let configs: Vec<BTreeMap<&str, &str>> = topics
        .iter()
        .map(|t| topic_configs(&cfg.topics.configs, t.configs))
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&configs)
        .map(|(t, configs)| {
            let topic = NewTopic::new(t.name, t.partitions, TopicReplication::Fixed(replicas));
            configs.iter().fold(topic, |topic, (k, v)| topic.set(k, v))
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(cfg.connect_timeout));
    for r in admin.create_topics(&new, &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, source)) => return Err(KafkaError::TopicRefused { topic, source }),
        }
    }
    Ok(())
}

/// The configs a created topic gets: `defaults` (`kafka.topics.configs`), then the topic's
/// own (a changelog's `cleanup.policy`), which win.
fn topic_configs<'a>(
    defaults: &'a BTreeMap<String, String>,
    own: &'a [(&'a str, &'a str)],
) -> BTreeMap<&'a str, &'a str> {
    let mut all: BTreeMap<&str, &str> = defaults
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.extend(own.iter().copied());
    all
}

/// The partition counts of the topics in the broker's metadata now (none if it cannot be
/// fetched: creating them then reports the error). It asks for every topic: a request naming
/// a topic could make a broker that auto-creates topics create it with its defaults.
pub fn existing_topics(cfg: &KafkaConfig) -> HashMap<String, i32> {
    let fetched = consumer(cfg, &client_config(cfg))
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
    let consumer = consumer(cfg, &client_config(cfg))?;
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

/// Waits until every topic of `topics` has partitions in the broker's metadata, up to `wait`,
/// and fails naming the topics still missing. Asks for all topics, so that a broker that
/// auto-creates topics does not create them with its defaults.
pub fn await_topics(
    cfg: &KafkaConfig,
    topics: &[String],
    wait: Duration,
) -> Result<(), KafkaError> {
    let consumer = consumer(cfg, &client_config(cfg))?;
    let deadline = Instant::now() + wait;
    let mut told = false;
    loop {
        let md = consumer.fetch_metadata(None, cfg.connect_timeout)?;
        let missing: Vec<&str> = topics
            .iter()
            .filter(|t| partitions_in(&md, t).is_none())
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::MissingTopics {
                topics: missing.join(", "),
                waited: wait,
            });
        }
        if !told {
            tracing::info!(topics = %missing.join(","), "waiting for topics to be created");
            told = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether a consumer has read every partition assigned to it to the end (its position has
/// reached the end its last fetch response reported). It sends no request of its own except
/// the group's committed offset of a partition nothing was read from, asked again at most
/// every few seconds (a rebalance can commit and reassign the partition meanwhile): a
/// watermark query with a short timeout would make librdkafka close the connection when a
/// slow broker misses it, and with it the fetches in flight.
#[derive(Debug, Default)]
pub struct EndCheck {
    /// The committed offsets asked for, and when, per partition of the current assignment.
    committed: HashMap<(String, i32), (i64, Instant)>,
    /// Why the last check was not at the end, for [`EndCheck::explain`].
    behind: String,
    /// When `explain` last logged.
    explained: Option<Instant>,
}

/// How often a stage told to stop when idle logs what keeps it from being idle.
pub const EXPLAIN_EVERY: Duration = Duration::from_secs(30);

/// How long a committed offset asked for by [`EndCheck`] is used before it is asked again.
const COMMITTED_TTL: Duration = Duration::from_secs(5);

impl EndCheck {
    /// `true` when every assigned partition is read to its end; `false` while nothing is
    /// assigned, a partition has had no fetch response yet, or the broker does not answer.
    /// A partition from which nothing was read yet starts at `start(topic, partition)` if the
    /// caller knows it (a restored task's stored offset, the lake's committed position;
    /// librdkafka has no position before the first record), else at its committed offset,
    /// else at its beginning.
    pub fn at_end<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        start: impl Fn(&str, i32) -> Option<i64>,
    ) -> bool {
        match self.read_to_end(consumer, start) {
            Ok(None) => true,
            Ok(Some(why)) => {
                self.behind = why;
                false
            }
            Err(e) => {
                self.behind = format!("the broker did not answer: {e}");
                false
            }
        }
    }

    /// Logs, at most every `every`, why the input is not read to its end yet (a stage told
    /// to stop when idle that keeps running says what it waits for).
    pub fn explain(&mut self, stage: &str, every: Duration) {
        if self.behind.is_empty() {
            return;
        }
        let since = *self.explained.get_or_insert_with(Instant::now);
        if since.elapsed() >= every {
            tracing::info!(stage, waiting_for = %self.behind, "not idle: the input is not read to its end");
            self.explained = Some(Instant::now());
        }
    }

    /// `None` at the end of every assigned partition, else why not.
    fn read_to_end<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        start: impl Fn(&str, i32) -> Option<i64>,
    ) -> Result<Option<String>, rdkafka::error::KafkaError> {
        let positions = consumer.position()?;
        if positions.count() == 0 {
            return Ok(Some("no partition assigned".into()));
        }
        self.committed.retain(|(t, p), (_, asked)| {
            asked.elapsed() < COMMITTED_TTL
                && positions
                    .elements()
                    .iter()
                    .any(|e| e.topic() == t && e.partition() == *p)
        });
        for e in positions.elements() {
            let (topic, partition) = (e.topic(), e.partition());
            let Some((low, high)) = fetched_watermarks(consumer, topic, partition) else {
                return Ok(Some(format!("{topic}-{partition}: no fetch response yet")));
            };
            // The caller's start is asked only for a partition nothing was read from.
            let next = match e.offset() {
                Offset::Offset(n) => n,
                _ => match start(topic, partition) {
                    Some(n) => n,
                    None => self.committed_or(consumer, topic, partition, low)?,
                },
            };
            if next < high {
                return Ok(Some(format!("{topic}-{partition}: at {next} of {high}")));
            }
        }
        self.behind.clear();
        Ok(None)
    }

    /// The group's committed offset of a partition (asked again after [`COMMITTED_TTL`]), or
    /// `low`.
    fn committed_or<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        low: i64,
    ) -> Result<i64, rdkafka::error::KafkaError> {
        let key = (topic.to_string(), partition);
        if let Some((n, _)) = self.committed.get(&key) {
            return Ok(*n);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(30))?;
        let n = match committed.elements().first().map(|c| c.offset()) {
            Some(Offset::Offset(n)) => n,
            _ => low,
        };
        self.committed.insert(key, (n, Instant::now()));
        Ok(n)
    }
}

/// Sets `gauge{consumer, topic, partition}` to each assigned partition's lag: the records
/// between the consumer's position and the end its last fetch response reported. No request
/// is sent; a partition without a position or a fetch response yet is left as it was.
pub fn report_lag<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    name: &str,
    gauge: &prometheus::IntGaugeVec,
) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for e in positions.elements() {
        let (Offset::Offset(next), Some((_, high))) = (
            e.offset(),
            fetched_watermarks(consumer, e.topic(), e.partition()),
        ) else {
            continue;
        };
        let partition = e.partition().to_string();
        gauge
            .with_label_values(&[name, e.topic(), partition.as_str()])
            .set((high - next).max(0));
    }
}

/// `topic-partition` names of partitions, comma-separated, for logs.
pub fn describe(parts: &[Part]) -> String {
    let names: Vec<String> = parts.iter().map(|(t, p)| format!("{t}-{p}")).collect();
    names.join(",")
}

/// The log start and end of a partition as the consumer's last fetch response for it
/// reported (no request is sent), or `None` before the first response. The end is the high
/// watermark: under `read_committed` the consumer's position also moves past transaction
/// markers, so it reaches it once the last transaction is committed or aborted.
fn fetched_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client handle lives as long as `consumer`; librdkafka only reads the topic
    // name and writes the two offsets under its partition lock.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    let ok = matches!(
        code,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    (ok && high >= 0).then_some((low.max(0), high))
}

/// A partition (topic, partition) and its end.
pub type PartitionEnd = ((String, i32), i64);

/// The high watermark (the end) of each of `partitions` (topic, partition), in order. Each
/// query may take a minute: a busy broker answers slowly, and a timeout would fail the
/// stage.
pub fn high_watermarks(
    cfg: &KafkaConfig,
    partitions: &[(String, i32)],
) -> Result<Vec<PartitionEnd>, KafkaError> {
    let both = watermarks(cfg, partitions)?;
    Ok(partitions
        .iter()
        .cloned()
        .zip(both)
        .map(|(p, (_, high))| (p, high))
        .collect())
}

/// The low and high watermarks (first offset, end) of each of `partitions`, in order.
pub fn watermarks(
    cfg: &KafkaConfig,
    partitions: &[(String, i32)],
) -> Result<Vec<(i64, i64)>, KafkaError> {
    let consumer = consumer(cfg, &client_config(cfg))?;
    let timeout = cfg.connect_timeout.max(Duration::from_secs(60));
    partitions
        .iter()
        .map(|(topic, p)| Ok(consumer.fetch_watermarks(topic, *p, timeout)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_gets_the_default_configs_and_its_own_win() {
        let defaults: BTreeMap<String, String> = [
            ("min.insync.replicas", "2"),
            ("cleanup.policy", "delete"),
            ("retention.ms", "604800000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let own = [("cleanup.policy", "compact")];
        let got = topic_configs(&defaults, &own);
        let want: BTreeMap<&str, &str> = [
            ("cleanup.policy", "compact"),
            ("min.insync.replicas", "2"),
            ("retention.ms", "604800000"),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
        assert_eq!(topic_configs(&BTreeMap::new(), &[]), BTreeMap::new());
    }
}
