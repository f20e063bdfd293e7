//! Running a topology on Kafka: one consumer-group member per process, one task per
//! assigned input partition. The engine core (`engine`, `routing`) does the work; this
//! module is its Kafka edge: the engine as a stage of the Kafka edge's consumer driver
//! ([`kafka::drive`]: the poll loop and the rebalance callback), the producers, and
//! [`KafkaCluster`], the core's view of the cluster.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;

use super::edge::{Cluster, Producer};
use super::engine::{Engine, EngineSetup, writer_id};
pub use super::engine::{RunStats, RuntimeError};
use super::plan::Plan;
use super::replay;
use super::routing::TickDecoder;
use crate::codec::{Bar, Encoder, RecordKind, RegistryClient, SourceRecord, WATERMARK_KEY};
use crate::config::topology::{ProcessingGuarantee, TopologySpec};
use crate::config::{AppConfig, KafkaConfig};
use crate::kafka::{self, ConsumerSettings, DriveOptions, Flow, Group, Part, PartitionEnd, Stage};
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

/// The engine's name in `/healthz` and `/readyz`.
pub const ENGINE: &str = "engine";

/// The engine as a stage of the consumer driver: tasks open and close as partitions come
/// and go, and each commit runs the engine's commit protocol, then (unless transactions
/// commit them) commits the input positions to the group.
struct EngineStage {
    engine: Engine,
    cluster: Arc<KafkaCluster>,
}

impl Stage for EngineStage {
    type Error = RuntimeError;

    fn assigned(
        &mut self,
        _group: &dyn Group,
        parts: &[Part],
    ) -> Result<Vec<Option<i64>>, RuntimeError> {
        let restoring = format!("restoring {}", kafka::describe(parts));
        let health = &self.engine.metrics.health;
        health.set(ENGINE, StageState::Starting(restoring));
        // The stores, not the group's committed offsets, say where tasks resume.
        let resume = self.engine.assign(parts)?;
        self.engine.metrics.health.set(ENGINE, StageState::Ready);
        Ok(resume)
    }

    fn revoked(
        &mut self,
        group: &dyn Group,
        parts: &[Part],
        lost: bool,
    ) -> Result<(), RuntimeError> {
        self.cluster.set_group(group.metadata());
        let closed = self.engine.revoke(parts, lost);
        if self.engine.idle() {
            let waiting = StageState::Starting("no partitions assigned".into());
            self.engine.metrics.health.set(ENGINE, waiting);
        }
        closed
    }

    fn record(&mut self, record: &SourceRecord<'_>) -> Result<bool, RuntimeError> {
        self.engine.process(record)?;
        // Watermarks (ours included) are not input: they do not end idleness.
        Ok(record.key != Some(WATERMARK_KEY))
    }

    fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.engine.next_offset(topic, partition)
    }

    fn tick(&mut self) -> Result<Flow, RuntimeError> {
        self.engine.idle_watermarks()?;
        Ok(Flow::Continue)
    }

    fn commit(&mut self, group: &dyn Group, last: bool) -> Result<(), RuntimeError> {
        if !last {
            self.engine.clean_task_dirs();
        }
        let started = Instant::now();
        self.cluster.set_group(group.metadata());
        self.engine.commit(last)?;
        tracing::debug!(took = ?started.elapsed(), last, "committed");
        if !self.engine.transactional() {
            // The group's positions only inform tools (lag, status): the stores say where
            // tasks resume, so a failed commit here loses nothing.
            let _ = group.commit(&self.engine.positions(), last);
        }
        Ok(())
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
    tokio::task::spawn_blocking(work).await?
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
            (None, None) => Err(SinkError::Refused {
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
        let offsets = kafka::consumer::partition_list(positions)?;
        Ok((self.outputs).commit_transaction(&offsets, group, KAFKA_WAIT, last)?)
    }
}

/// Runs the engine on the consumer driver until `stop`, idleness or a failure.
fn process_loop(
    engine: Engine,
    cluster: Arc<KafkaCluster>,
    kafka: &KafkaConfig,
    options: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunStats, RuntimeError> {
    let group = engine.plan().application.clone();
    let mut drive = DriveOptions::new(ENGINE, engine.input_topics(), options.commit_interval);
    drive.stop_when_idle = options.stop_when_idle;
    drive.lag = Some(engine.metrics.consumer_lag.clone());
    // Under exactly_once_v2 upstream, an aborted transaction's records are never read.
    let settings = ConsumerSettings::member(&group)
        .read_committed()
        .static_member(options.instance_id.as_deref());
    let stage = Arc::new(Mutex::new(EngineStage { engine, cluster }));
    match kafka::drive(kafka, &settings, stage.clone(), &drive, stop) {
        Err(RuntimeError::State(StateError::Interrupted)) => tracing::warn!(
            "stopped while opening tasks; nothing more committed (the next owner replays what this run did not commit)"
        ),
        done => done?,
    }
    let stats = stage.lock().expect("engine lock").engine.stats.clone();
    Ok(stats)
}
