//! Operator state in RocksDB: one store per operator per task, holding the open windows and,
//! in the same atomic write, the input position and stream time they reflect. After a crash
//! the store is exactly as of the last commit, so the task resumes from the stored position
//! and never counts a tick twice or loses one.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::operators::{StoredWindow, WindowChange};

pub mod changelog;

const NEXT_OFFSET: &[u8] = b"m/next_offset";
const STREAM_TIME: &[u8] = b"m/stream_time";
const WINDOW_PREFIX: &[u8] = b"w/";
const SOURCE_PREFIX: &[u8] = b"m/src/";
/// Local only (never in the changelog): the changelog offset the store is current to.
const CHANGELOG_NEXT: &[u8] = b"l/changelog_next";
/// Output positions of the last commit (encoded by the topology; opaque here).
const OUTPUTS: &[u8] = b"m/outputs";

/// How far a task reading a repartition topic has got with one source partition: the last
/// source offset it counted and that partition's stream time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceMark {
    /// Last source offset counted; records at or below it are replays and are skipped.
    pub offset: i64,
    /// Stream time of the source partition.
    pub stream_time: i64,
}

impl Default for SourceMark {
    fn default() -> Self {
        Self {
            offset: -1,
            stream_time: i64::MIN,
        }
    }
}

/// Errors of the state store (local disk).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB failed.
    #[error("state store {path}: {source}")]
    Db {
        path: String,
        source: rocksdb::Error,
    },
    /// A changelog partition is not what restoring needs (a record without a key, a record
    /// that never arrives).
    #[error("changelog {topic}-{partition}: {message}")]
    Changelog {
        topic: String,
        partition: i32,
        message: String,
    },
    /// Kafka failed while reading a changelog partition (external).
    #[error("changelog {topic}-{partition}: {source}")]
    ChangelogRead {
        topic: String,
        partition: i32,
        source: crate::kafka::KafkaError,
    },
    /// The process is stopping (SIGTERM) while a task waited for its hand-over or restored.
    #[error("stopped while opening a task (waiting for its hand-over or restoring it)")]
    Interrupted,
    /// A stored entry is not what tickflow wrote.
    #[error("state store {path}: corrupt entry: {message}")]
    Corrupt { path: String, message: String },
}

impl crate::error::Classified for StateError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            StateError::ChangelogRead { source, .. } => source.class(),
            // The disk, RocksDB or the changelog topic.
            _ => crate::error::ErrorClass::External,
        }
    }
}

/// What a store held at its last commit.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Next input offset to process; `None` for a new store.
    pub next_offset: Option<i64>,
    /// Stream time at the commit.
    pub stream_time: i64,
    /// Open windows: (resolution index, key, start) and their aggregates.
    pub windows: Vec<((u16, String, i64), StoredWindow)>,
    /// Source partitions' marks (tasks that read a repartition topic only).
    pub sources: Vec<(i32, SourceMark)>,
    /// The output positions stored with the commit, as the topology encoded them.
    pub outputs: Option<Vec<u8>>,
}

/// A window store of one operator in one task.
pub struct WindowStore {
    db: DB,
    path: PathBuf,
}

impl WindowStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&opts, dir).map_err(|source| StateError::Db {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self {
            db,
            path: dir.to_path_buf(),
        })
    }

    fn err(&self, source: rocksdb::Error) -> StateError {
        StateError::Db {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn corrupt(&self, message: &str) -> StateError {
        StateError::Corrupt {
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }

    fn read_i64(&self, key: &[u8]) -> Result<Option<i64>, StateError> {
        match self.db.get(key).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => Ok(Some(i64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| self.corrupt("bad integer"))?,
            ))),
        }
    }

    /// Everything committed so far.
    pub fn load(&self) -> Result<Snapshot, StateError> {
        let mut snap = Snapshot {
            next_offset: self.read_i64(NEXT_OFFSET)?,
            stream_time: self.read_i64(STREAM_TIME)?.unwrap_or(i64::MIN),
            windows: Vec::new(),
            sources: self.load_sources()?,
            outputs: self.get(OUTPUTS)?,
        };
        let iter = self
            .db
            .iterator(IteratorMode::From(WINDOW_PREFIX, Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(WINDOW_PREFIX) {
                break;
            }
            let id = decode_key(&k[WINDOW_PREFIX.len()..])
                .ok_or_else(|| self.corrupt("bad window key"))?;
            let acc =
                StoredWindow::from_bytes(&v).ok_or_else(|| self.corrupt("bad window value"))?;
            snap.windows.push((id, acc));
        }
        Ok(snap)
    }

    fn load_sources(&self) -> Result<Vec<(i32, SourceMark)>, StateError> {
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator(IteratorMode::From(SOURCE_PREFIX, Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Some(p) = k.strip_prefix(SOURCE_PREFIX) else {
                break;
            };
            let bad = || self.corrupt("bad source mark");
            let p = i32::from_be_bytes(p.try_into().map_err(|_| bad())?);
            let v: &[u8; 16] = v.as_ref().try_into().map_err(|_| bad())?;
            let offset = i64::from_be_bytes(v[..8].try_into().map_err(|_| bad())?);
            let stream_time = i64::from_be_bytes(v[8..].try_into().map_err(|_| bad())?);
            out.push((
                p,
                SourceMark {
                    offset,
                    stream_time,
                },
            ));
        }
        Ok(out)
    }

    /// Writes `changes`, the next input offset, the stream time and the source marks in one
    /// synced batch.
    pub fn commit(
        &self,
        changes: &[WindowChange],
        next_offset: i64,
        stream_time: i64,
        sources: &[(i32, SourceMark)],
    ) -> Result<(), StateError> {
        self.write(&entries(changes, next_offset, stream_time, sources), None)
    }

    /// Writes `entries` in one synced batch, with the changelog offset they are current to.
    pub fn write(&self, entries: &[Entry], changelog_next: Option<i64>) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for (k, v) in entries {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        if let Some(n) = changelog_next {
            batch.put(CHANGELOG_NEXT, n.to_be_bytes());
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| self.err(e))
    }

    /// The changelog offset the store is current to (after the last sealed commit it holds);
    /// `None` if it never saw a changelog.
    pub fn changelog_next(&self) -> Result<Option<i64>, StateError> {
        self.read_i64(CHANGELOG_NEXT)
    }

    /// Bytes the store takes: its SST files on disk and its memtables.
    pub fn size_bytes(&self) -> Result<u64, StateError> {
        let mut total = 0;
        for property in [
            "rocksdb.total-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ] {
            let value = self.db.property_int_value(property);
            total += value.map_err(|e| self.err(e))?.unwrap_or(0);
        }
        Ok(total)
    }

    /// The stored value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(key).map_err(|e| self.err(e))
    }

    /// Deletes every entry (before rebuilding the store from its changelog).
    pub fn clear(&self) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for item in self.db.iterator(IteratorMode::Start) {
            let (k, _) = item.map_err(|e| self.err(e))?;
            batch.delete(k);
        }
        self.db.write(batch).map_err(|e| self.err(e))
    }
}

/// One store entry as written locally and to the changelog: key, and value (`None` deletes).
pub type Entry = (Vec<u8>, Option<Vec<u8>>);

/// The entry that stores a commit's output positions (`encoded` by the topology).
pub fn outputs_entry(encoded: Vec<u8>) -> Entry {
    (OUTPUTS.to_vec(), Some(encoded))
}

/// The entry that stores the next input offset a task resumes at.
pub fn next_offset_entry(next_offset: i64) -> Entry {
    (
        NEXT_OFFSET.to_vec(),
        Some(next_offset.to_be_bytes().to_vec()),
    )
}

/// The entries of one commit: window changes, source marks, the next input offset and the
/// stream time.
pub fn entries(
    changes: &[WindowChange],
    next_offset: i64,
    stream_time: i64,
    sources: &[(i32, SourceMark)],
) -> Vec<Entry> {
    let mut out = Vec::with_capacity(changes.len() + sources.len() + 2);
    for (p, mark) in sources {
        let mut k = SOURCE_PREFIX.to_vec();
        k.extend_from_slice(&p.to_be_bytes());
        let mut v = mark.offset.to_be_bytes().to_vec();
        v.extend_from_slice(&mark.stream_time.to_be_bytes());
        out.push((k, Some(v)));
    }
    for ((res, key, start), stored) in changes {
        let k = encode_key(*res, key, *start);
        out.push((k, stored.map(|s| s.to_bytes().to_vec())));
    }
    out.push(next_offset_entry(next_offset));
    out.push((
        STREAM_TIME.to_vec(),
        Some(stream_time.to_be_bytes().to_vec()),
    ));
    out
}

/// `w/` + resolution (2 bytes) + start (8 bytes, sign bit flipped so keys sort by time) + key.
fn encode_key(res: u16, key: &str, start: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(WINDOW_PREFIX.len() + 10 + key.len());
    k.extend_from_slice(WINDOW_PREFIX);
    k.extend_from_slice(&res.to_be_bytes());
    k.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn decode_key(k: &[u8]) -> Option<(u16, String, i64)> {
    if k.len() < 10 {
        return None;
    }
    let res = u16::from_be_bytes(k[..2].try_into().ok()?);
    let start = (u64::from_be_bytes(k[2..10].try_into().ok()?) ^ (1 << 63)) as i64;
    let key = String::from_utf8(k[10..].to_vec()).ok()?;
    Some((res, key, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Tick;
    use crate::operators::Accumulator;

    proptest::proptest! {
        /// Window keys round-trip, and sort by resolution, then window start (negative starts
        /// first), which is the order closing walks them in.
        #[test]
        fn window_keys_round_trip_and_sort_by_start(res: u16, key: String, a: i64, b: i64) {
            let (ka, kb) = (encode_key(res, &key, a), encode_key(res, &key, b));
            let back = decode_key(&ka[WINDOW_PREFIX.len()..]);
            proptest::prop_assert_eq!(back, Some((res, key.clone(), a)));
            proptest::prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        /// Any bytes read from a store or a changelog decode or are refused, never a panic.
        #[test]
        fn any_key_bytes_decode_without_panic(bytes: Vec<u8>) {
            let _ = decode_key(&bytes);
        }
    }

    #[test]
    fn commit_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let tick = Tick {
            symbol: "A".into(),
            venue: "X".into(),
            price: 1.5,
            size: 10,
            event_time: -5,
            trade_id: 1,
            side: "B".into(),
            conditions: vec![],
            currency: "USD".into(),
        };
        let acc = StoredWindow {
            acc: Accumulator::new(&tick, 3),
            last_update: -7,
        };
        {
            let store = WindowStore::open(dir.path()).unwrap();
            assert_eq!(
                store.load().unwrap(),
                Snapshot {
                    stream_time: i64::MIN,
                    ..Default::default()
                }
            );
            let changes = vec![
                ((0, "A".to_string(), -60), Some(acc)),
                ((1, "B".to_string(), 7), Some(acc)),
            ];
            let mark = SourceMark {
                offset: 41,
                stream_time: 98,
            };
            store.commit(&changes, 4, 99, &[(3, mark)]).unwrap();
            store
                .commit(&[((1, "B".to_string(), 7), None)], 5, 100, &[])
                .unwrap();
        }
        let store = WindowStore::open(dir.path()).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.next_offset, Some(5));
        assert_eq!(snap.stream_time, 100);
        assert_eq!(snap.windows, vec![((0, "A".to_string(), -60), acc)]);
        assert_eq!(
            snap.sources,
            vec![(
                3,
                SourceMark {
                    offset: 41,
                    stream_time: 98
                }
            )]
        );
    }
}
