//! One task per assigned partition: what it keeps between records and how it commits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::config::topology::WindowSpec;
use crate::metrics::Metrics;
use crate::operators::WindowOperator;
use crate::state::changelog::{self, ChangelogLog, SEALED_KEY, Seal};
use crate::state::{Entry, SourceMark, WindowStore, entries, outputs_entry};
use prometheus::IntCounter;

use super::edge::Producer;
use super::engine::RuntimeError;

/// Which stage of the plan reads a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Source records that are filtered and re-keyed into the repartition topic.
    Forward,
    /// Records that are windowed into bars: the source topic, or the repartition topic when
    /// `repartitioned`.
    Window { repartitioned: bool },
}

/// What a task does with its records.
pub enum Work {
    /// Forwards re-keyed ticks; tracks its partition's stream time and the last one it
    /// broadcast to every repartition partition.
    Forward { stream_time: i64, broadcast: i64 },
    /// Windows ticks. Reading a repartition topic, it keeps one mark per source partition.
    Window {
        op: Box<WindowOperator>,
        sources: Option<Vec<SourceMark>>,
    },
}

/// One assigned partition's work and state store.
pub struct Task {
    /// The RocksDB store of the task's operator.
    pub store: WindowStore,
    /// Next offset to process; `None` before the first record of a new store.
    pub next_offset: Option<i64>,
    /// What the task does.
    pub work: Work,
    /// When the task last read a record (or opened): for idle watermarks.
    pub last_record: Instant,
    /// Where the store's changes are mirrored.
    pub changelog: Box<dyn ChangelogLog>,
    /// Keys an interrupted commit left in the changelog, to write again with their committed
    /// values in the next commit.
    repair: Vec<Vec<u8>>,
    /// Entries of the commit in progress, between the changelog write and the local write.
    committing: Option<Vec<Entry>>,
    /// The end of the changelog partition after this task's last seal (or its restore):
    /// where its next commit begins, unless another writer wrote meanwhile. `None` under
    /// transactions, where the producer is fenced instead.
    expected_end: Option<i64>,
    /// This instance's writer id, written into every seal.
    writer: Arc<str>,
    /// Output positions stored with the last commit (encoded, see `identity`).
    pub stored_outputs: Option<Vec<u8>>,
    /// Counts the task's input records (`tickflow_records_total` of its topic and partition).
    pub records: IntCounter,
}

/// Who opens tasks, and until when a task waits for its partition's previous owner.
#[derive(Debug, Clone)]
pub struct Handover {
    /// This instance's writer id.
    pub writer: Arc<str>,
    /// When to stop waiting for a previous owner's release.
    pub deadline: Instant,
    /// Changelogs are written in transactions (`exactly_once_v2`): fencing a previous owner
    /// replaces waiting for its release.
    pub fenced: bool,
    /// Set when the process is stopping: waiting and restoring give up.
    pub stop: Arc<AtomicBool>,
}

impl Task {
    /// Opens the task's store in `dir`, waits for the previous owner's release (see
    /// [`changelog::await_handover`]), brings the store up to date from its changelog,
    /// and restores its last commit. `input` is the task's input topic and its stage;
    /// `source_partitions` is the number of source partitions feeding a repartitioned window
    /// stage.
    pub fn open(
        dir: &Path,
        (input, stage): (&str, Stage),
        window: &WindowSpec,
        source_partitions: usize,
        changelog: Box<dyn ChangelogLog>,
        handover: &Handover,
        metrics: &Metrics,
    ) -> Result<Self, RuntimeError> {
        let store = WindowStore::open(dir)?;
        let (topic, partition) = (changelog.topic().to_string(), changelog.partition());
        if !handover.fenced {
            let (writer, deadline) = (&handover.writer, handover.deadline);
            let waited = changelog::await_handover(&*changelog, writer, deadline, &handover.stop)?;
            if !waited.is_zero() {
                tracing::info!(
                    topic,
                    partition,
                    ?waited,
                    "waited for the previous owner's release"
                );
            }
        }
        let started = Instant::now();
        let mut counted = 0;
        let (writer, stop) = (&handover.writer, &handover.stop);
        let restored =
            changelog::restore_until(&*changelog, &store, writer, stop, |read, left| {
                metrics.restore_records.inc_by(read - counted);
                metrics.restore_remaining.set(left as i64);
                counted = read;
                tracing::info!(topic, partition, read, remaining = left, "restoring");
            })?;
        if restored.records > 0 {
            tracing::info!(topic, partition, records = restored.records, interrupted_keys = restored.repair.len(), took = ?started.elapsed(), "restored from changelog");
        }
        if restored.broken > 0 {
            tracing::warn!(
                topic,
                partition,
                commits = restored.broken,
                "commits with another writer's records inside were not restored (an instance kept writing after its partition moved); their keys are written again"
            );
        }
        let snap = store.load()?;
        let work = match stage {
            Stage::Forward => Work::Forward {
                stream_time: snap.stream_time,
                broadcast: i64::MIN,
            },
            Stage::Window { repartitioned } => {
                let mut op = WindowOperator::new(window)?;
                op.restore(snap.stream_time, snap.windows);
                let sources = repartitioned.then(|| {
                    let mut marks = vec![SourceMark::default(); source_partitions];
                    for (p, mark) in snap.sources {
                        if let Some(m) = marks.get_mut(p as usize) {
                            *m = mark;
                        }
                    }
                    marks
                });
                Work::Window {
                    op: Box::new(op),
                    sources,
                }
            }
        };
        Ok(Self {
            store,
            next_offset: snap.next_offset,
            work,
            last_record: Instant::now(),
            changelog,
            repair: restored.repair,
            committing: None,
            expected_end: (!handover.fenced).then_some(restored.end),
            writer: handover.writer.clone(),
            stored_outputs: snap.outputs,
            records: metrics.records_of(input, partition),
        })
    }

    /// First half of a commit: takes the changes since the last commit (preceded by the
    /// committed values of keys to repair) and writes them, sealed, to the changelog. With
    /// `release` the seal says this instance hands the partition over and writes no more;
    /// `claim` (when the task opens) writes a seal even if nothing changed, so that a previous
    /// owner still writing finds it. `outputs` (encoded output positions) are stored with the
    /// commit when they changed.
    pub fn write_changelog(
        &mut self,
        sink: &dyn Producer,
        release: bool,
        claim: bool,
        outputs: Option<&[u8]>,
    ) -> Result<(), RuntimeError> {
        let mut batch = self.repairs()?;
        // A task that has processed nothing stores only where its outputs will begin (so
        // that a crash before its first processed commit finds what it wrote), and a release.
        let next = match self.next_offset {
            Some(next) => {
                batch.extend(self.changes_of_commit(next));
                next
            }
            None => -1,
        };
        batch.extend(self.changed_outputs(outputs));
        if self.next_offset.is_none() && batch.is_empty() && !release && !claim {
            return Ok(());
        }
        let (topic, p) = (self.changelog.topic(), self.changelog.partition());
        for (k, v) in &batch {
            sink.send(topic, Some(p), k, v.as_deref())?;
        }
        let seal = Seal {
            next_offset: next,
            release,
            writer: self.writer.to_string(),
            at: self.seal_offset(&batch),
        };
        sink.send(topic, Some(p), SEALED_KEY, Some(&seal.encode()))?;
        self.committing = Some(batch);
        Ok(())
    }

    /// Where the seal of a commit of `batch` lands if no other writer writes meanwhile.
    fn seal_offset(&self, batch: &[Entry]) -> Option<i64> {
        self.expected_end.map(|end| end + batch.len() as i64)
    }

    /// Fails with [`RuntimeError::Fenced`] if the changelog partition ends after where this
    /// task's last seal left it: another instance wrote there, so the partition has moved on
    /// (or a zombie wrote after this task claimed it), and committing here could mix two
    /// writers' state. Checked before each commit is written. An end before it is a high
    /// watermark that has not caught up with an acknowledged write yet (Tansu answers so
    /// for a moment; Kafka acknowledges `acks=all` writes only below it): no other writer,
    /// and the check after the write (the seal's offset) stays exact.
    pub fn check_owner(&self) -> Result<(), RuntimeError> {
        let Some(expected) = self.expected_end else {
            return Ok(());
        };
        let found = self.changelog.end()?;
        if found > expected {
            return Err(self.fenced(expected, found));
        }
        Ok(())
    }

    fn fenced(&self, expected: i64, found: i64) -> RuntimeError {
        RuntimeError::Fenced {
            topic: self.changelog.topic().to_string(),
            partition: self.changelog.partition(),
            expected,
            found,
        }
    }

    /// The committed values of the keys to repair, first in the next commit.
    fn repairs(&mut self) -> Result<Vec<Entry>, RuntimeError> {
        let mut batch: Vec<Entry> = Vec::with_capacity(self.repair.len());
        for key in std::mem::take(&mut self.repair) {
            let value = self.store.get(&key)?;
            batch.push((key, value));
        }
        Ok(batch)
    }

    /// The entries of a commit at input offset `next`: the window changes, source marks,
    /// next offset and stream time.
    fn changes_of_commit(&mut self, next: i64) -> Vec<Entry> {
        match &mut self.work {
            Work::Forward { stream_time, .. } => entries(&[], next, *stream_time, &[]),
            Work::Window { op, sources } => {
                let marks: Vec<(i32, SourceMark)> = sources
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(p, m)| (p as i32, *m))
                    .collect();
                entries(&op.take_changes(), next, op.stream_time(), &marks)
            }
        }
    }

    /// The entry storing output positions `outputs`, if they differ from the stored ones.
    fn changed_outputs(&mut self, outputs: Option<&[u8]>) -> Option<Entry> {
        let encoded = outputs.filter(|o| self.stored_outputs.as_deref() != Some(*o))?;
        self.stored_outputs = Some(encoded.to_vec());
        Some(outputs_entry(encoded.to_vec()))
    }

    /// Second half, once the changelog is acknowledged: checks that the seal landed where
    /// expected (no other writer's record inside the commit, else [`RuntimeError::Fenced`]
    /// and nothing is written), then writes the same entries, and the changelog offset they
    /// are current to, in one synced local batch.
    pub fn write_local(&mut self, sink: &dyn Producer) -> Result<(), RuntimeError> {
        let Some(batch) = self.committing.take() else {
            return Ok(());
        };
        let (topic, p) = (self.changelog.topic(), self.changelog.partition());
        let sealed_at = sink.last_offset(topic, p).ok_or_else(|| {
            RuntimeError::Consumer(format!("no acknowledged offset for changelog {topic}-{p}"))
        })?;
        if let Some(at) = self.seal_offset(&batch)
            && sealed_at != at
        {
            return Err(self.fenced(at + 1, sealed_at + 1));
        }
        self.store.write(&batch, Some(sealed_at + 1))?;
        if let Some(end) = &mut self.expected_end {
            *end = sealed_at + 1;
        }
        Ok(())
    }

    /// The window operator of a window task.
    pub fn window_op(&mut self) -> &mut WindowOperator {
        match &mut self.work {
            Work::Window { op, .. } => op,
            Work::Forward { .. } => unreachable!("a forwarding task has no window operator"),
        }
    }

    /// Stream time of the partition the task reads.
    pub fn stream_time(&self) -> i64 {
        match &self.work {
            Work::Forward { stream_time, .. } => *stream_time,
            Work::Window { op, .. } => op.stream_time(),
        }
    }

    /// Open windows (0 for a forwarding task).
    pub fn open_windows(&self) -> usize {
        match &self.work {
            Work::Forward { .. } => 0,
            Work::Window { op, .. } => op.open_windows(),
        }
    }
}

/// The watermark of a repartitioned window stage: the slowest source partition's stream time.
pub fn watermark(marks: &[SourceMark]) -> i64 {
    marks
        .iter()
        .map(|m| m.stream_time)
        .min()
        .unwrap_or(i64::MIN)
}
