//! Running a topology on Kafka: one consumer-group member per process, one task per
//! assigned input partition. The engine core (`engine`, `routing`) does the work; this
//! module is its Kafka edge: the consumer loop and its rebalance callback, the producers,
//! and [`KafkaCluster`], the core's view of the cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, RebalanceProtocol,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::edge::{Cluster, Producer};
use super::engine::{Engine, EngineSetup, writer_id};
pub use super::engine::{RunStats, RuntimeError};
use super::plan::Plan;
use super::replay;
use super::routing::TickDecoder;
use crate::codec::{Bar, Encoder, RecordKind, RegistryClient, SourceRecord, WATERMARK_KEY};
use crate::config::topology::{ProcessingGuarantee, TopologySpec};
use crate::config::{AppConfig, KafkaConfig};
use crate::kafka::{self, PartitionEnd, client_config_with};
use crate::kafka::{KafkaSink, SinkError};
use crate::metrics::{Metrics, StageState};
use crate::state::StateError;
use crate::state::changelog::{ChangelogLog, ChangelogPartition};

/// How long a flush, a transaction commit or a read-back may take.
const KAFKA_WAIT: Duration = Duration::from_secs(60);

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Longest time between commits.
    pub commit_interval: Duration,
    /// Stop (after a final commit) when no record arrived for this long.
    pub stop_when_idle: Option<Duration>,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id
    /// takes its partitions back at once instead of waiting out the session timeout.
    pub instance_id: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            commit_interval: Duration::from_secs(1),
            stop_when_idle: None,
            instance_id: None,
        }
    }
}

/// (topic, partition) of each element of a partition list.
fn parts_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// `topic-partition` names of a partition list, for logs.
/// The engine's name in `/healthz` and `/readyz`.
pub const ENGINE: &str = "engine";

/// Consumer context that opens and closes tasks as partitions come and go.
struct EngineContext {
    engine: Arc<Mutex<Engine>>,
    cluster: Arc<KafkaCluster>,
    auth: kafka::Auth,
}

crate::oauth_client_context!(EngineContext);

impl ConsumerContext for EngineContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let mut engine = self.engine.lock().expect("engine lock");
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(partitions = %kafka::describe(tpl), "partitions assigned");
                let restoring = format!("restoring {}", kafka::describe(tpl));
                engine
                    .metrics
                    .health
                    .set(ENGINE, StageState::Starting(restoring));
                let opened = engine.assign(&parts_of(tpl)).and_then(|resume| {
                    engine.metrics.health.set(ENGINE, StageState::Ready);
                    resume_at(tpl, &resume)
                });
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                opened.and(assigned.map_err(|e| RuntimeError::Consumer(e.to_string())))
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                tracing::info!(partitions = %kafka::describe(tpl), lost, "partitions revoked");
                self.cluster.set_group(consumer.group_metadata());
                let closed = engine.revoke(&parts_of(tpl), lost);
                if engine.idle() {
                    let waiting = StageState::Starting("no partitions assigned".into());
                    engine.metrics.health.set(ENGINE, waiting);
                }
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                closed.and(unassigned.map_err(|e| RuntimeError::Consumer(e.to_string())))
            }
            other => Err(RuntimeError::Consumer(format!(
                "rebalance failed: {other:?}"
            ))),
        };
        if let Err(e) = result {
            engine.failure.get_or_insert(e);
        }
    }
}

/// What [`prepare`] found: the input's partition count, the bar encoders, and every output
/// topic (bars, late, dead letters, repartition) with its partition count.
struct Prepared {
    partitions: i32,
    encoders: std::collections::HashMap<String, Encoder<Bar>>,
    outputs: Vec<(String, i32)>,
}

/// Creates the output and repartition topics (partitioned like the input) and registers the
/// bar schema for each bar topic.
async fn prepare(
    plan: &Plan,
    kafka: &KafkaConfig,
    registry: &RegistryClient,
) -> Result<Prepared, RuntimeError> {
    let partitions = kafka::partition_count(kafka, &plan.input_topic)?;
    let changelogs = plan.changelog_topics();
    let outputs = plan.produced_topics();
    let spec = |name, configs| kafka::TopicSpec {
        name,
        partitions,
        configs,
    };
    let compact: &[(&str, &str)] = &[("cleanup.policy", "compact")];
    let specs: Vec<kafka::TopicSpec<'_>> = changelogs
        .iter()
        .map(|t| spec(t.as_str(), compact))
        .chain(outputs.iter().map(|t| spec(t.as_str(), &[])))
        .collect();
    let counts = kafka::ensure_topics(kafka, &specs).await?;
    drop(specs);
    let mut encoders = std::collections::HashMap::new();
    for topic in &outputs {
        if plan.bar_topics.iter().flatten().any(|t| t == topic) {
            let id = registry.register_value(topic, RecordKind::Bar).await?;
            encoders.insert(topic.clone(), Encoder::new(RecordKind::Bar, id));
        }
    }
    let outputs = outputs
        .into_iter()
        .zip(counts[changelogs.len()..].iter().copied())
        .collect();
    Ok(Prepared {
        partitions,
        encoders,
        outputs,
    })
}

/// The end of every partition of `outputs` (topic, partition count) now, under
/// `at_least_once`: where outputs begin that this run has not written yet.
fn output_ends(
    plan: &Plan,
    kafka: &KafkaConfig,
    outputs: &[(String, i32)],
) -> Result<Option<Vec<PartitionEnd>>, RuntimeError> {
    if plan.guarantee != ProcessingGuarantee::AtLeastOnce {
        return Ok(None);
    }
    let partitions: Vec<(String, i32)> = outputs
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect();
    Ok(Some(kafka::high_watermarks(kafka, &partitions)?))
}

/// Runs `spec` until `stop` is set (or, with `stop_when_idle`, until the input is idle).
pub async fn run(
    spec: &TopologySpec,
    app: &AppConfig,
    options: RunOptions,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> Result<RunStats, RuntimeError> {
    let plan = Plan::of(spec)?;
    let starting = StageState::Starting("connecting and preparing topics".into());
    metrics.health.set(ENGINE, starting);
    let k = app.kafka.clone();
    blocking(move || kafka::check_reachable(&k).map_err(RuntimeError::from)).await?;
    let registry = RegistryClient::from_config(&app.registry)?;
    let prepared = prepare(&plan, &app.kafka, &registry).await?;
    let (k, p, outputs) = (app.kafka.clone(), plan.clone(), prepared.outputs.clone());
    let output_ends = blocking(move || output_ends(&p, &k, &outputs)).await?;
    let dlq_id = registry
        .register_value(&plan.dlq_topic, RecordKind::DeadLetter)
        .await?;
    if plan.late_topic != plan.dlq_topic {
        registry
            .register_value(&plan.late_topic, RecordKind::DeadLetter)
            .await?;
    }
    let writer = writer_id(&app.state.dir.join(&plan.application))?;
    let cluster = Arc::new(KafkaCluster::new(&app.kafka, &plan, &writer, &options).await?);
    let engine = Engine::new(EngineSetup {
        partitions: prepared.partitions,
        state_dir: app.state.dir.clone(),
        cluster: cluster.clone(),
        bar_encoders: prepared.encoders,
        dead_letters: Encoder::new(RecordKind::DeadLetter, dlq_id),
        ticks: TickDecoder::with_registry(registry),
        metrics,
        handover_timeout: app.state.handover_timeout,
        cleanup_delay: app.state.cleanup_delay,
        output_ends,
        plan,
        stop: stop.clone(),
    })?;
    let kafka_cfg = app.kafka.clone();
    blocking(move || process_loop(engine, cluster, &kafka_cfg, &options, &stop)).await
}

/// Runs blocking Kafka work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RuntimeError::Consumer(e.to_string()))?
}

/// The engine core's view of a Kafka cluster.
pub struct KafkaCluster {
    kafka: KafkaConfig,
    outputs: KafkaSink,
    /// Under `exactly_once_v2` changelog records go through `outputs`, in its transactions.
    changelogs: Option<KafkaSink>,
    /// Changelogs are written in transactions (read committed, no `at` in seals).
    transactional: bool,
    /// The consumer group's metadata, which a transaction commits input positions under.
    group: Mutex<Option<ConsumerGroupMetadata>>,
}

impl KafkaCluster {
    /// The output and changelog producers: two idempotent ones, or under `exactly_once_v2`
    /// one transactional producer whose id is the application and the instance id (or else
    /// the state directory's writer id), so that a restarted instance fences its previous
    /// self.
    async fn new(
        kafka: &KafkaConfig,
        plan: &Plan,
        writer: &str,
        options: &RunOptions,
    ) -> Result<Self, RuntimeError> {
        let (outputs, changelogs) = if plan.guarantee == ProcessingGuarantee::AtLeastOnce {
            // The output producer tracks offsets too: commits store where later outputs begin.
            let outputs = KafkaSink::tracking_offsets(kafka, &plan.dlq_topic)?;
            let changelogs = KafkaSink::tracking_offsets(kafka, &plan.dlq_topic)?;
            (outputs, Some(changelogs))
        } else {
            let instance = options.instance_id.as_deref().unwrap_or(writer);
            let id = format!("{}-{instance}", plan.application);
            let (k, topic) = (kafka.clone(), plan.dlq_topic.clone());
            let timeout = kafka.connect_timeout.max(Duration::from_secs(30));
            let transactional =
                blocking(move || Ok(KafkaSink::transactional(&k, &topic, &id, timeout)?));
            (transactional.await?, None)
        };
        Ok(Self {
            kafka: kafka.clone(),
            outputs,
            transactional: changelogs.is_none(),
            changelogs,
            group: Mutex::new(None),
        })
    }

    /// Two idempotent producers whatever the guarantee, reading changelogs as `plan`'s
    /// engine does: what `tickflow reset` writes its commits with, outside any transaction.
    pub fn idempotent(kafka: &KafkaConfig, plan: &Plan) -> Result<Self, RuntimeError> {
        Ok(Self {
            kafka: kafka.clone(),
            outputs: KafkaSink::tracking_offsets(kafka, &plan.dlq_topic)?,
            changelogs: Some(KafkaSink::tracking_offsets(kafka, &plan.dlq_topic)?),
            transactional: plan.guarantee == ProcessingGuarantee::ExactlyOnceV2,
            group: Mutex::new(None),
        })
    }

    /// Sets the group metadata the next transaction commits under.
    fn set_group(&self, group: Option<ConsumerGroupMetadata>) {
        *self.group.lock().expect("group lock") = group;
    }
}

impl Producer for KafkaSink {
    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), SinkError> {
        match (partition, value) {
            (Some(p), value) => self.send_entry(topic, p, key, value),
            (None, Some(value)) => self.send_to(topic, key, value),
            (None, None) => Err(SinkError::Send {
                topic: topic.into(),
                message: "a tombstone needs a partition".into(),
            }),
        }
    }

    fn flush(&self) -> Result<(), SinkError> {
        KafkaSink::flush(self, KAFKA_WAIT)
    }

    fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        KafkaSink::last_offset(self, topic, partition)
    }
}

impl Cluster for KafkaCluster {
    fn outputs(&self) -> &dyn Producer {
        &self.outputs
    }

    fn changelogs(&self) -> &dyn Producer {
        self.changelogs.as_ref().unwrap_or(&self.outputs)
    }

    fn ends(&self, partitions: &[(String, i32)]) -> Result<Vec<PartitionEnd>, RuntimeError> {
        Ok(kafka::high_watermarks(&self.kafka, partitions)?)
    }

    fn written_since(&self, from: &[(String, i32, i64)]) -> Result<Vec<u128>, RuntimeError> {
        Ok(replay::written_since(&self.kafka, from, 2 * KAFKA_WAIT)?)
    }

    fn changelog(&self, topic: &str, partition: i32) -> Box<dyn ChangelogLog> {
        Box::new(ChangelogPartition::new(
            &self.kafka,
            topic,
            partition,
            self.transactional,
        ))
    }

    fn commit_transaction(
        &self,
        positions: &[(String, i32, i64)],
        last: bool,
    ) -> Result<(), RuntimeError> {
        let group = self.group.lock().expect("group lock");
        let group = group.as_ref().ok_or_else(|| {
            RuntimeError::Consumer("no consumer group metadata to commit a transaction".into())
        })?;
        let offsets = partition_list(positions);
        Ok((self.outputs).commit_transaction(&offsets, group, KAFKA_WAIT, last)?)
    }
}

/// A partition list of (topic, partition, offset) positions.
fn partition_list(positions: &[(String, i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, p, offset) in positions {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*offset));
    }
    tpl
}

/// Sets where each newly assigned partition of `tpl` resumes (`resume`, in the same order):
/// the stores, not the group's committed offsets, say where tasks start.
fn resume_at(tpl: &mut TopicPartitionList, resume: &[Option<i64>]) -> Result<(), RuntimeError> {
    for ((topic, p), next) in parts_of(tpl).into_iter().zip(resume) {
        if let Some(next) = next {
            tpl.set_partition_offset(&topic, p, Offset::Offset(*next))
                .map_err(|e| RuntimeError::Consumer(e.to_string()))?;
        }
    }
    Ok(())
}

/// The record the engine core sees of a consumed message.
fn record_of<'a>(m: &'a BorrowedMessage<'_>) -> SourceRecord<'a> {
    SourceRecord {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
        value: m.payload(),
        // The Kafka timestamp in UTC microseconds (0 if it has none).
        timestamp: (m.timestamp().to_millis()).map_or(0, |ms| ms.saturating_mul(1000)),
    }
}

fn process_loop(
    engine: Engine,
    cluster: Arc<KafkaCluster>,
    kafka: &KafkaConfig,
    options: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunStats, RuntimeError> {
    let group = engine.plan().application.clone();
    let topics = engine.input_topics();
    let engine = Arc::new(Mutex::new(engine));
    let mut settings = vec![
        ("group.id", group.as_str()),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        // Under exactly_once_v2 upstream, an aborted transaction's records are never read.
        ("isolation.level", "read_committed"),
        ("fetch.wait.max.ms", "50"),
        ("partition.assignment.strategy", "cooperative-sticky"),
    ];
    if let Some(id) = &options.instance_id {
        settings.push(("group.instance.id", id.as_str()));
    }
    let auth = kafka::Auth::of(kafka)?;
    let consumer: BaseConsumer<EngineContext> = client_config_with(kafka, &settings)
        .create_with_context(EngineContext {
            engine: engine.clone(),
            cluster: cluster.clone(),
            auth: auth.clone(),
        })
        .map_err(|e| RuntimeError::Consumer(e.to_string()))?;
    auth.prime(consumer.client().native_client())?;
    consumer
        .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
        .map_err(|e| RuntimeError::Consumer(e.to_string()))?;
    let mut last_commit = Instant::now();
    // Time spent waiting for records that did not come (commits do not count as idle).
    let mut idle = Duration::ZERO;
    let mut uncommitted = 0u64;
    let (mut ends, mut errors) = (kafka::EndCheck::default(), kafka::ErrorLog::new(ENGINE));
    while !stop.load(Ordering::Relaxed) {
        let polled = Instant::now();
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                errors.ok();
                engine
                    .lock()
                    .expect("engine lock")
                    .process(&record_of(&m))?;
                uncommitted += 1;
                // Watermarks (ours included) are not input: they do not end idleness.
                if m.key() != Some(WATERMARK_KEY) {
                    idle = Duration::ZERO;
                }
            }
            Some(Err(e)) => errors.error(&e),
            // Idle only counts at the end of every assigned partition: joining the group, a
            // restore or a slow fetch is not idleness.
            None if options.stop_when_idle.is_some()
                && ends.at_end(&consumer, |topic, p| {
                    engine.lock().expect("engine lock").next_offset(topic, p)
                }) =>
            {
                idle += polled.elapsed()
            }
            None => {}
        }
        if options.stop_when_idle.is_some() {
            ends.explain(ENGINE, kafka::EXPLAIN_EVERY);
        }
        let mut e = engine.lock().expect("engine lock");
        if let Some(f) = e.failure.take() {
            if matches!(f, RuntimeError::State(StateError::Interrupted)) {
                tracing::warn!(
                    "stopped while opening tasks; nothing more committed (the next owner replays what this run did not commit)"
                );
                return Ok(e.stats.clone());
            }
            return Err(f);
        }
        e.idle_watermarks()?;
        if uncommitted > 0 && last_commit.elapsed() >= options.commit_interval {
            e.clean_task_dirs();
            let started = Instant::now();
            cluster.set_group(consumer.group_metadata());
            e.commit(false)?;
            tracing::debug!(records = uncommitted, took = ?started.elapsed(), "committed");
            kafka::report_lag(&consumer, "engine", &e.metrics.consumer_lag);
            if !e.transactional() {
                let _ = consumer.commit(&partition_list(&e.positions()), CommitMode::Async);
            }
            (last_commit, uncommitted) = (Instant::now(), 0);
        }
        if options.stop_when_idle.is_some_and(|d| idle >= d) {
            break;
        }
    }
    let mut e = engine.lock().expect("engine lock");
    cluster.set_group(consumer.group_metadata());
    e.commit(true)?;
    if !e.transactional() {
        let _ = consumer.commit(&partition_list(&e.positions()), CommitMode::Sync);
    }
    Ok(e.stats.clone())
}
