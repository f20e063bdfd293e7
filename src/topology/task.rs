//! One task per assigned partition: what it keeps between records and how it commits.

use std::path::Path;
use std::time::Instant;

use crate::config::topology::WindowSpec;
use crate::operators::WindowOperator;
use crate::state::{SourceMark, WindowStore};

use super::runtime::RuntimeError;

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
}

impl Task {
    /// Opens the task's store in `dir` and restores its last commit. `source_partitions` is
    /// the number of source partitions feeding a repartitioned window stage.
    pub fn open(
        dir: &Path,
        stage: Stage,
        window: &WindowSpec,
        source_partitions: usize,
    ) -> Result<Self, RuntimeError> {
        let store = WindowStore::open(dir)?;
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
        })
    }

    /// Writes the task's changes with its position in one synced batch.
    pub fn commit(&mut self) -> Result<(), RuntimeError> {
        let Some(next) = self.next_offset else {
            return Ok(());
        };
        match &mut self.work {
            Work::Forward { stream_time, .. } => self.store.commit(&[], next, *stream_time, &[])?,
            Work::Window { op, sources } => {
                let marks: Vec<(i32, SourceMark)> = sources
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(p, m)| (p as i32, *m))
                    .collect();
                self.store
                    .commit(&op.take_changes(), next, op.stream_time(), &marks)?
            }
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
