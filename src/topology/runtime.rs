//! Running a topology: one consumer-group member per process, one task per assigned input
//! partition, each task with its own RocksDB store.
//!
//! A topology with a `group_by` runs in two stages, like a Kafka Streams sub-topology split:
//! forwarding tasks (one per source partition) filter ticks and re-key them into the internal
//! `<application>-<id>-repartition` topic, each record carrying its origin (source partition,
//! offset, and that partition's stream time); window tasks (one per repartition partition)
//! skip origins they already counted, judge lateness by the origin's stream time and close
//! windows at the slowest source partition's stream time. Bars and late ticks are therefore
//! the same however the source partitions interleave, and the same as without repartitioning
//! when the key is the source key.
//!
//! Commit protocol (documented in `docs/delivery.md`): records are processed in offset order;
//! at each commit the producer is flushed first (every bar and late record emitted so far is
//! acknowledged), then each task writes its window changes, its next input offset and its
//! stream time in one synced RocksDB batch. After a crash a task resumes from its stored
//! offset with exactly the state of that commit, so no tick is counted twice or lost; records
//! emitted after the last commit are emitted again, identically, because processing is a
//! deterministic function of the partition's records.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, RebalanceProtocol,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::identity::{self, Suppress};
use super::plan::{Plan, PlanError, key_of};
use super::replay;
use super::task::{Handover, Stage, Task, Work, watermark};
use crate::codec::{
    Bar, CodecError, DeadLetter, Decoder, Encoder, Origin, RecordKind, RegistryClient,
    SourceRecord, Tick, WATERMARK_KEY, watermark_of, watermark_value,
};
use crate::config::topology::{ProcessingGuarantee, TopologySpec};
use crate::config::{AppConfig, KafkaConfig};
use crate::kafka::{self, client_config_with};
use crate::metrics::{Metrics, StageState};
use crate::operators::{OpError, Output};
use crate::sink::{KafkaSink, SinkError};
use crate::state::StateError;
use crate::state::changelog::{ChangelogPartition, changelog_topic};

/// Errors that stop a running topology.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The topology cannot be run as written.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An operator cannot be built from its spec.
    #[error(transparent)]
    Operator(#[from] OpError),
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
    /// The instance's state directory cannot be used.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
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
    /// Records read, from the source and the repartition topic.
    pub records: u64,
    /// Bars produced.
    pub bars: u64,
    /// (tick, resolution) pairs routed to the late topic.
    pub late: u64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Ticks dropped by filters.
    pub filtered: u64,
    /// Ticks re-keyed into the repartition topic.
    pub forwarded: u64,
    /// Watermarks appended to quiet input partitions (`idle_watermark`).
    pub idle_watermarks: u64,
    /// Watermarks sent to the repartition topic's partitions.
    pub broadcasts: u64,
    /// Records read from the repartition topic (ticks, replays and watermarks).
    pub repartition_records: u64,
    /// Repartitioned ticks skipped because they were already counted (a forwarding task's
    /// replay after a crash).
    pub duplicates: u64,
    /// Outputs not written again because they reached their topic before a crash (a
    /// replay's outputs since the last commit, under `at_least_once`).
    pub suppressed: u64,
}

/// What suppressing replayed outputs needs (`at_least_once` only: under `exactly_once_v2`
/// a replay follows an aborted transaction, whose outputs no reader sees).
struct Replays {
    /// Every output partition (bars, late, dead letters, repartition), with its end when
    /// the run started: the position of a partition this producer has not written yet.
    base: Vec<((String, i32), i64)>,
    /// Fingerprints of the records found after the stored positions of reopened tasks.
    written: Suppress,
    /// Reopened tasks whose replay may emit outputs that are among `written`, each with the
    /// end of its input partition when it was reopened: the crashed run read no further, so
    /// past that offset the replay is over.
    replaying: HashMap<(Stage, i32), i64>,
}

/// The record an output is about, named in late and dead-letter envelopes.
type Provenance<'a> = SourceRecord<'a>;

/// What late and dead-letter envelopes say of a consumed record.
fn provenance<'a>(m: &'a BorrowedMessage<'_>) -> Provenance<'a> {
    SourceRecord {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
        value: m.payload(),
        timestamp: record_time(m),
    }
}

/// A record's Kafka timestamp in UTC microseconds (0 if it has none).
fn record_time(m: &BorrowedMessage<'_>) -> i64 {
    m.timestamp()
        .to_millis()
        .map_or(0, |ms| ms.saturating_mul(1000))
}

/// The wall clock in UTC microseconds.
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Decodes ticks, learning writer schemas from the registry on first sight. The registry's
/// "no such schema" is remembered too, so a burst of records with a bad id asks once.
struct TickDecoder {
    decoder: Decoder<Tick>,
    registry: RegistryClient,
    runtime: tokio::runtime::Handle,
    missing: HashMap<u32, String>,
}

impl TickDecoder {
    fn new(registry: RegistryClient) -> Self {
        Self {
            decoder: Decoder::new(RecordKind::Tick),
            registry,
            runtime: tokio::runtime::Handle::current(),
            missing: HashMap::new(),
        }
    }

    fn decode(&mut self, value: Option<&[u8]>) -> Result<Tick, CodecError> {
        let bytes = value.ok_or_else(|| CodecError::NotFramed("record has no value".into()))?;
        match self.decoder.decode(bytes) {
            Err(CodecError::UnknownSchemaId(id)) => {
                if let Some(message) = self.missing.get(&id) {
                    let message = message.clone();
                    return Err(CodecError::SchemaNotFound { id, message });
                }
                match self
                    .runtime
                    .block_on(self.registry.teach(&mut self.decoder, id))
                {
                    Err(CodecError::SchemaNotFound { id, message }) => {
                        self.missing.insert(id, message.clone());
                        return Err(CodecError::SchemaNotFound { id, message });
                    }
                    taught => taught?,
                }
                self.decoder.decode(bytes)
            }
            other => other,
        }
    }
}

/// Whether a decoding error is the registry's (down, refusing), not the record's: such a
/// record is never dead-lettered; the run stops instead, and resumes from its last commit.
fn registry_failed(e: &CodecError) -> bool {
    matches!(
        e,
        CodecError::Registry { .. } | CodecError::RegistryUnavailable { .. }
    )
}

/// Everything the processing loop and the rebalance callback share.
struct Engine {
    plan: Plan,
    /// The source topic, shared with envelopes of repartitioned ticks.
    input_topic: Arc<str>,
    /// Partitions of the source topic (and of the repartition topic).
    partitions: i32,
    state_dir: PathBuf,
    tasks: HashMap<(Stage, i32), Task>,
    sink: Arc<KafkaSink>,
    /// Producer of changelog records, which remembers the offset of each seal (the same
    /// transactional producer as `sink` under `exactly_once_v2`).
    changelogs: Arc<KafkaSink>,
    /// No more commits may be written: a commit failed (the in-memory state is ahead of what
    /// was committed, and a revocation while the run stops must not commit it), or the last
    /// transaction of an `exactly_once_v2` run was committed (no transaction is open).
    closed: bool,
    /// Kafka settings, for restore consumers.
    kafka: KafkaConfig,
    bar_encoders: HashMap<String, Encoder<Bar>>,
    dead_letters: Encoder<DeadLetter>,
    ticks: TickDecoder,
    stats: RunStats,
    metrics: Metrics,
    failure: Option<RuntimeError>,
    outputs: Vec<Output>,
    /// Buffer for repartition records' values.
    envelope: Vec<u8>,
    /// This instance's writer id (kept in the state directory), written into seals.
    writer: Arc<str>,
    /// How long a newly assigned task waits for its previous owner's release.
    handover_timeout: Duration,
    /// Output positions and what replays must not write again, under `at_least_once`.
    replays: Option<Replays>,
    /// The task of the record being processed.
    current: Option<(Stage, i32)>,
    /// Task directories this instance does not run, and since when: deleted after
    /// `state.cleanup_delay`.
    unassigned: HashMap<PathBuf, Instant>,
    /// `state.cleanup_delay`.
    cleanup_delay: Duration,
}

impl Engine {
    /// Whether commits are Kafka transactions (`exactly_once_v2`).
    fn transactional(&self) -> bool {
        self.plan.guarantee == ProcessingGuarantee::ExactlyOnceV2
    }

    /// The topics the application consumes: the source, and the repartition topic if any.
    fn input_topics(&self) -> Vec<String> {
        let mut topics = vec![self.plan.input_topic.clone()];
        topics.extend(self.plan.group_by.as_ref().map(|g| g.topic.clone()));
        topics
    }

    fn stage_of(&self, topic: &str) -> Stage {
        match &self.plan.group_by {
            Some(g) if g.topic == topic => Stage::Window {
                repartitioned: true,
            },
            Some(_) => Stage::Forward,
            None => Stage::Window {
                repartitioned: false,
            },
        }
    }

    fn topic_of(&self, stage: Stage) -> &str {
        match (stage, &self.plan.group_by) {
            (
                Stage::Window {
                    repartitioned: true,
                },
                Some(g),
            ) => &g.topic,
            _ => &self.plan.input_topic,
        }
    }

    fn task_dir(&self, topic: &str, stage: Stage, partition: i32) -> PathBuf {
        self.state_dir
            .join(&self.plan.application)
            .join(format!("{topic}-{partition}"))
            .join(self.plan.store_of(stage == Stage::Forward))
    }

    /// Opens the tasks of newly assigned partitions and sets where each resumes.
    fn open_tasks(&mut self, tpl: &mut TopicPartitionList) -> Result<(), RuntimeError> {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let handover = Handover {
            writer: self.writer.clone(),
            deadline: Instant::now() + self.handover_timeout,
        };
        let mut opened = Vec::with_capacity(parts.len());
        for (topic, p) in parts {
            let stage = self.stage_of(&topic);
            let dir = self.task_dir(&topic, stage, p);
            if let Some(root) = dir.parent() {
                self.unassigned.remove(root);
            }
            let changelog = ChangelogPartition {
                kafka: self.kafka.clone(),
                topic: changelog_topic(
                    &self.plan.application,
                    self.plan.store_of(stage == Stage::Forward),
                ),
                partition: p,
                transactional: self.transactional(),
            };
            let (window, n) = (&self.plan.window, self.partitions as usize);
            let task = Task::open(&dir, stage, window, n, changelog, &handover, &self.metrics)?;
            if let Some(next) = task.next_offset {
                tpl.set_partition_offset(&topic, p, Offset::Offset(next))
                    .map_err(|e| RuntimeError::Consumer(e.to_string()))?;
            }
            tracing::debug!(topic, partition = p, next_offset = ?task.next_offset, open_windows = task.open_windows(), stored_outputs = task.stored_outputs.is_some(), "task opened");
            self.tasks.insert((stage, p), task);
            opened.push((stage, p));
            self.metrics
                .assigned_partitions
                .set(self.tasks.len() as i64);
        }
        self.find_replayed(&opened)?;
        self.store_first_positions(&opened)
    }

    /// Stores, for each task of `opened` that has no output positions yet, where its outputs
    /// will begin, before it processes anything: a crash before its first commit then still
    /// finds everything it wrote.
    fn store_first_positions(&mut self, opened: &[(Stage, i32)]) -> Result<(), RuntimeError> {
        let Some(outputs) = self.output_positions() else {
            return Ok(());
        };
        let mut new = Vec::new();
        for key in opened {
            let task = self.tasks.get_mut(key).expect("opened above");
            if task.stored_outputs.is_none() {
                task.write_changelog(&self.changelogs, false, Some(&outputs))?;
                new.push(*key);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        self.changelogs.flush(Duration::from_secs(60))?;
        for key in new {
            let task = self.tasks.get_mut(&key).expect("opened above");
            task.write_local(&self.changelogs)?;
        }
        Ok(())
    }

    /// Reads back what was written to the output topics since the last commit of each task
    /// of `opened`, so that their replays skip what is already there.
    fn find_replayed(&mut self, opened: &[(Stage, i32)]) -> Result<(), RuntimeError> {
        if self.replays.is_none() {
            return Ok(());
        }
        let mut from: HashMap<(String, i32), i64> = HashMap::new();
        let mut reopened = Vec::new();
        for key in opened {
            let task = &self.tasks[key];
            // Also a task that had not processed anything at its last commit: it may have
            // written outputs after it.
            let Some(bytes) = &task.stored_outputs else {
                continue;
            };
            let positions = identity::decode_positions(bytes).ok_or_else(|| {
                RuntimeError::Consumer(format!(
                    "task {}-{}: stored output positions are corrupt",
                    self.topic_of(key.0),
                    key.1
                ))
            })?;
            for (topic, partition, offset) in positions {
                let start = from.entry((topic, partition)).or_insert(offset);
                *start = (*start).min(offset);
            }
            reopened.push(*key);
        }
        let from: Vec<(String, i32, i64)> = from.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        let found = replay::written_since(&self.kafka, &from, Duration::from_secs(120))?;
        let replays = self.replays.as_mut().expect("checked above");
        if !found.is_empty() {
            tracing::info!(
                records = found.len(),
                tasks = reopened.len(),
                "read back the outputs written since the reopened tasks' last commits; their replays will not write them again"
            );
        }
        for f in found {
            replays.written.insert(f);
        }
        if replays.written.is_empty() {
            return Ok(());
        }
        let inputs: Vec<(String, i32)> = reopened
            .iter()
            .map(|(stage, p)| (self.topic_of(*stage).to_string(), *p))
            .collect();
        let ends = kafka::high_watermarks(&self.kafka, &inputs)?;
        let replays = self.replays.as_mut().expect("checked above");
        for (key, (_, end)) in reopened.into_iter().zip(ends) {
            replays.replaying.insert(key, end);
        }
        Ok(())
    }

    /// Deletes the directories of tasks this instance has not run for `state.cleanup_delay`.
    fn clean_task_dirs(&mut self) {
        let delay = self.cleanup_delay;
        let expired: Vec<PathBuf> = self
            .unassigned
            .iter()
            .filter(|(_, since)| since.elapsed() >= delay)
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in expired {
            self.unassigned.remove(&dir);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "deleted the state of a task this instance no longer runs")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot delete an unassigned task's state")
                }
            }
        }
    }

    /// Where outputs written after now will be found, per output partition: after the last
    /// offset this producer had acknowledged there, or the partition's end at the start.
    fn output_positions(&self) -> Option<Vec<u8>> {
        let replays = self.replays.as_ref()?;
        let positions: Vec<(String, i32, i64)> = replays
            .base
            .iter()
            .map(|((topic, p), base)| {
                let acked = self.sink.last_offset(topic, *p).map_or(i64::MIN, |o| o + 1);
                (topic.clone(), *p, (*base).max(acked))
            })
            .collect();
        Some(identity::encode_positions(&positions))
    }

    /// Commits and closes the tasks of revoked partitions. Partitions that were `lost` (the
    /// group moved on without this member, e.g. after a missed session timeout) may already
    /// belong to another instance: their tasks are dropped without writing anything, so that
    /// this instance never writes to a changelog it no longer owns. Under `exactly_once_v2`
    /// their uncommitted outputs share the open transaction with the other tasks', which can
    /// then only be aborted: the run stops, and a restart resumes from the last commit.
    fn close_tasks(
        &mut self,
        tpl: &TopicPartitionList,
        lost: bool,
        group: Option<&ConsumerGroupMetadata>,
    ) -> Result<(), RuntimeError> {
        if lost && self.transactional() {
            self.closed = true;
            return Err(RuntimeError::Consumer(format!(
                "partitions lost ({}); the open transaction will not be committed and the run stops",
                describe(tpl)
            )));
        }
        if !lost && !self.closed {
            let released: Vec<(Stage, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (self.stage_of(e.topic()), e.partition()))
                .collect();
            self.commit_releasing(&released, group, false)?;
        }
        for e in tpl.elements() {
            let stage = self.stage_of(e.topic());
            self.tasks.remove(&(stage, e.partition()));
            let dir = self.task_dir(e.topic(), stage, e.partition());
            if let Some(root) = dir.parent() {
                self.unassigned.insert(root.to_path_buf(), Instant::now());
            }
            if let Some(r) = &mut self.replays {
                r.replaying.remove(&(stage, e.partition()));
            }
        }
        self.metrics
            .assigned_partitions
            .set(self.tasks.len() as i64);
        Ok(())
    }

    /// Broadcasts forwarding tasks' progress and flushes outputs; then writes every task's
    /// changes, sealed, to its changelog and flushes that; then persists the same changes
    /// with the input position locally. Under `exactly_once_v2` the outputs, the changelog
    /// records and the consumer positions of `group` commit as one Kafka transaction before
    /// the local write, and a new transaction begins unless this is the `last` commit.
    fn commit(
        &mut self,
        group: Option<&ConsumerGroupMetadata>,
        last: bool,
    ) -> Result<(), RuntimeError> {
        self.commit_releasing(&[], group, last)
    }

    /// A commit whose seals release the tasks `released` (they are being handed over).
    fn commit_releasing(
        &mut self,
        released: &[(Stage, i32)],
        group: Option<&ConsumerGroupMetadata>,
        last: bool,
    ) -> Result<(), RuntimeError> {
        if self.closed {
            return Err(RuntimeError::Consumer(
                "an earlier commit failed or was the last; nothing more is committed".into(),
            ));
        }
        let started = Instant::now();
        let committed = self.write_commit(released, group, last);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.closed = committed.is_err() || (last && self.transactional());
        self.report_event_time_lag();
        committed
    }

    fn write_commit(
        &mut self,
        released: &[(Stage, i32)],
        group: Option<&ConsumerGroupMetadata>,
        last: bool,
    ) -> Result<(), RuntimeError> {
        let forwarding: Vec<i32> = self
            .tasks
            .keys()
            .filter(|(s, _)| *s == Stage::Forward)
            .map(|(_, p)| *p)
            .collect();
        for p in forwarding {
            self.broadcast(p)?;
        }
        self.sink.flush(Duration::from_secs(60))?;
        let outputs = self.output_positions();
        let replays = self.replays.as_ref();
        for (key, task) in &mut self.tasks {
            // A replaying task keeps the positions it was reopened with: outputs of the
            // crashed run for inputs after this commit lie before the new positions, and a
            // crash now must find them again.
            let replaying = replays.is_some_and(|r| r.replaying.contains_key(key));
            let positions = if replaying { None } else { outputs.as_deref() };
            task.write_changelog(&self.changelogs, released.contains(key), positions)?;
        }
        self.changelogs.flush(Duration::from_secs(60))?;
        if self.transactional() {
            let group = group.ok_or_else(|| {
                RuntimeError::Consumer("no consumer group metadata to commit a transaction".into())
            })?;
            let offsets = self.positions();
            let committed =
                self.sink
                    .commit_transaction(&offsets, group, Duration::from_secs(60), last);
            let outcome = if committed.is_ok() {
                "committed"
            } else {
                "aborted"
            };
            self.metrics.commits.with_label_values(&[outcome]).inc();
            committed?;
        } else {
            self.metrics.commits.with_label_values(&["committed"]).inc();
        }
        for task in self.tasks.values_mut() {
            task.write_local(&self.changelogs)?;
        }
        Ok(())
    }

    /// Sets each task's event-time lag (wall clock minus stream time) once it has one.
    fn report_event_time_lag(&self) {
        let now = now_micros();
        for ((stage, p), task) in &self.tasks {
            let stream_time = task.stream_time();
            if stream_time == i64::MIN {
                continue;
            }
            let (lag, partition) = (now.saturating_sub(stream_time) as f64 / 1e6, p.to_string());
            self.metrics
                .event_time_lag_seconds
                .with_label_values(&[self.topic_of(*stage), partition.as_str()])
                .set(lag);
        }
    }

    /// Positions to report to the consumer group: for monitoring only (the stores are the
    /// truth), or committed in the transaction under `exactly_once_v2`.
    fn positions(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((stage, p), t) in &self.tasks {
            if let Some(n) = t.next_offset {
                let _ = tpl.add_partition_offset(self.topic_of(*stage), *p, Offset::Offset(n));
            }
        }
        tpl
    }

    fn process(&mut self, m: &BorrowedMessage<'_>) -> Result<(), RuntimeError> {
        let (p, offset) = (m.partition(), m.offset());
        self.stats.records += 1;
        self.metrics.records.inc();
        let stage = self.stage_of(m.topic());
        let Some(task) = self.tasks.get(&(stage, p)) else {
            return Err(RuntimeError::Consumer(format!(
                "record for unassigned partition {}-{p}",
                m.topic()
            )));
        };
        if task.next_offset.is_some_and(|n| offset < n) {
            return Ok(()); // already reflected in the restored state
        }
        if self.plan.idle_watermark.is_some()
            && let Some(task) = self.tasks.get_mut(&(stage, p))
        {
            task.last_record = Instant::now();
        }
        self.current = Some((stage, p));
        match stage {
            Stage::Forward => self.forward(m)?,
            Stage::Window {
                repartitioned: false,
            } => self.window(m)?,
            Stage::Window {
                repartitioned: true,
            } => self.window_repartitioned(m)?,
        }
        self.current = None;
        if let Some(task) = self.tasks.get_mut(&(stage, p)) {
            task.next_offset = Some(offset + 1);
        }
        if let Some(r) = &mut self.replays
            && r.replaying
                .get(&(stage, p))
                .is_some_and(|end| offset + 1 >= *end)
        {
            r.replaying.remove(&(stage, p));
            if r.replaying.is_empty() {
                r.written.clear();
            }
        }
        Ok(())
    }

    /// Sends an output of the record being processed, unless the task is replaying and a copy
    /// of this very record reached the topic before the crash (then that copy stands, and
    /// this one is skipped). Outputs made outside a record (watermarks) go out as they are.
    fn send_output(&mut self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), RuntimeError> {
        if let (Some(task), Some(replays)) = (self.current, self.replays.as_mut())
            && !replays.written.is_empty()
            && replays.replaying.contains_key(&task)
            && replays
                .written
                .take(identity::fingerprint(topic, key, value))
        {
            self.stats.suppressed += 1;
            if replays.written.is_empty() {
                replays.replaying.clear();
            }
            return Ok(());
        }
        Ok(self.sink.send_to(topic, key, value)?)
    }

    /// Appends a watermark to every input partition that has been quiet for the source's
    /// `idle_watermark`, at its stream time plus the quiet time. The record comes back through
    /// the consumer like any other, so what it closes is part of the replayable log.
    fn idle_watermarks(&mut self) -> Result<(), RuntimeError> {
        let Some(after) = self.plan.idle_watermark else {
            return Ok(());
        };
        let repartitioned = Stage::Window {
            repartitioned: true,
        };
        for ((stage, p), task) in &mut self.tasks {
            let quiet = task.last_record.elapsed();
            if *stage == repartitioned || quiet < after || task.stream_time() == i64::MIN {
                continue;
            }
            let t = task.stream_time().saturating_add(quiet.as_micros() as i64);
            self.sink.send_to_partition(
                &self.plan.input_topic,
                *p,
                WATERMARK_KEY,
                &watermark_value(t),
            )?;
            task.last_record = Instant::now();
            self.stats.idle_watermarks += 1;
            tracing::debug!(partition = p, watermark = t, "appended an idle watermark");
        }
        Ok(())
    }

    fn task_mut(&mut self, stage: Stage, partition: i32) -> &mut Task {
        self.tasks
            .get_mut(&(stage, partition))
            .expect("process checked the task exists")
    }

    /// Source record → window operator → bars and late envelopes.
    fn window(&mut self, m: &BorrowedMessage<'_>) -> Result<(), RuntimeError> {
        let stage = Stage::Window {
            repartitioned: false,
        };
        let mut outputs = std::mem::take(&mut self.outputs);
        if let Some(t) = watermark_of(m.key(), m.payload()) {
            self.task_mut(stage, m.partition())
                .window_op()
                .advance_to(t, &mut outputs);
        } else if let Some(tick) = self.admit(m, stage)? {
            let key = key_of(&tick, &self.plan.source_key);
            let task = self.tasks.get_mut(&(stage, m.partition())).expect("task");
            task.window_op()
                .process(&key, &tick, m.offset(), &mut outputs);
        }
        self.emit_all(&provenance(m), outputs)
    }

    /// Decodes a source tick and checks it: bad data goes to the dead-letter topic with its
    /// reason, filtered ticks are counted; `None` for both.
    fn admit(
        &mut self,
        m: &BorrowedMessage<'_>,
        stage: Stage,
    ) -> Result<Option<Tick>, RuntimeError> {
        let tick = match self.ticks.decode(m.payload()) {
            Ok(tick) => tick,
            Err(e) if registry_failed(&e) => return Err(e.into()),
            Err(e) => {
                self.dead_letter(&provenance(m), reason(&e), e.to_string())?;
                return Ok(None);
            }
        };
        let stream_time = self.task_mut(stage, m.partition()).stream_time();
        if let Err(r) = self.plan.sanity.check(&tick, stream_time) {
            self.dead_letter(&provenance(m), r.reason, r.detail)?;
            return Ok(None);
        }
        if !self.plan.filters.iter().all(|f| f.keeps(&tick)) {
            self.stats.filtered += 1;
            return Ok(None);
        }
        Ok(Some(tick))
    }

    /// Source record → filters → re-keyed into the repartition topic with its origin.
    fn forward(&mut self, m: &BorrowedMessage<'_>) -> Result<(), RuntimeError> {
        let p = m.partition();
        if let Some(t) = watermark_of(m.key(), m.payload()) {
            if let Work::Forward { stream_time, .. } = &mut self.task_mut(Stage::Forward, p).work {
                *stream_time = (*stream_time).max(t);
            }
            return self.broadcast(p);
        }
        let Some(tick) = self.admit(m, Stage::Forward)? else {
            return Ok(());
        };
        let Work::Forward { stream_time, .. } = &mut self.task_mut(Stage::Forward, p).work else {
            unreachable!("forward stage");
        };
        *stream_time = (*stream_time).max(tick.event_time);
        let origin = Origin {
            partition: p,
            offset: m.offset(),
            stream_time: *stream_time,
        };
        let group = self
            .plan
            .group_by
            .as_ref()
            .expect("forward stage has a group_by");
        let mut envelope = std::mem::take(&mut self.envelope);
        origin.wrap_into(m.payload().unwrap_or_default(), &mut envelope);
        let (topic, key) = (
            group.topic.clone(),
            key_of(&tick, &group.field).into_owned(),
        );
        let sent = self.send_output(&topic, key.as_bytes(), &envelope);
        self.envelope = envelope;
        sent?;
        self.stats.forwarded += 1;
        Ok(())
    }

    /// Tells every repartition partition how far source partition `p` has got, if that moved
    /// since the last broadcast, so windows close even where `p` sends no ticks.
    fn broadcast(&mut self, p: i32) -> Result<(), RuntimeError> {
        let Work::Forward {
            stream_time,
            broadcast,
        } = &mut self.task_mut(Stage::Forward, p).work
        else {
            return Ok(());
        };
        if *stream_time <= *broadcast {
            return Ok(());
        }
        *broadcast = *stream_time;
        let origin = Origin {
            partition: p,
            offset: -1,
            stream_time: *stream_time,
        };
        let group = self
            .plan
            .group_by
            .as_ref()
            .expect("forward stage has a group_by");
        origin.wrap_into(&watermark_value(origin.stream_time), &mut self.envelope);
        for q in 0..self.partitions {
            self.sink
                .send_to_partition(&group.topic, q, WATERMARK_KEY, &self.envelope)?;
            self.stats.broadcasts += 1;
        }
        Ok(())
    }

    /// Repartitioned record → window operator, judged by its source partition's stream time;
    /// windows close at the slowest source partition's stream time.
    fn window_repartitioned(&mut self, m: &BorrowedMessage<'_>) -> Result<(), RuntimeError> {
        let unwrapped = m
            .payload()
            .and_then(Origin::unwrap)
            .filter(|(o, _)| (0..self.partitions).contains(&o.partition));
        self.stats.repartition_records += 1;
        let Some((origin, value)) = unwrapped else {
            let detail = "no valid origin envelope in front of the value".to_string();
            return self.dead_letter(&provenance(m), "bad_repartition_record", detail);
        };
        let input_topic = self.input_topic.clone();
        let source = SourceRecord {
            topic: &input_topic,
            partition: origin.partition,
            offset: origin.offset,
            key: m.key(),
            value: Some(value),
            timestamp: record_time(m),
        };
        let mut outputs = std::mem::take(&mut self.outputs);
        let is_tick = watermark_of(m.key(), Some(value)).is_none();
        let task = self
            .tasks
            .get_mut(&(
                Stage::Window {
                    repartitioned: true,
                },
                m.partition(),
            ))
            .expect("task");
        let Work::Window {
            op,
            sources: Some(marks),
        } = &mut task.work
        else {
            unreachable!("repartitioned window stage");
        };
        let mark = &mut marks[origin.partition as usize];
        mark.stream_time = mark.stream_time.max(origin.stream_time);
        if is_tick && origin.offset <= mark.offset {
            self.stats.duplicates += 1;
        } else if is_tick {
            mark.offset = origin.offset;
            match self.ticks.decode(Some(value)) {
                Ok(tick) if self.plan.regrouped_filters.iter().all(|f| f.keeps(&tick)) => {
                    let key = key_of(&tick, self.plan.window_key());
                    let ordinal = (i64::from(origin.partition) << 40) | origin.offset;
                    op.process_from(&key, &tick, ordinal, origin.stream_time, &mut outputs);
                }
                Ok(_) => self.stats.filtered += 1,
                Err(e) if registry_failed(&e) => {
                    self.outputs = outputs;
                    return Err(e.into());
                }
                Err(e) => {
                    self.outputs = outputs;
                    return self.dead_letter(&source, reason(&e), e.to_string());
                }
            }
        }
        op.advance_to(watermark(marks), &mut outputs);
        self.emit_all(&source, outputs)
    }

    /// Sends `outputs` (about record `source`) and keeps the buffer for the next record.
    fn emit_all(
        &mut self,
        source: &Provenance<'_>,
        mut outputs: Vec<Output>,
    ) -> Result<(), RuntimeError> {
        for out in outputs.drain(..) {
            self.emit(source, out)?;
        }
        self.outputs = outputs;
        Ok(())
    }

    fn emit(&mut self, source: &Provenance<'_>, out: Output) -> Result<(), RuntimeError> {
        match out {
            Output::Bar(bar) => {
                let res = self
                    .plan
                    .defs
                    .iter()
                    .position(|d| d.name == bar.resolution)
                    .unwrap_or(0);
                for topic in self.plan.bar_topics[res].clone() {
                    let bytes = self.bar_encoders[&topic].encode(&bar)?;
                    self.send_output(&topic, bar.symbol.as_bytes(), &bytes)?;
                }
                self.stats.bars += 1;
                self.metrics.bars.inc();
                if source.timestamp > 0 {
                    let age = now_micros().saturating_sub(source.timestamp);
                    self.metrics
                        .bar_latency_seconds
                        .observe(age.max(0) as f64 / 1e6);
                }
            }
            Output::Rejected { reason, detail, .. } => {
                self.dead_letter(source, reason, detail)?;
            }
            Output::Late { detail, .. } => {
                self.stats.late += 1;
                self.metrics.late_ticks.inc();
                let topic = self.plan.late_topic.clone();
                self.send_envelope(source, &topic, "late", detail)?;
            }
        }
        Ok(())
    }

    /// Sends a record that cannot be processed to the dead-letter topic, counted by reason.
    fn dead_letter(
        &mut self,
        source: &Provenance<'_>,
        reason: &str,
        detail: String,
    ) -> Result<(), RuntimeError> {
        self.stats.dead_letters += 1;
        self.metrics.dead_letters.with_label_values(&[reason]).inc();
        let topic = self.plan.dlq_topic.clone();
        self.send_envelope(source, &topic, reason, detail)
    }

    fn send_envelope(
        &mut self,
        source: &Provenance<'_>,
        topic: &str,
        reason: &str,
        detail: String,
    ) -> Result<(), RuntimeError> {
        let envelope = DeadLetter::about(source, reason, detail, &self.plan.application);
        let bytes = self.dead_letters.encode(&envelope)?;
        self.send_output(topic, source.key.unwrap_or_default(), &bytes)
    }
}

fn reason(e: &CodecError) -> &'static str {
    match e {
        CodecError::SchemaNotFound { .. } => "unknown_schema",
        CodecError::Incompatible { .. } => "incompatible_schema",
        _ => "undecodable",
    }
}

/// The writer id of the state directory `dir`: made up on first use and kept in
/// `dir/writer-id`, so that a restarted instance recognises its own seals (and does not wait
/// for itself), while a new host, or a wiped directory, is a new writer.
fn writer_id(dir: &Path) -> Result<String, RuntimeError> {
    let file = dir.join("writer-id");
    let io = |source| RuntimeError::StateDir {
        path: file.clone(),
        source,
    };
    match std::fs::read_to_string(&file) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => Err(io(std::io::Error::other("empty writer id"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::create_dir_all(dir).map_err(io)?;
            let tmp = dir.join("writer-id.tmp");
            std::fs::write(&tmp, &id).map_err(io)?;
            std::fs::rename(&tmp, &file).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

/// The task directories (`<topic>-<partition>`) in an application's state directory.
fn task_dirs(app_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(app_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// `topic-partition` names of a partition list, for logs.
fn describe(tpl: &TopicPartitionList) -> String {
    let names: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}-{}", e.topic(), e.partition()))
        .collect();
    names.join(",")
}

/// The engine's name in `/healthz` and `/readyz`.
pub const ENGINE: &str = "engine";

/// Consumer context that opens and closes tasks as partitions come and go.
struct EngineContext {
    engine: Arc<Mutex<Engine>>,
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
                tracing::info!(partitions = %describe(tpl), "partitions assigned");
                let restoring = format!("restoring {}", describe(tpl));
                engine
                    .metrics
                    .health
                    .set(ENGINE, StageState::Starting(restoring));
                let opened = engine.open_tasks(tpl);
                if opened.is_ok() {
                    engine.metrics.health.set(ENGINE, StageState::Ready);
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                opened.and(assigned.map_err(|e| RuntimeError::Consumer(e.to_string())))
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                tracing::info!(partitions = %describe(tpl), lost, "partitions revoked");
                let group = consumer.group_metadata();
                let closed = engine.close_tasks(tpl, lost, group.as_ref());
                if engine.tasks.is_empty() {
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
    encoders: HashMap<String, Encoder<Bar>>,
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
    let internal = plan.group_by.iter().map(|g| g.topic.clone());
    let outputs: Vec<String> = plan.output_topics().into_iter().chain(internal).collect();
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
    let mut encoders = HashMap::new();
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

/// Output identities for `at_least_once` runs: the end of every output partition now.
fn replays(
    plan: &Plan,
    kafka: &KafkaConfig,
    outputs: &[(String, i32)],
) -> Result<Option<Replays>, RuntimeError> {
    if plan.guarantee != ProcessingGuarantee::AtLeastOnce {
        return Ok(None);
    }
    let partitions: Vec<(String, i32)> = outputs
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect();
    let base = kafka::high_watermarks(kafka, &partitions)?;
    Ok(Some(Replays {
        base,
        written: Suppress::default(),
        replaying: HashMap::new(),
    }))
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
    tokio::task::spawn_blocking(move || kafka::check_reachable(&k))
        .await
        .map_err(|e| RuntimeError::Consumer(e.to_string()))??;
    let registry = RegistryClient::from_config(&app.registry)?;
    let prepared = prepare(&plan, &app.kafka, &registry).await?;
    let (k, p, outputs) = (app.kafka.clone(), plan.clone(), prepared.outputs.clone());
    let replays = tokio::task::spawn_blocking(move || replays(&p, &k, &outputs))
        .await
        .map_err(|e| RuntimeError::Consumer(e.to_string()))??;
    let (partitions, bar_encoders) = (prepared.partitions, prepared.encoders);
    let dlq_id = registry
        .register_value(&plan.dlq_topic, RecordKind::DeadLetter)
        .await?;
    if plan.late_topic != plan.dlq_topic {
        registry
            .register_value(&plan.late_topic, RecordKind::DeadLetter)
            .await?;
    }
    let app_dir = app.state.dir.join(&plan.application);
    let writer: Arc<str> = writer_id(&app_dir)?.into();
    // Until assigned, every task directory found is unassigned, as of now.
    let unassigned = task_dirs(&app_dir)
        .into_iter()
        .map(|d| (d, Instant::now()))
        .collect();
    let (sink, changelogs) = producers(&app.kafka, &plan, &writer, &options).await?;
    let engine = Engine {
        closed: false,
        sink,
        changelogs,
        kafka: app.kafka.clone(),
        state_dir: app.state.dir.clone(),
        tasks: HashMap::new(),
        bar_encoders,
        dead_letters: Encoder::new(RecordKind::DeadLetter, dlq_id),
        ticks: TickDecoder::new(registry),
        input_topic: plan.input_topic.as_str().into(),
        partitions,
        stats: RunStats::default(),
        metrics,
        failure: None,
        outputs: Vec::new(),
        envelope: Vec::new(),
        writer,
        handover_timeout: app.state.handover_timeout,
        plan,
        replays,
        current: None,
        unassigned,
        cleanup_delay: app.state.cleanup_delay,
    };
    let kafka_cfg = app.kafka.clone();
    tokio::task::spawn_blocking(move || process_loop(engine, &kafka_cfg, &options, &stop))
        .await
        .map_err(|e| RuntimeError::Consumer(e.to_string()))?
}

/// The output and changelog producers: two idempotent ones, or under `exactly_once_v2` one
/// transactional producer whose id is the application and the instance id (or else the
/// state directory's writer id), so that a restarted instance fences its previous self.
async fn producers(
    kafka: &KafkaConfig,
    plan: &Plan,
    writer: &str,
    options: &RunOptions,
) -> Result<(Arc<KafkaSink>, Arc<KafkaSink>), RuntimeError> {
    if plan.guarantee == ProcessingGuarantee::AtLeastOnce {
        // The output producer tracks offsets too: commits store where later outputs begin.
        let sink = KafkaSink::tracking_offsets(kafka, &plan.dlq_topic)?;
        let changelogs = KafkaSink::tracking_offsets(kafka, &plan.dlq_topic)?;
        return Ok((Arc::new(sink), Arc::new(changelogs)));
    }
    let instance = options.instance_id.as_deref().unwrap_or(writer);
    let id = format!("{}-{instance}", plan.application);
    let (kafka, topic) = (kafka.clone(), plan.dlq_topic.clone());
    let timeout = kafka.connect_timeout.max(Duration::from_secs(30));
    let sink =
        tokio::task::spawn_blocking(move || KafkaSink::transactional(&kafka, &topic, &id, timeout))
            .await
            .map_err(|e| RuntimeError::Consumer(e.to_string()))??;
    let sink = Arc::new(sink);
    Ok((sink.clone(), sink))
}

fn process_loop(
    engine: Engine,
    kafka: &KafkaConfig,
    options: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunStats, RuntimeError> {
    let group = engine.plan.application.clone();
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
    let mut ends = kafka::EndCheck::default();
    while !stop.load(Ordering::Relaxed) {
        let polled = Instant::now();
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                engine.lock().expect("engine lock").process(&m)?;
                uncommitted += 1;
                // Watermarks (ours included) are not input: they do not end idleness.
                if m.key() != Some(WATERMARK_KEY) {
                    idle = Duration::ZERO;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            // Idle only counts at the end of every assigned partition: joining the group, a
            // restore or a slow fetch is not idleness.
            None if options.stop_when_idle.is_some()
                && ends.at_end(&consumer, |topic, p| {
                    let e = engine.lock().expect("engine lock");
                    // A new task reads from the beginning: the stores, not the group's
                    // committed offsets, say where tasks start.
                    e.tasks
                        .get(&(e.stage_of(topic), p))
                        .map(|t| t.next_offset.unwrap_or(0))
                }) =>
            {
                idle += polled.elapsed()
            }
            None => {}
        }
        let mut e = engine.lock().expect("engine lock");
        if let Some(f) = e.failure.take() {
            return Err(f);
        }
        e.idle_watermarks()?;
        if uncommitted > 0 && last_commit.elapsed() >= options.commit_interval {
            e.clean_task_dirs();
            let started = Instant::now();
            e.commit(consumer.group_metadata().as_ref(), false)?;
            tracing::debug!(records = uncommitted, took = ?started.elapsed(), "committed");
            kafka::report_lag(&consumer, "engine", &e.metrics.consumer_lag);
            if !e.transactional() {
                let _ = consumer.commit(&e.positions(), CommitMode::Async);
            }
            (last_commit, uncommitted) = (Instant::now(), 0);
        }
        if options.stop_when_idle.is_some_and(|d| idle >= d) {
            break;
        }
    }
    let mut e = engine.lock().expect("engine lock");
    e.commit(consumer.group_metadata().as_ref(), true)?;
    if !e.transactional() {
        let _ = consumer.commit(&e.positions(), CommitMode::Sync);
    }
    Ok(e.stats.clone())
}
