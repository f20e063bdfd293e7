//! Running a topology: one consumer-group member per process, one task per assigned input
//! partition, each task with its own RocksDB window store.
//!
//! Commit protocol (documented in `docs/delivery.md`): records are processed in offset order;
//! at each commit the producer is flushed first (every bar and late record emitted so far is
//! acknowledged), then each task writes its window changes, its next input offset and its
//! stream time in one synced RocksDB batch. After a crash a task resumes from its stored
//! offset with exactly the state of that commit, so no tick is counted twice or lost; records
//! emitted after the last commit are emitted again, identically, because processing is a
//! deterministic function of the partition's records.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::codec::{
    Bar, CodecError, DeadLetter, Decoder, Encoder, RecordKind, RegistryClient, Tick, watermark_of,
};
use crate::config::topology::{OperatorSpec, TopologySpec, WindowSpec};
use crate::config::{AppConfig, KafkaConfig};
use crate::kafka::{self, client_config_with};
use crate::metrics::Metrics;
use crate::operators::{Filter, OpError, Output, WindowDef, WindowOperator};
use crate::sink::{KafkaSink, SinkError};
use crate::state::{StateError, WindowStore};

/// Errors that stop a running topology.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The topology has a shape the runtime cannot run yet.
    #[error(transparent)]
    Unsupported(#[from] OpError),
    /// The topology's shape is not runnable (e.g. no window operator).
    #[error("topology {application}: {message}")]
    Shape {
        application: String,
        message: String,
    },
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaError),
    /// Producing results failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The schema registry failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The consumer failed.
    #[error("consumer: {0}")]
    Consumer(String),
}

/// What one run of a topology is made of: source → filters → window → bar topics.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Application id.
    pub application: String,
    /// Input topic.
    pub input_topic: String,
    /// Field used as the key of bars.
    pub key_field: String,
    /// Filters, in order.
    pub filters: Vec<Filter>,
    /// The window operator's spec.
    pub window: WindowSpec,
    /// Resolutions of the window operator.
    pub defs: Vec<WindowDef>,
    /// For each resolution, the topics its bars go to.
    pub bar_topics: Vec<Vec<String>>,
    /// Topic for late ticks.
    pub late_topic: String,
    /// Topic for records that cannot be processed.
    pub dlq_topic: String,
}

impl Plan {
    /// Works out the pipeline of a validated topology.
    pub fn of(spec: &TopologySpec) -> Result<Self, RuntimeError> {
        let shape = |message: &str| RuntimeError::Shape {
            application: spec.application.clone(),
            message: message.into(),
        };
        let [(source_name, source)] = spec.sources.iter().collect::<Vec<_>>()[..] else {
            return Err(shape(
                "exactly one source is supported by `tickflow run` for now",
            ));
        };
        let mut stream = source_name.as_str();
        let mut filters = Vec::new();
        let window = loop {
            let mut readers = spec.operators.iter().filter(|o| o.input() == stream);
            let op = readers
                .next()
                .ok_or_else(|| shape("no window operator reads the source"))?;
            if readers.next().is_some() {
                return Err(shape("a stream read by two operators is not supported yet"));
            }
            match &op.0 {
                OperatorSpec::Filter(f) => filters.push(Filter::new(f)),
                OperatorSpec::Window(w) => break w.clone(),
                OperatorSpec::GroupBy(g) => {
                    return Err(OpError::Unsupported {
                        id: g.id.clone(),
                        what: "group_by (repartitioning)".into(),
                    }
                    .into());
                }
            }
            stream = op.id();
        };
        let defs = WindowDef::from_spec(&window)?;
        let sinks: Vec<_> = spec.sinks.iter().filter(|s| s.input == window.id).collect();
        if sinks.is_empty() {
            return Err(shape("no sink writes the window operator's bars"));
        }
        let bar_topics = defs
            .iter()
            .map(|d| {
                sinks
                    .iter()
                    .map(|s| s.topic.replace("{resolution}", &d.name))
                    .collect()
            })
            .collect();
        let dlq_topic = format!("{}.dlq", spec.application);
        Ok(Self {
            application: spec.application.clone(),
            input_topic: source.topic.clone(),
            key_field: source.key.clone(),
            filters,
            late_topic: window
                .late_topic
                .clone()
                .unwrap_or_else(|| dlq_topic.clone()),
            defs,
            window,
            bar_topics,
            dlq_topic,
        })
    }

    /// Every topic the application writes.
    pub fn output_topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.bar_topics.iter().flatten().cloned().collect();
        t.push(self.late_topic.clone());
        t.push(self.dlq_topic.clone());
        t.sort();
        t.dedup();
        t
    }
}

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

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    /// Input records read.
    pub records: u64,
    /// Bars produced.
    pub bars: u64,
    /// (tick, resolution) pairs routed to the late topic.
    pub late: u64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Ticks dropped by filters.
    pub filtered: u64,
}

/// One input partition's state and operator.
struct Task {
    store: WindowStore,
    op: WindowOperator,
    next_offset: Option<i64>,
}

/// Everything the processing loop and the rebalance callback share.
struct Engine {
    plan: Plan,
    state_dir: PathBuf,
    tasks: HashMap<i32, Task>,
    sink: KafkaSink,
    bar_encoders: HashMap<String, Encoder<Bar>>,
    dead_letters: Encoder<DeadLetter>,
    decoder: Decoder<Tick>,
    registry: RegistryClient,
    runtime: tokio::runtime::Handle,
    stats: RunStats,
    metrics: Metrics,
    failure: Option<RuntimeError>,
    outputs: Vec<Output>,
}

impl Engine {
    fn task_dir(&self, partition: i32) -> PathBuf {
        self.state_dir
            .join(&self.plan.application)
            .join(format!("{}-{partition}", self.plan.input_topic))
            .join(&self.plan.window.id)
    }

    /// Opens the tasks of newly assigned partitions and sets where each resumes.
    fn open_tasks(&mut self, tpl: &mut TopicPartitionList) -> Result<(), RuntimeError> {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, p) in parts {
            let store = WindowStore::open(&self.task_dir(p))?;
            let snap = store.load()?;
            let mut op = WindowOperator::new(&self.plan.window)?;
            op.restore(snap.stream_time, snap.windows);
            if let Some(next) = snap.next_offset {
                tpl.set_partition_offset(&topic, p, Offset::Offset(next))
                    .map_err(|e| RuntimeError::Consumer(e.to_string()))?;
            }
            tracing::debug!(partition = p, next_offset = ?snap.next_offset, open_windows = op.open_windows(), "task opened");
            self.tasks.insert(
                p,
                Task {
                    store,
                    op,
                    next_offset: snap.next_offset,
                },
            );
        }
        Ok(())
    }

    /// Commits and closes the tasks of revoked partitions.
    fn close_tasks(&mut self, tpl: &TopicPartitionList) -> Result<(), RuntimeError> {
        self.commit()?;
        for e in tpl.elements() {
            self.tasks.remove(&e.partition());
        }
        Ok(())
    }

    /// Flushes outputs, then persists every task's state with its input position.
    fn commit(&mut self) -> Result<(), RuntimeError> {
        self.sink.flush(Duration::from_secs(60))?;
        for task in self.tasks.values_mut() {
            if let Some(next) = task.next_offset {
                let changes = task.op.take_changes();
                task.store.commit(&changes, next, task.op.stream_time())?;
            }
        }
        Ok(())
    }

    /// Positions to report to the consumer group (monitoring only: the stores are the truth).
    fn positions(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (p, t) in &self.tasks {
            if let Some(n) = t.next_offset {
                let _ = tpl.add_partition_offset(&self.plan.input_topic, *p, Offset::Offset(n));
            }
        }
        tpl
    }

    fn process(&mut self, m: &BorrowedMessage<'_>) -> Result<(), RuntimeError> {
        let (p, offset) = (m.partition(), m.offset());
        self.stats.records += 1;
        self.metrics.records.inc();
        let Some(task) = self.tasks.get_mut(&p) else {
            return Err(RuntimeError::Consumer(format!(
                "record for unassigned partition {p}"
            )));
        };
        if task.next_offset.is_some_and(|n| offset < n) {
            return Ok(()); // already reflected in the restored state
        }
        let mut outputs = std::mem::take(&mut self.outputs);
        if let Some(t) = watermark_of(m.key(), m.payload()) {
            task.op.advance_to(t, &mut outputs);
        } else {
            match self.decode(m.payload()) {
                Ok(tick) => {
                    let task = self.tasks.get_mut(&p).expect("task exists");
                    if self.plan.filters.iter().all(|f| f.keeps(&tick)) {
                        let key = key_of(&tick, &self.plan.key_field);
                        task.op.process(key, &tick, offset, &mut outputs);
                    } else {
                        self.stats.filtered += 1;
                    }
                }
                Err(e) => self.dead_letter(m, reason(&e), e.to_string())?,
            }
        }
        self.tasks.get_mut(&p).expect("task exists").next_offset = Some(offset + 1);
        for out in outputs.drain(..) {
            self.emit(m, out)?;
        }
        self.outputs = outputs;
        Ok(())
    }

    fn decode(&mut self, value: Option<&[u8]>) -> Result<Tick, CodecError> {
        let bytes = value.ok_or_else(|| CodecError::NotFramed("record has no value".into()))?;
        match self.decoder.decode(bytes) {
            Err(CodecError::UnknownSchemaId(id)) => {
                let (registry, decoder) = (&self.registry, &mut self.decoder);
                self.runtime.block_on(registry.teach(decoder, id))?;
                self.decoder.decode(bytes)
            }
            other => other,
        }
    }

    fn emit(&mut self, m: &BorrowedMessage<'_>, out: Output) -> Result<(), RuntimeError> {
        match out {
            Output::Bar(bar) => {
                let res = self
                    .plan
                    .defs
                    .iter()
                    .position(|d| d.name == bar.resolution)
                    .unwrap_or(0);
                for topic in &self.plan.bar_topics[res] {
                    let bytes = self.bar_encoders[topic].encode(&bar)?;
                    self.sink.send_to(topic, bar.symbol.as_bytes(), &bytes)?;
                }
                self.stats.bars += 1;
                self.metrics.bars.inc();
            }
            Output::Late { detail, .. } => {
                self.stats.late += 1;
                self.metrics.late_ticks.inc();
                let topic = self.plan.late_topic.clone();
                self.send_envelope(m, &topic, "late", detail)?;
            }
        }
        Ok(())
    }

    /// Sends a record that cannot be processed to the dead-letter topic, counted by reason.
    fn dead_letter(
        &mut self,
        m: &BorrowedMessage<'_>,
        reason: &str,
        detail: String,
    ) -> Result<(), RuntimeError> {
        self.stats.dead_letters += 1;
        self.metrics.dead_letters.with_label_values(&[reason]).inc();
        let topic = self.plan.dlq_topic.clone();
        self.send_envelope(m, &topic, reason, detail)
    }

    fn send_envelope(
        &mut self,
        m: &BorrowedMessage<'_>,
        topic: &str,
        reason: &str,
        detail: String,
    ) -> Result<(), RuntimeError> {
        let envelope = DeadLetter {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            reason: reason.into(),
            detail,
            application: self.plan.application.clone(),
            error_time: chrono::Utc::now().timestamp_micros(),
        };
        let bytes = self.dead_letters.encode(&envelope)?;
        self.sink
            .send_to(topic, m.key().unwrap_or_default(), &bytes)?;
        Ok(())
    }
}

fn reason(e: &CodecError) -> &'static str {
    match e {
        CodecError::SchemaNotFound { .. } => "unknown_schema",
        CodecError::Incompatible { .. } => "incompatible_schema",
        _ => "undecodable",
    }
}

fn key_of<'a>(tick: &'a Tick, field: &str) -> &'a str {
    match field {
        "venue" => &tick.venue,
        "side" => &tick.side,
        "currency" => &tick.currency,
        _ => &tick.symbol,
    }
}

/// Consumer context that opens and closes tasks as partitions come and go.
struct EngineContext {
    engine: Arc<Mutex<Engine>>,
}

impl ClientContext for EngineContext {}

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
                let opened = engine.open_tasks(tpl);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                opened.and(assigned.map_err(|e| RuntimeError::Consumer(e.to_string())))
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let closed = engine.close_tasks(tpl);
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

/// Creates the output topics (partitioned like the input) and registers the bar schema for
/// each bar topic; returns their encoders.
async fn prepare(
    plan: &Plan,
    kafka: &KafkaConfig,
    registry: &RegistryClient,
) -> Result<HashMap<String, Encoder<Bar>>, RuntimeError> {
    let partitions = kafka::partition_count(kafka, &plan.input_topic)?;
    let mut encoders = HashMap::new();
    for topic in plan.output_topics() {
        kafka::ensure_topic(kafka, &topic, partitions, &[]).await?;
        if plan.bar_topics.iter().flatten().any(|t| *t == topic) {
            let id = registry.register_value(&topic, RecordKind::Bar).await?;
            encoders.insert(topic, Encoder::new(RecordKind::Bar, id));
        }
    }
    Ok(encoders)
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
    let k = app.kafka.clone();
    tokio::task::spawn_blocking(move || kafka::check_reachable(&k))
        .await
        .map_err(|e| RuntimeError::Consumer(e.to_string()))??;
    let registry = RegistryClient::new(&app.registry.url)?;
    let bar_encoders = prepare(&plan, &app.kafka, &registry).await?;
    let dlq_id = registry
        .register_value(&plan.dlq_topic, RecordKind::DeadLetter)
        .await?;
    if plan.late_topic != plan.dlq_topic {
        registry
            .register_value(&plan.late_topic, RecordKind::DeadLetter)
            .await?;
    }
    let engine = Engine {
        sink: KafkaSink::new(&app.kafka, &plan.dlq_topic)?,
        state_dir: app.state.dir.clone(),
        tasks: HashMap::new(),
        bar_encoders,
        dead_letters: Encoder::new(RecordKind::DeadLetter, dlq_id),
        decoder: Decoder::new(RecordKind::Tick),
        registry,
        runtime: tokio::runtime::Handle::current(),
        stats: RunStats::default(),
        metrics,
        failure: None,
        outputs: Vec::new(),
        plan,
    };
    let kafka_cfg = app.kafka.clone();
    tokio::task::spawn_blocking(move || process_loop(engine, &kafka_cfg, &options, &stop))
        .await
        .map_err(|e| RuntimeError::Consumer(e.to_string()))?
}

fn process_loop(
    engine: Engine,
    kafka: &KafkaConfig,
    options: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunStats, RuntimeError> {
    let group = engine.plan.application.clone();
    let topic = engine.plan.input_topic.clone();
    let engine = Arc::new(Mutex::new(engine));
    let mut settings = vec![
        ("group.id", group.as_str()),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("fetch.wait.max.ms", "50"),
        ("partition.assignment.strategy", "cooperative-sticky"),
    ];
    if let Some(id) = &options.instance_id {
        settings.push(("group.instance.id", id.as_str()));
    }
    let consumer: BaseConsumer<EngineContext> = client_config_with(kafka, &settings)
        .create_with_context(EngineContext {
            engine: engine.clone(),
        })
        .map_err(|e| RuntimeError::Consumer(e.to_string()))?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| RuntimeError::Consumer(e.to_string()))?;
    let mut last_commit = Instant::now();
    // Time spent waiting for records that did not come (commits do not count as idle).
    let mut idle = Duration::ZERO;
    let mut uncommitted = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let polled = Instant::now();
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                engine.lock().expect("engine lock").process(&m)?;
                uncommitted += 1;
                idle = Duration::ZERO;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            // Idle only counts once partitions are assigned: joining the group is not idleness.
            None if !engine.lock().expect("engine lock").tasks.is_empty() => {
                idle += polled.elapsed()
            }
            None => {}
        }
        let mut e = engine.lock().expect("engine lock");
        if let Some(f) = e.failure.take() {
            return Err(f);
        }
        if uncommitted > 0 && last_commit.elapsed() >= options.commit_interval {
            let started = Instant::now();
            e.commit()?;
            tracing::debug!(records = uncommitted, took = ?started.elapsed(), "committed");
            let _ = consumer.commit(&e.positions(), CommitMode::Async);
            (last_commit, uncommitted) = (Instant::now(), 0);
        }
        if options.stop_when_idle.is_some_and(|d| idle >= d) {
            break;
        }
    }
    let mut e = engine.lock().expect("engine lock");
    e.commit()?;
    let _ = consumer.commit(&e.positions(), CommitMode::Sync);
    Ok(e.stats.clone())
}
