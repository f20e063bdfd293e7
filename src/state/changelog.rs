//! Changelog topics: every commit of a store is mirrored to a compacted Kafka topic
//! (`<application>-<store>-changelog`, one partition per task), so that a task whose local
//! RocksDB directory is gone rebuilds exactly its last committed state.
//!
//! A commit writes its entries to the task's changelog partition and then a seal record
//! ([`SEALED_KEY`]). Only entries before the last seal are restored; entries after it belong
//! to a commit that a crash interrupted. Their keys are written again, with the committed
//! values, in the task's next commit ("repair"), so that compaction, which keeps the newest
//! record per key, never keeps an interrupted commit's value. The local store remembers the
//! changelog offset it is current to; a restart whose local store is current reads nothing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{Entry, StateError, WindowStore};
use crate::config::KafkaConfig;
use crate::kafka::{AuthContext, ConsumerSettings};

/// Key of the record that seals a commit in a changelog partition.
pub const SEALED_KEY: &[u8] = b"m/sealed";

/// The value of a seal record: the input position of the commit, whether it is the writer's
/// last commit before handing the partition over, who wrote it, and where the writer
/// expected it to land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// Next input offset of the task at the commit (-1 before its first record).
    pub next_offset: i64,
    /// The writer revoked the partition after this commit and will write no more.
    pub release: bool,
    /// Identity of the writing instance (its state directory's writer id).
    pub writer: String,
    /// The offset the writer expected this seal at: the end of the partition after its
    /// previous seal (or after its restore) plus the records of this commit. A seal found
    /// elsewhere has another writer's records inside its commit, and the commit counts for
    /// nothing (see [`restore`]). `None` under transactions, whose markers take offsets.
    pub at: Option<i64>,
}

/// Flag bits of a seal's fifth field.
const RELEASE: u8 = 1;
const HAS_AT: u8 = 4;

impl Seal {
    /// `[next offset: 8 bytes big-endian][flags: 1 byte][at: 8 bytes big-endian, if flagged]
    /// [writer: UTF-8]`; flags: 1 release, 4 `at` present.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17 + self.writer.len());
        v.extend_from_slice(&self.next_offset.to_be_bytes());
        let flags =
            if self.release { RELEASE } else { 0 } | if self.at.is_some() { HAS_AT } else { 0 };
        v.push(flags);
        if let Some(at) = self.at {
            v.extend_from_slice(&at.to_be_bytes());
        }
        v.extend_from_slice(self.writer.as_bytes());
        v
    }

    /// Reads a seal value; seals of earlier versions (the offset alone) have no writer and no
    /// release, and those before `at` have no expected offset.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let next_offset = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let flags = bytes.get(8).copied().unwrap_or(0);
        let (at, writer_from) = if flags & HAS_AT != 0 {
            (
                Some(i64::from_be_bytes(bytes.get(9..17)?.try_into().ok()?)),
                17,
            )
        } else {
            (None, 9)
        };
        Some(Self {
            next_offset,
            release: flags & RELEASE != 0,
            writer: String::from_utf8_lossy(bytes.get(writer_from..).unwrap_or_default())
                .into_owned(),
            at,
        })
    }

    /// Whether this seal, read at `offset`, closes a commit of its writer's records alone.
    pub fn intact_at(&self, offset: i64) -> bool {
        self.at.is_none_or(|at| at == offset)
    }
}

/// The writer a reset's seal names (`tickflow reset`).
pub const RESET_WRITER: &str = "tickflow-reset";

/// A commit that empties a changelog partition, as `tickflow reset` writes it: a tombstone
/// for every key the partition holds, the input offset its task resumes at (when not its
/// input's beginning), and a seal that releases the partition.
///
/// Appended to the changelog instead of deleting the topic, it works on any broker, and
/// every host's store sees it: a local store behind it finds another writer's commit and is
/// rebuilt from the changelog (see [`restore`]), where every key is now deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetCommit {
    /// Tombstones, and the resume offset's entry.
    pub entries: Vec<Entry>,
    /// The seal, after the entries.
    pub seal: Seal,
}

/// The commit that resets `log`: its task resumes at `resume` (`None`: the input's
/// beginning). Under transactions its seal names no offset.
pub fn reset_commit(
    log: &dyn ChangelogLog,
    resume: Option<i64>,
    transactional: bool,
) -> Result<ResetCommit, StateError> {
    let end = log.end()?;
    let mut live = std::collections::BTreeMap::new();
    log.read(0, end, &mut |_, key, value| {
        if let Some(key) = key.filter(|k| *k != SEALED_KEY) {
            live.insert(key.to_vec(), value.is_some());
        }
        Ok(true)
    })?;
    let mut entries: Vec<Entry> = live
        .into_iter()
        .filter(|(_, held)| *held)
        .map(|(key, _)| (key, None))
        .collect();
    if let Some(next) = resume {
        let resume_entry = super::next_offset_entry(next);
        entries.retain(|(key, _)| *key != resume_entry.0);
        entries.push(resume_entry);
    }
    let seal = Seal {
        next_offset: resume.unwrap_or(-1),
        release: true,
        writer: RESET_WRITER.into(),
        at: (!transactional).then_some(end + entries.len() as i64),
    };
    Ok(ResetCommit { entries, seal })
}

/// The changelog topic of store `store` of `application`, named like Kafka Streams'.
pub fn changelog_topic(application: &str, store: &str) -> String {
    format!("{application}-{store}-changelog")
}

/// What bringing a store up to date from its changelog did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Restored {
    /// Changelog records read.
    pub records: u64,
    /// Keys of entries after the last seal (an interrupted commit) and of commits whose seal
    /// was not where its writer expected it (another writer's records inside), to write again
    /// with their committed values in the next commit.
    pub repair: Vec<Vec<u8>>,
    /// Commits not applied because another writer's records were inside them.
    pub broken: u64,
    /// The partition's end when the restore began: where the task's next writes will start,
    /// unless another writer is still writing.
    pub end: i64,
}

/// Read access to one changelog partition, all that restoring a store and handing a
/// partition over need: Kafka's ([`ChangelogPartition`]), or an in-memory log in tests.
pub trait ChangelogLog: Send {
    /// The changelog topic.
    fn topic(&self) -> &str;
    /// The task's partition.
    fn partition(&self) -> i32;
    /// The offset after the partition's last record (its high watermark).
    fn end(&self) -> Result<i64, StateError>;
    /// Hands the records from `start` up to `end` to `each` (offset, key, value), in offset
    /// order, until `each` returns false. Records that are never delivered (transaction
    /// markers, aborted records) may end the read before `end`.
    fn read(&self, start: i64, end: i64, each: &mut ReadEach<'_>) -> Result<(), StateError>;
}

/// What [`ChangelogLog::read`] calls with each record: (offset, key, value); false stops.
pub type ReadEach<'a> =
    dyn FnMut(i64, Option<&[u8]>, Option<&[u8]>) -> Result<bool, StateError> + 'a;

fn changelog_err(log: &dyn ChangelogLog, message: impl std::fmt::Display) -> StateError {
    StateError::Changelog {
        topic: log.topic().to_string(),
        partition: log.partition(),
        message: message.to_string(),
    }
}

/// Waits until the partition's last record is a seal that releases it or that `writer`
/// (this instance) wrote, or until `deadline`. Returns how long it waited (zero if the
/// partition was released already).
///
/// A broker that implements the rebalance protocol assigns a partition only after its
/// previous owner revoked it, and that owner's final commit ends with a release, so the
/// wait is nil. It is not nil after the previous owner crashed (it can write no more, and
/// the deadline passes), or on a broker that completes a rebalance without waiting for
/// every member (Tansu 0.6), where the previous owner may still be committing.
/// Fails with [`StateError::Interrupted`] once `stop` is set.
pub fn await_handover(
    log: &dyn ChangelogLog,
    writer: &str,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Duration, StateError> {
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(StateError::Interrupted);
        }
        match last_record(log)? {
            None => return Ok(waited),
            Some(Some(seal)) if seal.release || seal.writer == writer => return Ok(waited),
            last => {
                if Instant::now() >= deadline {
                    let previous = last.flatten().map(|s| s.writer).unwrap_or_default();
                    tracing::warn!(
                        topic = log.topic(),
                        partition = log.partition(),
                        previous,
                        "the previous owner did not release the partition in time; assuming it is gone"
                    );
                    return Ok(waited);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        waited = started.elapsed();
    }
}

/// The partition's last record: `None` if it is empty, `Some(None)` if it is not a seal.
fn last_record(log: &dyn ChangelogLog) -> Result<Option<Option<Seal>>, StateError> {
    let end = log.end()?;
    if end == 0 {
        return Ok(None);
    }
    let mut last = None;
    log.read(end - 1, end, &mut |_, key, value| {
        let seal = (key == Some(SEALED_KEY))
            .then(|| value.and_then(Seal::decode))
            .flatten();
        last = Some(seal);
        Ok(false)
    })?;
    match last {
        Some(seal) => Ok(Some(seal)),
        None => Err(changelog_err(
            log,
            format!("no record at offset {}", end - 1),
        )),
    }
}

/// What a task's last commit says, read from the end of its changelog partition.
#[derive(Debug, Clone, PartialEq)]
pub struct LastCommit {
    /// The commit's seal: the input offset the task resumes at, whether it released the
    /// partition, and the writer (state directory) that made it.
    pub seal: Seal,
    /// The task's stream time at that commit (UTC microseconds), if one was recorded.
    pub stream_time: Option<i64>,
}

/// The partition's last sealed commit, if it has one (for `tickflow status`). Reads back
/// from the end, a wider span each time, until a seal after a stream time is found.
pub fn last_commit(log: &dyn ChangelogLog) -> Result<Option<LastCommit>, StateError> {
    let end = log.end()?;
    let mut span = 64;
    loop {
        let start = (end - span).max(0);
        let mut time = None;
        let mut found = None;
        log.read(start, end, &mut |_, key, value| {
            if key == Some(SEALED_KEY) {
                if let Some(seal) = value.and_then(Seal::decode) {
                    found = Some(LastCommit {
                        seal,
                        stream_time: time,
                    });
                }
            } else if key == Some(super::STREAM_TIME) {
                time = value.and_then(|v| Some(i64::from_be_bytes(v.try_into().ok()?)));
            }
            Ok(true)
        })?;
        let complete = found.as_ref().is_some_and(|c| c.stream_time.is_some());
        if complete || start == 0 {
            return Ok(found);
        }
        span = span.saturating_mul(8);
    }
}

/// Brings `store` up to date: reads the partition from where the store is current (from
/// the start, after clearing the store, if it never saw the changelog) to its end, applies
/// every sealed commit, and reports the keys of an interrupted one. A store behind commits
/// of a writer other than `writer` (this instance) is rebuilt from the start instead.
/// `progress` is called with (records read, records remaining) as the restore goes.
pub fn restore(
    log: &dyn ChangelogLog,
    store: &WindowStore,
    writer: &str,
    progress: impl FnMut(u64, u64),
) -> Result<Restored, StateError> {
    restore_until(log, store, writer, &AtomicBool::new(false), progress)
}

/// [`restore`], failing with [`StateError::Interrupted`] once `stop` is set (the process is
/// stopping). What it applied so far stays: each sealed commit is written to the store with
/// the changelog offset it is current to, so the next restore goes on from there.
pub fn restore_until(
    log: &dyn ChangelogLog,
    store: &WindowStore,
    writer: &str,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64, u64),
) -> Result<Restored, StateError> {
    let local = store.changelog_next()?;
    let end = match local {
        Some(next) => end_reaching(log, next)?,
        None => log.end()?,
    };
    let start = match local {
        Some(next) if next >= end => {
            if next > end {
                tracing::warn!(
                    topic = log.topic(),
                    partition = log.partition(),
                    next,
                    end,
                    "local state is ahead of its changelog (was the topic recreated?); keeping the local state"
                );
            }
            return Ok(Restored {
                end,
                ..Restored::default()
            });
        }
        Some(next) => next,
        None => {
            store.clear()?;
            0
        }
    };
    // A local store that is behind only catches up on this instance's own commits (a
    // crash between the changelog and the local write). Commits of another writer mean the
    // task lived elsewhere meanwhile, and compaction may have dropped the tombstones of
    // windows that closed there: catching up could resurrect them, so rebuild instead.
    let own = (start > 0).then_some(writer);
    let bounds = (start, end, stop);
    if let Some(restored) = replay(log, store, bounds, own, &mut progress)? {
        return Ok(restored);
    }
    tracing::info!(
        topic = log.topic(),
        partition = log.partition(),
        "the local store is older than another instance's commits; rebuilding it from the changelog"
    );
    store.clear()?;
    let rebuilt = replay(log, store, (0, end, stop), None, &mut progress)?;
    Ok(rebuilt.expect("a replay that accepts every writer finishes"))
}

/// The partition's end, waiting up to 2 s for it to reach `next` (where the local store's
/// last acknowledged commit ended): a high watermark can lag an acknowledged write for a
/// moment on some brokers (Tansu), and the task's next seal is placed after the end. One
/// still below after that is a recreated topic, and its end is taken as it is.
fn end_reaching(log: &dyn ChangelogLog, next: i64) -> Result<i64, StateError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let end = log.end()?;
        if end >= next || Instant::now() >= deadline {
            return Ok(end);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Applies records `start..end`, sealed commit by sealed commit, until `stop` is set. With
/// `only_writer`, stops at the first seal of another writer and returns `None`.
///
/// A commit whose seal is not at the offset its writer expected has records of another
/// writer inside it (a zombie: an instance that kept writing after its partition moved, or
/// the new owner that claimed it meanwhile). Nothing of it is applied, and its keys are
/// repaired like an interrupted commit's. From the first such commit on, the store's
/// changelog offset stays before it, so that a restore interrupted before the repair was
/// written finds it again.
fn replay(
    log: &dyn ChangelogLog,
    store: &WindowStore,
    (start, end, stop): (i64, i64, &AtomicBool),
    only_writer: Option<&str>,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Option<Restored>, StateError> {
    let (mut pending, mut restored): (Vec<Entry>, Restored) = (Vec::new(), Restored::default());
    let mut broken_keys: Vec<Vec<u8>> = Vec::new();
    let mut other_writer = false;
    log.read(start, end, &mut |offset, key, value| {
        if stop.load(Ordering::Relaxed) {
            return Err(StateError::Interrupted);
        }
        restored.records += 1;
        let key =
            key.ok_or_else(|| changelog_err(log, format!("record at {offset} has no key")))?;
        if key == SEALED_KEY {
            let seal = value.and_then(Seal::decode);
            if let (Some(own), Some(seal)) = (only_writer, &seal)
                && seal.writer != own
            {
                other_writer = true;
                return Ok(false);
            }
            if seal.as_ref().is_some_and(|s| !s.intact_at(offset)) {
                restored.broken += 1;
                broken_keys.extend(pending.drain(..).map(|(k, _)| k));
            } else {
                let current_to = broken_keys.is_empty().then_some(offset + 1);
                store.write(&pending, current_to)?;
                pending.clear();
            }
        } else {
            pending.push((key.to_vec(), value.map(<[u8]>::to_vec)));
        }
        if restored.records % 10_000 == 0 {
            progress(restored.records, (end - offset - 1).max(0) as u64);
        }
        Ok(true)
    })?;
    if other_writer {
        return Ok(None);
    }
    if restored.records > 0 {
        progress(restored.records, 0);
    }
    broken_keys.extend(pending.into_iter().map(|(k, _)| k));
    broken_keys.sort();
    broken_keys.dedup();
    restored.repair = broken_keys;
    restored.end = end;
    Ok(Some(restored))
}

/// A task's changelog partition in Kafka. It reads through one consumer, created at its
/// first use (the hand-over wait asks for the partition's end every 200 ms).
#[derive(Debug, Clone)]
pub struct ChangelogPartition {
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// Changelog topic.
    pub topic: String,
    /// The task's partition.
    pub partition: i32,
    /// Written in Kafka transactions (`exactly_once_v2`): transaction markers take offsets
    /// and aborted records are never read, so a restore ends at the end of what is
    /// committed; and fencing replaces the wait for a previous owner's release.
    pub transactional: bool,
    reader: ReaderCache,
}

/// The consumer of a [`ChangelogPartition`], once created; a clone starts without one.
#[derive(Default)]
struct ReaderCache(OnceLock<BaseConsumer<AuthContext>>);

impl Clone for ReaderCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for ReaderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.get().is_some() {
            "open"
        } else {
            "none"
        };
        f.write_str(state)
    }
}

impl ChangelogPartition {
    /// Partition `partition` of the changelog `topic`, on the cluster of `kafka`.
    pub fn new(kafka: &KafkaConfig, topic: &str, partition: i32, transactional: bool) -> Self {
        Self {
            kafka: kafka.clone(),
            topic: topic.into(),
            partition,
            transactional,
            reader: ReaderCache::default(),
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> StateError {
        changelog_err(self, message)
    }

    fn kafka_err(&self, e: impl Into<crate::kafka::KafkaError>) -> StateError {
        StateError::ChangelogRead {
            topic: self.topic.clone(),
            partition: self.partition,
            source: e.into(),
        }
    }

    /// [`await_handover`] of this partition; nil under transactions, where fencing does
    /// the work.
    pub fn await_handover(
        &self,
        writer: &str,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> Result<Duration, StateError> {
        if self.transactional {
            return Ok(Duration::ZERO);
        }
        await_handover(self, writer, deadline, stop)
    }

    /// [`restore`] from this partition.
    pub fn restore(
        &self,
        store: &WindowStore,
        writer: &str,
        progress: impl FnMut(u64, u64),
    ) -> Result<Restored, StateError> {
        restore(self, store, writer, progress)
    }

    fn reader(&self) -> Result<&BaseConsumer<AuthContext>, StateError> {
        if let Some(consumer) = self.reader.0.get() {
            return Ok(consumer);
        }
        let consumer = self.new_reader()?;
        Ok(self.reader.0.get_or_init(|| consumer))
    }

    fn new_reader(&self) -> Result<BaseConsumer<AuthContext>, StateError> {
        ConsumerSettings::reader("tickflow-restore")
            .read_committed()
            .partition_eof(self.transactional)
            .create(&self.kafka)
            .map_err(|e| self.kafka_err(e))
    }
}

impl ChangelogLog for ChangelogPartition {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> i32 {
        self.partition
    }

    fn end(&self) -> Result<i64, StateError> {
        let consumer = self.reader()?;
        let (_, end) = consumer
            .fetch_watermarks(&self.topic, self.partition, Duration::from_secs(30))
            .map_err(|e| self.kafka_err(e))?;
        Ok(end)
    }

    fn read(&self, start: i64, end: i64, each: &mut ReadEach<'_>) -> Result<(), StateError> {
        if start >= end {
            return Ok(());
        }
        let consumer = self.reader()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(start))
            .map_err(|e| self.kafka_err(e))?;
        consumer.assign(&tpl).map_err(|e| self.kafka_err(e))?;
        let (mut next, mut last_seen) = (start, Instant::now());
        while next < end {
            if last_seen.elapsed() > Duration::from_secs(60) {
                return Err(self.err(format!("no record at offset {next} of {end} for 60 s")));
            }
            let m = match consumer.poll(Duration::from_millis(100)) {
                None => continue,
                // Past the last committed record, only transaction markers (or aborted
                // records) are left: they are never delivered.
                Some(Err(KafkaError::PartitionEOF(_))) if self.transactional => break,
                Some(m) => m.map_err(|e| self.kafka_err(e))?,
            };
            last_seen = Instant::now();
            if m.offset() < start {
                continue;
            }
            next = m.offset() + 1;
            if !each(m.offset(), m.key(), m.payload())? {
                break;
            }
        }
        // The next read assigns its own start; nothing of this one may be delivered to it.
        consumer.unassign().map_err(|e| self.kafka_err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_round_trip_and_old_seals_read_as_anonymous() {
        let seal = Seal {
            next_offset: 1234,
            release: true,
            writer: "host-a".into(),
            at: Some(99),
        };
        assert_eq!(Seal::decode(&seal.encode()), Some(seal));
        let old = Seal::decode(&77i64.to_be_bytes()).unwrap();
        assert_eq!(
            (old.next_offset, old.release, old.writer.as_str()),
            (77, false, "")
        );
        assert_eq!(Seal::decode(b"short"), None);
    }

    /// A changelog partition held in memory.
    struct Log(Vec<(Vec<u8>, Option<Vec<u8>>)>);

    impl ChangelogLog for Log {
        fn topic(&self) -> &str {
            "app-window-changelog"
        }
        fn partition(&self) -> i32 {
            0
        }
        fn end(&self) -> Result<i64, StateError> {
            Ok(self.0.len() as i64)
        }
        fn read(&self, start: i64, end: i64, each: &mut ReadEach<'_>) -> Result<(), StateError> {
            for offset in start..end {
                let (k, v) = &self.0[offset as usize];
                if !each(offset, Some(k), v.as_deref())? {
                    break;
                }
            }
            Ok(())
        }
    }

    fn commit(log: &mut Log, next: i64, time: i64, windows: usize, writer: &str) {
        for i in 0..windows {
            log.0
                .push((format!("w/{i}").into_bytes(), Some(vec![1; 8])));
        }
        log.0.extend(super::super::entries(&[], next, time, &[]));
        let seal = Seal {
            next_offset: next,
            release: false,
            writer: writer.into(),
            at: None,
        };
        log.0.push((SEALED_KEY.to_vec(), Some(seal.encode())));
    }

    #[test]
    fn the_last_commit_is_the_last_seal_with_its_stream_time() {
        let mut log = Log(Vec::new());
        assert_eq!(last_commit(&log).unwrap(), None);
        commit(&mut log, 10, 1_000, 3, "a");
        // A big commit: its stream time lies more than the first span before the end.
        commit(&mut log, 5_000, 2_000, 4_000, "b");
        // An interrupted commit after it counts for nothing.
        log.0.extend(super::super::entries(&[], 6_000, 3_000, &[]));
        let last = last_commit(&log).unwrap().unwrap();
        assert_eq!(
            (
                last.seal.next_offset,
                last.seal.writer.as_str(),
                last.stream_time
            ),
            (5_000, "b", Some(2_000))
        );
        // A seal makes the entries before it its commit's.
        let release = Seal {
            next_offset: 6_000,
            release: true,
            writer: "b".into(),
            at: None,
        };
        log.0.push((SEALED_KEY.to_vec(), Some(release.encode())));
        let last = last_commit(&log).unwrap().unwrap();
        assert_eq!(
            (last.seal, last.stream_time),
            (release.clone(), Some(3_000))
        );
        // A commit that records no stream time keeps the one before, however far back.
        for _ in 0..100 {
            log.0.push((b"m/outputs".to_vec(), Some(vec![0; 4])));
        }
        log.0.push((SEALED_KEY.to_vec(), Some(release.encode())));
        assert_eq!(last_commit(&log).unwrap().unwrap().stream_time, Some(3_000));
    }

    /// Appends a commit of `entries` by `writer`, sealed where the writer expects it:
    /// `expected_start` is where it believes its commit begins.
    fn commit_at(log: &mut Log, entries: &[(&str, &str)], writer: &str, expected_start: i64) {
        for (k, v) in entries {
            log.0
                .push((k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())));
        }
        let seal = Seal {
            next_offset: 1,
            release: false,
            writer: writer.into(),
            at: Some(expected_start + entries.len() as i64),
        };
        log.0.push((SEALED_KEY.to_vec(), Some(seal.encode())));
    }

    #[test]
    fn a_commit_with_another_writers_records_inside_is_not_restored_and_its_keys_are_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let store = WindowStore::open(dir.path()).unwrap();
        let mut log = Log(Vec::new());
        // A commits, B restores (end 3) and claims, then A, a zombie that checked the end
        // before B's claim landed, writes its commit where it expected the end to be.
        commit_at(&mut log, &[("w/1", "a1"), ("w/2", "a1")], "a", 0);
        commit_at(&mut log, &[("m/outputs", "b")], "b", 3);
        let zombie_start = log.0.len() as i64;
        commit_at(&mut log, &[("w/1", "stale"), ("w/3", "stale")], "a", 3);
        // B finds the zombie's records before its next commit, stops, restarts and claims again.
        let end = log.0.len() as i64;
        commit_at(&mut log, &[("w/2", "b2")], "b", end);
        let restored = restore(&log, &store, "b", |_, _| {}).unwrap();
        assert_eq!(restored.broken, 1);
        assert_eq!(restored.repair, vec![b"w/1".to_vec(), b"w/3".to_vec()]);
        assert_eq!(get_of(&store, b"w/1").as_deref(), Some("a1"));
        assert_eq!(get_of(&store, b"w/2").as_deref(), Some("b2"));
        assert_eq!(get_of(&store, b"w/3"), None);
        // Until the repair is written, the store is current only to before the broken commit,
        // so a restore interrupted now finds it again.
        assert_eq!(store.changelog_next().unwrap(), Some(zombie_start));
        let again = restore(&log, &store, "b", |_, _| {}).unwrap();
        assert_eq!((again.broken, again.repair.len()), (1, 2));

        // A commit whose writer's records are interleaved with another's is broken too, and
        // so is one pushed later by a record that came between the writer's check and its
        // records.
        let mut log = Log(Vec::new());
        commit_at(&mut log, &[("w/1", "a1")], "a", 0);
        log.0.push((b"w/9".to_vec(), Some(b"zombie".to_vec())));
        commit_at(&mut log, &[("w/1", "a2")], "a", 2);
        let other = tempfile::tempdir().unwrap();
        let store = WindowStore::open(other.path()).unwrap();
        let restored = restore(&log, &store, "c", |_, _| {}).unwrap();
        assert_eq!((restored.broken, restored.end), (1, 5));
        assert_eq!(restored.repair, vec![b"w/1".to_vec(), b"w/9".to_vec()]);
        assert_eq!(get_of(&store, b"w/1").as_deref(), Some("a1"));
    }

    /// A stopping process does not wait for a hand-over or finish a restore: both give up at
    /// once, and a restore goes on later from the last commit it applied.
    #[test]
    fn waiting_and_restoring_give_up_when_the_process_stops() {
        let mut log = Log(Vec::new());
        commit(&mut log, 10, 1_000, 3, "a");
        commit(&mut log, 20, 2_000, 3, "a");
        let stop = AtomicBool::new(true);
        let far = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        let waited = await_handover(&log, "b", far, &stop);
        assert!(matches!(waited, Err(StateError::Interrupted)), "{waited:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let dir = tempfile::tempdir().unwrap();
        let store = WindowStore::open(dir.path()).unwrap();
        let restored = restore_until(&log, &store, "b", &stop, |_, _| {});
        assert!(
            matches!(restored, Err(StateError::Interrupted)),
            "{restored:?}"
        );
        // Stopped after the first commit (its seal is at 5): the store is current to it, and
        // the next restore goes on from there.
        let stop = AtomicBool::new(false);
        let stopping = StopAt(&log, 6, &stop);
        let partial = restore_until(&stopping, &store, "b", &stop, |_, _| {});
        assert!(
            matches!(partial, Err(StateError::Interrupted)),
            "{partial:?}"
        );
        assert_eq!(store.changelog_next().unwrap(), Some(6));
        assert_eq!(next_of(&store), Some(10));
        restore(&log, &store, "b", |_, _| {}).unwrap();
        assert_eq!(next_of(&store), Some(20));
    }

    /// A log whose reader sets `stop` when it reaches an offset (a SIGTERM mid-restore).
    struct StopAt<'a>(&'a Log, i64, &'a AtomicBool);

    impl ChangelogLog for StopAt<'_> {
        fn topic(&self) -> &str {
            self.0.topic()
        }
        fn partition(&self) -> i32 {
            0
        }
        fn end(&self) -> Result<i64, StateError> {
            self.0.end()
        }
        fn read(&self, start: i64, end: i64, each: &mut ReadEach<'_>) -> Result<(), StateError> {
            self.0.read(start, end, &mut |offset, k, v| {
                if offset == self.1 {
                    self.2.store(true, Ordering::Relaxed);
                }
                each(offset, k, v)
            })
        }
    }

    /// The next input offset a store holds.
    fn next_of(store: &WindowStore) -> Option<i64> {
        let v = store.get(super::super::NEXT_OFFSET).unwrap()?;
        Some(i64::from_be_bytes(v.try_into().unwrap()))
    }

    fn holds_none(store: &WindowStore, keys: &[Vec<u8>]) -> bool {
        keys.iter().all(|k| store.get(k).unwrap().is_none())
    }

    fn append_reset(log: &mut Log, reset: ResetCommit) {
        log.0.extend(reset.entries);
        log.0.push((SEALED_KEY.to_vec(), Some(reset.seal.encode())));
    }

    #[test]
    fn a_reset_deletes_every_key_on_every_host_and_says_where_the_task_resumes() {
        let mut log = Log(Vec::new());
        commit(&mut log, 10, 1_000, 3, "a");
        log.0.push((b"w/1".to_vec(), None)); // a window that closed
        commit(&mut log, 20, 2_000, 0, "a");
        let a = tempfile::tempdir().unwrap();
        let store_a = WindowStore::open(a.path()).unwrap();
        restore(&log, &store_a, "a", |_, _| {}).unwrap();
        assert_eq!(next_of(&store_a), Some(20));

        let reset = reset_commit(&log, None, false).unwrap();
        let keys: Vec<&[u8]> = reset.entries.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(
            keys,
            [&b"m/next_offset"[..], b"m/stream_time", b"w/0", b"w/2"],
            "a tombstone for each key held, none for one deleted already"
        );
        assert!(reset.entries.iter().all(|(_, v)| v.is_none()));
        let keys_of_reset: Vec<Vec<u8>> = reset.entries.iter().map(|(k, _)| k.clone()).collect();
        let end = log.0.len() as i64;
        assert_eq!(reset.seal.at, Some(end + 4));
        assert!(reset.seal.release && reset.seal.writer == RESET_WRITER);
        assert_eq!(reset_commit(&log, None, true).unwrap().seal.at, None);
        append_reset(&mut log, reset);

        // The host whose store was current sees another writer's commit and rebuilds: empty.
        restore(&log, &store_a, "a", |_, _| {}).unwrap();
        assert!(holds_none(&store_a, &keys_of_reset));
        let b = tempfile::tempdir().unwrap();
        let store_b = WindowStore::open(b.path()).unwrap();
        restore(&log, &store_b, "b", |_, _| {}).unwrap();
        assert!(holds_none(&store_b, &keys_of_reset));
        assert_eq!(last_commit(&log).unwrap().unwrap().seal.next_offset, -1);

        // A task reading a repartition topic resumes at its end; a second reset deletes
        // nothing more.
        let again = reset_commit(&log, Some(500), false).unwrap();
        assert_eq!(again.entries, vec![super::super::next_offset_entry(500)]);
        append_reset(&mut log, again);
        restore(&log, &store_b, "b", |_, _| {}).unwrap();
        assert_eq!(next_of(&store_b), Some(500));
    }

    fn get_of(store: &WindowStore, key: &[u8]) -> Option<String> {
        store
            .get(key)
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    proptest::proptest! {
        #[test]
        fn any_seal_round_trips(next_offset: i64, release: bool, writer: String, at: Option<i64>) {
            let seal = Seal { next_offset, release, writer, at };
            proptest::prop_assert_eq!(Seal::decode(&seal.encode()), Some(seal));
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes: Vec<u8>) {
            let _ = Seal::decode(&bytes);
        }
    }
}
