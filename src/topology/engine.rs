//! The engine core: tasks, the commit protocol and the replay bookkeeping, driven by explicit
//! calls (assign, process, commit, revoke) and writing through a [`Cluster`]. It never sees
//! Kafka: `runtime` drives it from a Kafka consumer, the test driver from memory.
//!
//! Commit protocol (documented in `docs/delivery.md`): records are processed in offset order;
//! at each commit the producer is flushed first (every bar and late record emitted so far is
//! acknowledged), then each task writes its window changes, its next input offset and its
//! stream time to its changelog, sealed, and then in one synced RocksDB batch. After a crash a
//! task resumes from its stored offset with exactly the state of that commit, so no tick is
//! counted twice or lost; under `at_least_once` the outputs a replay would write again are
//! read back and suppressed (see `identity`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::edge::Cluster;
use super::identity::{self, Suppress};
use super::plan::{Plan, PlanError};
use super::routing::TickDecoder;
use super::task::{Handover, Stage, Task};
use crate::codec::{
    Bar, CodecError, DeadLetter, Encoder, SourceRecord, WATERMARK_KEY, watermark_value,
};
use crate::config::topology::ProcessingGuarantee;
use crate::kafka::SinkError;
use crate::kafka::{self, PartitionEnd};
use crate::metrics::Metrics;
use crate::operators::{OpError, Output};
use crate::state::StateError;
use crate::state::changelog::changelog_topic;

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
    /// Another instance wrote to a task's changelog partition after this one's last commit
    /// there (under `at_least_once`): the partition has moved while this instance kept it (a
    /// zombie), or a zombie wrote after this instance claimed it. The run stops without
    /// committing; a restart restores the last intact commit (see `docs/delivery.md`).
    #[error(
        "changelog {topic}-{partition} was written by another instance (expected it to end at {expected}, found {found}); stopping without committing"
    )]
    Fenced {
        /// The changelog topic.
        topic: String,
        /// The task's partition.
        partition: i32,
        /// Where this instance's last commit left the partition's end.
        expected: i64,
        /// The end found.
        found: i64,
    },
    /// A reset's seal did not land where it was planned: an instance of the application
    /// wrote to the changelog partition meanwhile.
    #[error(
        "changelog {topic}-{partition} was written while the reset wrote to it (its seal landed at {found}, not {expected}): an instance of the application is running; stop every instance and reset again"
    )]
    ResetRaced {
        /// The changelog topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Where the reset's seal should have landed.
        expected: i64,
        /// Where it landed (-1: not acknowledged).
        found: i64,
    },
    /// A test made the engine crash at this step of a commit (see [`CommitStep`]).
    #[error("crashed on purpose at commit step {0:?}")]
    Crashed(CommitStep),
    /// The instance's state directory cannot be used.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A blocking task of the run panicked or was cancelled (a bug).
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl crate::error::Classified for RuntimeError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            RuntimeError::Plan(e) => e.class(),
            RuntimeError::Operator(e) => e.class(),
            RuntimeError::Kafka(e) => e.class(),
            RuntimeError::Sink(e) => e.class(),
            RuntimeError::State(e) => e.class(),
            RuntimeError::Codec(e) => e.class(),
            RuntimeError::Crashed(_) | RuntimeError::Task(_) => crate::error::ErrorClass::Internal,
            _ => crate::error::ErrorClass::External,
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

/// The steps of a commit at which a test can make the engine crash, as a SIGKILL would
/// (the test driver's `crash_in_next_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// Before the outputs are flushed: some may have reached their topics, unacknowledged.
    BeforeFlush,
    /// After the outputs are acknowledged, before any changelog record is written.
    AfterFlush,
    /// After the first task's changelog entries and seal were sent, before the others'.
    MidChangelog,
    /// After every changelog record is acknowledged, before any local batch.
    AfterChangelog,
    /// After the first task's local batch, before the others'.
    AfterFirstLocal,
}

impl CommitStep {
    /// Every step, in the order a commit passes them.
    pub const ALL: [CommitStep; 5] = [
        CommitStep::BeforeFlush,
        CommitStep::AfterFlush,
        CommitStep::MidChangelog,
        CommitStep::AfterChangelog,
        CommitStep::AfterFirstLocal,
    ];
}

/// Fails with [`RuntimeError::Crashed`] if a test asked (`at`) for a crash at `step`.
fn crash_point(at: &mut Option<CommitStep>, step: CommitStep) -> Result<(), RuntimeError> {
    if *at == Some(step) {
        *at = None;
        return Err(RuntimeError::Crashed(step));
    }
    Ok(())
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

/// The wall clock in UTC microseconds.
pub(super) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What an engine is made of.
pub struct EngineSetup {
    /// The topology, ready to run.
    pub plan: Plan,
    /// Partitions of the source topic (and of the repartition topic).
    pub partitions: i32,
    /// The instance's state directory (`state.dir`).
    pub state_dir: PathBuf,
    /// The log the engine writes to and restores from.
    pub cluster: Arc<dyn Cluster>,
    /// The encoder of each bar topic (its registered schema id).
    pub bar_encoders: HashMap<String, Encoder<Bar>>,
    /// The encoder of late and dead-letter envelopes.
    pub dead_letters: Encoder<DeadLetter>,
    /// The decoder of source ticks.
    pub ticks: TickDecoder,
    /// Where the engine's metrics go.
    pub metrics: Metrics,
    /// `state.handover_timeout`.
    pub handover_timeout: Duration,
    /// `state.cleanup_delay`.
    pub cleanup_delay: Duration,
    /// Under `at_least_once`, every output partition with its end when the run started.
    pub output_ends: Option<Vec<PartitionEnd>>,
    /// Set when the process is stopping: a task waiting for its hand-over or restoring
    /// gives up ([`crate::state::StateError::Interrupted`]).
    pub stop: Arc<AtomicBool>,
}

/// One instance's tasks and what they share: what the processing loop drives.
pub struct Engine {
    pub(super) plan: Plan,
    /// The source topic, shared with envelopes of repartitioned ticks.
    pub(super) input_topic: Arc<str>,
    /// Partitions of the source topic (and of the repartition topic).
    pub(super) partitions: i32,
    state_dir: PathBuf,
    pub(super) tasks: HashMap<(Stage, i32), Task>,
    /// Where outputs and changelog records go, and what restores read.
    pub(super) cluster: Arc<dyn Cluster>,
    /// No more commits may be written: a commit failed (the in-memory state is ahead of what
    /// was committed, and a revocation while the run stops must not commit it), or the last
    /// transaction of an `exactly_once_v2` run was committed (no transaction is open).
    closed: bool,
    /// The last commit was made (the run is stopping): tasks revoked now keep their metric
    /// series, for the last scrape.
    last_committed: bool,
    /// Set when the process is stopping (see [`EngineSetup::stop`]).
    stop: Arc<AtomicBool>,
    pub(super) bar_encoders: HashMap<String, Encoder<Bar>>,
    pub(super) dead_letters: Encoder<DeadLetter>,
    pub(super) ticks: TickDecoder,
    /// Totals so far.
    pub stats: RunStats,
    /// The engine's metrics.
    pub metrics: Metrics,
    pub(super) outputs: Vec<Output>,
    /// Buffer for repartition records' values.
    pub(super) envelope: Vec<u8>,
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
    /// A test's request to crash at a step of the next commit.
    pub(super) crash_at: Option<CommitStep>,
}

impl Engine {
    /// An engine with no tasks yet: `assign` gives it some.
    pub fn new(setup: EngineSetup) -> Result<Self, RuntimeError> {
        let app_dir = setup.state_dir.join(&setup.plan.application);
        let writer: Arc<str> = writer_id(&app_dir)?.into();
        // Until assigned, every task directory found is unassigned, as of now.
        let unassigned = task_dirs(&app_dir)
            .into_iter()
            .map(|d| (d, Instant::now()))
            .collect();
        let replays = setup.output_ends.map(|base| Replays {
            base,
            written: Suppress::default(),
            replaying: HashMap::new(),
        });
        Ok(Self {
            input_topic: setup.plan.input_topic.as_str().into(),
            plan: setup.plan,
            partitions: setup.partitions,
            state_dir: setup.state_dir,
            tasks: HashMap::new(),
            cluster: setup.cluster,
            closed: false,
            last_committed: false,
            stop: setup.stop,
            bar_encoders: setup.bar_encoders,
            dead_letters: setup.dead_letters,
            ticks: setup.ticks,
            stats: RunStats::default(),
            metrics: setup.metrics,
            outputs: Vec::new(),
            envelope: Vec::new(),
            writer,
            handover_timeout: setup.handover_timeout,
            replays,
            current: None,
            unassigned,
            cleanup_delay: setup.cleanup_delay,
            crash_at: None,
        })
    }

    /// The plan the engine runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the engine has no task.
    pub fn idle(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Whether commits are Kafka transactions (`exactly_once_v2`).
    pub fn transactional(&self) -> bool {
        self.plan.guarantee == ProcessingGuarantee::ExactlyOnceV2
    }

    /// The topics the application consumes: the source, and the repartition topic if any.
    pub fn input_topics(&self) -> Vec<String> {
        let mut topics = vec![self.plan.input_topic.clone()];
        topics.extend(self.plan.group_by.as_ref().map(|g| g.topic.clone()));
        topics
    }

    pub(crate) fn stage_of(&self, topic: &str) -> Stage {
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

    pub(crate) fn topic_of(&self, stage: Stage) -> &str {
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

    /// Opens the tasks of newly assigned partitions (topic, partition) and says where each
    /// resumes: its next offset, or `None` for a task that starts at the beginning.
    pub fn assign(&mut self, parts: &[(String, i32)]) -> Result<Vec<Option<i64>>, RuntimeError> {
        let handover = Handover {
            writer: self.writer.clone(),
            deadline: Instant::now() + self.handover_timeout,
            fenced: self.transactional(),
            stop: self.stop.clone(),
        };
        let mut opened = Vec::with_capacity(parts.len());
        let mut resume = Vec::with_capacity(parts.len());
        for (topic, p) in parts {
            let (topic, p) = (topic.as_str(), *p);
            let stage = self.stage_of(topic);
            let dir = self.task_dir(topic, stage, p);
            if let Some(root) = dir.parent() {
                self.unassigned.remove(root);
            }
            let store = self.plan.store_of(stage == Stage::Forward);
            let changelog = self
                .cluster
                .changelog(&changelog_topic(&self.plan.application, store), p);
            let (window, n) = (&self.plan.window, self.partitions as usize);
            let input = (topic, stage);
            let task = Task::open(&dir, input, window, n, changelog, &handover, &self.metrics)?;
            resume.push(task.next_offset);
            tracing::debug!(topic, partition = p, next_offset = ?task.next_offset, open_windows = task.open_windows(), stored_outputs = task.stored_outputs.is_some(), "task opened");
            self.tasks.insert((stage, p), task);
            opened.push((stage, p));
            self.metrics
                .assigned_partitions
                .set(self.tasks.len() as i64);
        }
        self.find_replayed(&opened)?;
        self.claim(&opened)?;
        Ok(resume)
    }

    /// Under `at_least_once`, each task of `opened` claims its changelog partition before it
    /// processes anything: a commit (the repaired keys, and for a task without output
    /// positions yet, where its outputs will begin), sealed at the offset the restore ended
    /// at. A previous owner still writing (a zombie) finds the claim at its next commit and
    /// stops; if the zombie wrote after the restore, the claim is not where it was expected,
    /// and this instance stops instead (a restart restores what the zombie committed). A
    /// crash before the first processed commit still finds the stored positions.
    fn claim(&mut self, opened: &[(Stage, i32)]) -> Result<(), RuntimeError> {
        if opened.is_empty() {
            return Ok(());
        }
        let Some(outputs) = self.output_positions() else {
            return Ok(());
        };
        for key in opened {
            let task = self.tasks.get_mut(key).expect("opened above");
            let first = task.stored_outputs.is_none().then_some(outputs.as_slice());
            task.write_changelog(self.cluster.changelogs(), false, true, first)?;
        }
        self.cluster.changelogs().flush()?;
        for key in opened {
            let task = self.tasks.get_mut(key).expect("opened above");
            task.write_local(self.cluster.changelogs())?;
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
        let found = self.cluster.written_since(&from)?;
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
        let ends = self.cluster.ends(&inputs)?;
        let replays = self.replays.as_mut().expect("checked above");
        for (key, (_, end)) in reopened.into_iter().zip(ends) {
            replays.replaying.insert(key, end);
        }
        Ok(())
    }

    /// Deletes the directories of tasks this instance has not run for `state.cleanup_delay`.
    pub fn clean_task_dirs(&mut self) {
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
                let acked =
                    (self.cluster.outputs().last_offset(topic, *p)).map_or(i64::MIN, |o| o + 1);
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
    pub fn revoke(&mut self, parts: &[(String, i32)], lost: bool) -> Result<(), RuntimeError> {
        if lost && self.transactional() {
            self.closed = true;
            let names: Vec<String> = parts.iter().map(|(t, p)| format!("{t}-{p}")).collect();
            return Err(RuntimeError::Consumer(format!(
                "partitions lost ({}); the open transaction will not be committed and the run stops",
                names.join(",")
            )));
        }
        if !lost && !self.closed {
            let released: Vec<(Stage, i32)> =
                parts.iter().map(|(t, p)| (self.stage_of(t), *p)).collect();
            self.commit_releasing(&released, false)?;
        }
        for (topic, p) in parts {
            let stage = self.stage_of(topic);
            self.tasks.remove(&(stage, *p));
            let dir = self.task_dir(topic, stage, *p);
            if let Some(root) = dir.parent() {
                self.unassigned.insert(root.to_path_buf(), Instant::now());
            }
            if let Some(r) = &mut self.replays {
                r.replaying.remove(&(stage, *p));
            }
            if !self.last_committed {
                self.forget_series(topic, *p);
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
    /// records and the input positions commit as one Kafka transaction before the local
    /// write, and a new transaction begins unless this is the `last` commit.
    pub fn commit(&mut self, last: bool) -> Result<(), RuntimeError> {
        self.commit_releasing(&[], last)
    }

    /// A commit whose seals release the tasks `released` (they are being handed over).
    fn commit_releasing(
        &mut self,
        released: &[(Stage, i32)],
        last: bool,
    ) -> Result<(), RuntimeError> {
        if self.closed {
            return Err(RuntimeError::Consumer(
                "an earlier commit failed or was the last; nothing more is committed".into(),
            ));
        }
        let started = Instant::now();
        let committed = self.write_commit(released, last);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.closed = committed.is_err() || (last && self.transactional());
        self.last_committed |= last;
        self.report_task_gauges();
        committed
    }

    fn write_commit(&mut self, released: &[(Stage, i32)], last: bool) -> Result<(), RuntimeError> {
        let forwarding: Vec<i32> = self
            .tasks
            .keys()
            .filter(|(s, _)| *s == Stage::Forward)
            .map(|(_, p)| *p)
            .collect();
        for p in forwarding {
            self.broadcast(p)?;
        }
        crash_point(&mut self.crash_at, CommitStep::BeforeFlush)?;
        self.cluster.outputs().flush()?;
        crash_point(&mut self.crash_at, CommitStep::AfterFlush)?;
        for task in self.tasks.values() {
            task.check_owner()?;
        }
        let outputs = self.output_positions();
        for (key, task) in &mut self.tasks {
            // A replaying task keeps the positions it was reopened with: outputs of the
            // crashed run for inputs after this commit lie before the new positions, and a
            // crash now must find them again.
            let replaying = (self.replays.as_ref()).is_some_and(|r| r.replaying.contains_key(key));
            let positions = if replaying { None } else { outputs.as_deref() };
            let changelogs = self.cluster.changelogs();
            task.write_changelog(changelogs, released.contains(key), false, positions)?;
            crash_point(&mut self.crash_at, CommitStep::MidChangelog)?;
        }
        self.cluster.changelogs().flush()?;
        crash_point(&mut self.crash_at, CommitStep::AfterChangelog)?;
        if self.transactional() {
            let committed = self.cluster.commit_transaction(&self.positions(), last);
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
            task.write_local(self.cluster.changelogs())?;
            crash_point(&mut self.crash_at, CommitStep::AfterFirstLocal)?;
        }
        Ok(())
    }

    /// Sets each task's gauges: open windows, store size, and event-time lag (wall clock
    /// minus stream time) once it has a stream time.
    /// Removes the gauges of a task that moved to another instance, so that sums over
    /// instances count it once (its new owner reports it). Its record counter stays: it no
    /// longer moves, so rates are right, and totals never go down.
    fn forget_series(&self, topic: &str, partition: i32) {
        let partition = partition.to_string();
        let labels = [topic, partition.as_str()];
        let m = &self.metrics;
        let _ = m.open_windows.remove_label_values(&labels);
        let _ = m.state_bytes.remove_label_values(&labels);
        let _ = m.event_time_lag_seconds.remove_label_values(&labels);
        let lag = ["engine", topic, partition.as_str()];
        let _ = m.consumer_lag.remove_label_values(&lag);
    }

    fn report_task_gauges(&self) {
        let now = now_micros();
        for ((stage, p), task) in &self.tasks {
            let partition = p.to_string();
            let labels = [self.topic_of(*stage), partition.as_str()];
            let m = &self.metrics;
            m.open_windows
                .with_label_values(&labels)
                .set(task.open_windows() as i64);
            if let Ok(bytes) = task.store.size_bytes() {
                m.state_bytes.with_label_values(&labels).set(bytes as i64);
            }
            let stream_time = task.stream_time();
            if stream_time == i64::MIN {
                continue;
            }
            let lag = now.saturating_sub(stream_time) as f64 / 1e6;
            m.event_time_lag_seconds.with_label_values(&labels).set(lag);
        }
    }

    /// Positions to report to the consumer group: for monitoring only (the stores are the
    /// truth), or committed in the transaction under `exactly_once_v2`.
    /// (topic, partition, next offset) of each task that has processed something.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        let mut positions = Vec::with_capacity(self.tasks.len());
        for ((stage, p), t) in &self.tasks {
            if let Some(n) = t.next_offset {
                positions.push((self.topic_of(*stage).to_string(), *p, n));
            }
        }
        positions
    }

    /// Where the task of `topic`-`partition` goes on reading (0 for a new task), if it is
    /// assigned.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let task = self.tasks.get(&(self.stage_of(topic), partition))?;
        Some(task.next_offset.unwrap_or(0))
    }

    /// Processes one record of an assigned partition. Records before the task's position
    /// are already reflected in its state and are skipped.
    pub fn process(&mut self, m: &SourceRecord<'_>) -> Result<(), RuntimeError> {
        let (p, offset) = (m.partition, m.offset);
        self.stats.records += 1;
        let stage = self.stage_of(m.topic);
        let Some(task) = self.tasks.get(&(stage, p)) else {
            return Err(RuntimeError::Consumer(format!(
                "record for unassigned partition {}-{p}",
                m.topic
            )));
        };
        task.records.inc();
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
    pub(super) fn send_output(
        &mut self,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), RuntimeError> {
        if let (Some(task), Some(replays)) = (self.current, self.replays.as_mut())
            && !replays.written.is_empty()
            && replays.replaying.contains_key(&task)
            && replays
                .written
                .take(identity::fingerprint(topic, key, value))
        {
            self.stats.suppressed += 1;
            self.metrics.replayed_outputs.inc();
            if replays.written.is_empty() {
                replays.replaying.clear();
            }
            return Ok(());
        }
        Ok(self.cluster.outputs().send(topic, None, key, Some(value))?)
    }

    /// Appends a watermark to every input partition that has been quiet for the source's
    /// `idle_watermark`, at its stream time plus the quiet time. The record comes back through
    /// the consumer like any other, so what it closes is part of the replayable log.
    pub fn idle_watermarks(&mut self) -> Result<(), RuntimeError> {
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
            let (topic, value) = (&self.plan.input_topic, watermark_value(t));
            let outputs = self.cluster.outputs();
            outputs.send(topic, Some(*p), WATERMARK_KEY, Some(&value))?;
            task.last_record = Instant::now();
            self.stats.idle_watermarks += 1;
            tracing::debug!(partition = p, watermark = t, "appended an idle watermark");
        }
        Ok(())
    }
}

/// The writer id of the state directory `dir`: made up on first use and kept in
/// `dir/writer-id`, so that a restarted instance recognises its own seals (and does not wait
/// for itself), while a new host, or a wiped directory, is a new writer.
pub(super) fn writer_id(dir: &Path) -> Result<String, RuntimeError> {
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
