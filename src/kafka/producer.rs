//! Producing keyed records to a Kafka topic with librdkafka, with delivery accounted for.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaResult;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Message, TopicPartitionList};

use backon::{BlockingRetryable, ExponentialBuilder};

use crate::config::KafkaConfig;
use crate::kafka::{Auth, client_config_with};

/// Errors producing to Kafka (external).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The producer could not be created (bad properties).
    #[error("cannot create Kafka producer: {0}")]
    Create(#[from] rdkafka::error::KafkaError),
    /// The producer's authentication could not be set up.
    #[error(transparent)]
    Auth(#[from] super::KafkaError),
    /// A record could not be handed to the producer.
    #[error("cannot produce to {topic}: {source}")]
    Send {
        /// The record's topic.
        topic: String,
        /// librdkafka's refusal.
        source: rdkafka::error::KafkaError,
    },
    /// A record cannot be written as asked (a tombstone without a partition, a partition
    /// the topic does not have).
    #[error("cannot produce to {topic}: {message}")]
    Refused {
        /// The record's topic.
        topic: String,
        /// Why.
        message: String,
    },
    /// Some records were not acknowledged by the broker.
    #[error(
        "{failed} records to {topic} were not delivered; first error: {}",
        .first.as_ref().map_or_else(|| "unknown".to_string(), ToString::to_string)
    )]
    Delivery {
        topic: String,
        failed: u64,
        /// The first failure the delivery reports gave.
        #[source]
        first: Option<Box<rdkafka::error::KafkaError>>,
    },
    /// Outstanding records were not acknowledged before the timeout.
    #[error("flushing {topic} did not finish within {timeout:?}")]
    FlushTimeout { topic: String, timeout: Duration },
    /// A Kafka transaction could not be started or committed; it was aborted if it could
    /// be. `fatal`: the producer can no longer be used, typically because a newer instance
    /// with the same transactional id fenced it (a zombie must stop).
    #[error("transaction {id}: {step} failed: {source}{advice}")]
    Transaction {
        id: String,
        step: &'static str,
        /// librdkafka's error.
        source: Box<rdkafka::error::KafkaError>,
        /// What to do about it, when tickflow knows (empty, or a sentence in parentheses).
        advice: &'static str,
        fatal: bool,
    },
}

impl crate::error::Classified for SinkError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            // librdkafka refuses the client's settings.
            SinkError::Create(_) => crate::error::ErrorClass::User,
            SinkError::Auth(e) => e.class(),
            // A record tickflow itself asked for wrongly.
            SinkError::Refused { .. } => crate::error::ErrorClass::Internal,
            _ => crate::error::ErrorClass::External,
        }
    }
}

/// Counts acknowledgements and keeps the first failure; optionally the last acknowledged
/// offset per topic partition.
#[derive(Default)]
struct DeliveryTracker {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<Box<RdError>>>,
    last_offsets: Option<Mutex<HashMap<String, HashMap<i32, i64>>>>,
}

impl DeliveryTracker {
    /// A tracker that also remembers the last acknowledged offset of each partition.
    fn with_offsets() -> Self {
        Self {
            last_offsets: Some(Mutex::new(HashMap::new())),
            ..Self::default()
        }
    }
}

/// librdkafka context that feeds the tracker (and signs MSK IAM tokens).
struct TrackingContext {
    tracker: Arc<DeliveryTracker>,
    auth: Auth,
}

crate::oauth_client_context!(TrackingContext);

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.tracker.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(offsets) = &self.tracker.last_offsets {
                    let mut offsets = offsets.lock().expect("tracker lock");
                    // Looked up by &str: no allocation per delivered record.
                    if !offsets.contains_key(m.topic()) {
                        offsets.insert(m.topic().to_string(), HashMap::new());
                    }
                    let topic = offsets.get_mut(m.topic()).expect("inserted above");
                    let last = topic.entry(m.partition()).or_insert(m.offset());
                    *last = (*last).max(m.offset());
                }
            }
            Err((e, _)) => {
                self.tracker.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.tracker.first_error.lock().expect("tracker lock");
                first.get_or_insert_with(|| Box::new(e.clone()));
            }
        }
    }
}

/// A producer bound to one topic. Idempotent with `acks=all` by default, and partitioned like
/// the Java client (murmur2 of the key) so that keys land where Kafka Streams would put them.
pub struct KafkaSink {
    topic: String,
    producer: ThreadedProducer<TrackingContext>,
    tracker: Arc<DeliveryTracker>,
    /// The transactional id, for a transactional producer.
    transactional_id: Option<String>,
}

impl KafkaSink {
    /// A producer for `topic`. `cfg.properties` override the defaults.
    pub fn new(cfg: &KafkaConfig, topic: &str) -> Result<Self, SinkError> {
        Self::build(cfg, topic, DeliveryTracker::default())
    }

    /// A producer that also remembers the last acknowledged offset of each partition it
    /// writes (see [`KafkaSink::last_offset`]).
    pub fn tracking_offsets(cfg: &KafkaConfig, topic: &str) -> Result<Self, SinkError> {
        Self::build(cfg, topic, DeliveryTracker::with_offsets())
    }

    /// A transactional producer (which also tracks offsets): `transactional_id` identifies
    /// the instance across restarts, so that a restart fences its previous incarnation and
    /// aborts its open transaction. Every record is sent inside a transaction, and the
    /// first one is already begun.
    pub fn transactional(
        cfg: &KafkaConfig,
        topic: &str,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<Self, SinkError> {
        let tracker = DeliveryTracker::with_offsets();
        let extra = [
            ("transactional.id", transactional_id),
            ("transaction.timeout.ms", "30000"),
        ];
        let mut sink = Self::build_with(cfg, topic, tracker, &extra)?;
        sink.transactional_id = Some(transactional_id.into());
        sink.txn("init_transactions", |p| p.init_transactions(timeout))?;
        sink.txn("begin_transaction", |p| p.begin_transaction())?;
        Ok(sink)
    }

    /// Commits the current transaction with the consumer `offsets` of `group` (the next
    /// offsets to read), after every record of it was acknowledged; then begins the next
    /// one unless `last`. A transaction that cannot commit is aborted and the error
    /// returned: its records and offsets never become visible.
    pub fn commit_transaction(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
        timeout: Duration,
        last: bool,
    ) -> Result<(), SinkError> {
        let committed = self.flush(timeout).and_then(|()| {
            self.txn("send_offsets_to_transaction", |p| {
                p.send_offsets_to_transaction(offsets, group, timeout)
            })?;
            self.txn("commit_transaction", |p| p.commit_transaction(timeout))
        });
        if let Err(e) = committed {
            if !matches!(e, SinkError::Transaction { fatal: true, .. }) {
                let _ = self.producer.abort_transaction(timeout);
            }
            return Err(e);
        }
        if !last {
            self.txn("begin_transaction", |p| p.begin_transaction())?;
        }
        Ok(())
    }

    /// Runs one transactional call, retrying it while librdkafka says it is retriable: up to
    /// four times, 200 ms apart and doubling.
    fn txn(
        &self,
        step: &'static str,
        call: impl Fn(&ThreadedProducer<TrackingContext>) -> KafkaResult<()>,
    ) -> Result<(), SinkError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_factor(2.0)
            .with_max_times(4);
        (|| call(&self.producer))
            .retry(backoff)
            .sleep(std::thread::sleep)
            .when(|e| retriable(e) && !unsupported(e))
            .notify(|e, pause| tracing::warn!(step, error = %e, ?pause, "retrying a transactional call"))
            .call()
            .map_err(|err| self.txn_error(step, err))
    }

    /// The error of a transactional call that failed for good.
    fn txn_error(&self, step: &'static str, err: RdError) -> SinkError {
        let fatal = matches!(&err, RdError::Transaction(t) if t.is_fatal());
        let unsupported = unsupported(&err);
        SinkError::Transaction {
            id: self.transactional_id.clone().unwrap_or_default(),
            step,
            source: Box::new(err),
            advice: if unsupported {
                " (this broker has no Kafka transactions: use `processing_guarantee: at_least_once`)"
            } else {
                ""
            },
            fatal: fatal || unsupported,
        }
    }

    fn build(cfg: &KafkaConfig, topic: &str, tracker: DeliveryTracker) -> Result<Self, SinkError> {
        Self::build_with(cfg, topic, tracker, &[])
    }

    fn build_with(
        cfg: &KafkaConfig,
        topic: &str,
        tracker: DeliveryTracker,
        extra: &[(&str, &str)],
    ) -> Result<Self, SinkError> {
        let tracker = Arc::new(tracker);
        let mut settings = vec![
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("partitioner", "murmur2_random"),
            ("linger.ms", "5"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "1000000"),
            ("compression.type", "lz4"),
        ];
        settings.extend_from_slice(extra);
        let auth = Auth::of(cfg)?;
        let context = TrackingContext {
            tracker: tracker.clone(),
            auth: auth.clone(),
        };
        let producer: ThreadedProducer<TrackingContext> =
            client_config_with(cfg, &settings).create_with_context(context)?;
        auth.prime(producer.client().native_client())?;
        Ok(Self {
            topic: topic.into(),
            producer,
            tracker,
            transactional_id: None,
        })
    }

    /// The topic this sink writes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues one record to this sink's topic, waiting while the local queue is full.
    pub fn send(&self, key: &[u8], value: &[u8]) -> Result<(), SinkError> {
        self.send_record(BaseRecord::to(&self.topic).key(key).payload(value))
    }

    /// Queues one record to another topic (partitioned by key).
    pub fn send_to(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), SinkError> {
        self.send_record(BaseRecord::to(topic).key(key).payload(value))
    }

    /// Queues a record to a given partition, with its timestamp (UTC milliseconds) given
    /// instead of taken from the clock.
    pub fn send_to_partition_at(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: &[u8],
        timestamp_ms: i64,
    ) -> Result<(), SinkError> {
        self.send_record(
            BaseRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value)
                .timestamp(timestamp_ms),
        )
    }

    /// Queues a key with a value, or with no value (a tombstone in a compacted topic), to a
    /// given partition.
    pub fn send_entry(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), SinkError> {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(partition).key(key);
        record.payload = value;
        self.send_record(record)
    }

    /// The last acknowledged offset in `topic`/`partition` (sinks made with
    /// [`KafkaSink::tracking_offsets`] only).
    pub fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let offsets = self
            .tracker
            .last_offsets
            .as_ref()?
            .lock()
            .expect("tracker lock");
        offsets.get(topic)?.get(&partition).copied()
    }

    fn send_record(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), SinkError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, r)) => {
                    return Err(SinkError::Send {
                        topic: r.topic.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Records acknowledged by the broker so far.
    pub fn delivered(&self) -> u64 {
        self.tracker.delivered.load(Ordering::Relaxed)
    }

    /// Waits until every queued record is acknowledged; fails if any was not delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        self.producer
            .flush(timeout)
            .map_err(|_| SinkError::FlushTimeout {
                topic: self.topic.clone(),
                timeout,
            })?;
        let failed = self.tracker.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = self
                .tracker
                .first_error
                .lock()
                .expect("tracker lock")
                .clone();
            return Err(SinkError::Delivery {
                topic: self.topic.clone(),
                failed,
                first,
            });
        }
        Ok(())
    }
}

/// Whether librdkafka says a transactional call may succeed if made again.
fn retriable(err: &RdError) -> bool {
    matches!(err, RdError::Transaction(t) if t.is_retriable())
}

/// Whether the broker has no transactions at all (Tansu 0.6).
fn unsupported(err: &RdError) -> bool {
    err.to_string().contains("not supported by broker")
}
