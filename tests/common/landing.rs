//! The lake sink's crashes, in memory (issue 14): the lake writer lands a log the test driver
//! wrote, as the landing consumer would (partitions read round-robin, positions committed after
//! each flush), and dies where a test says: between records, right after a record opened a new
//! hour's partition, half-way through a flush, or after its files were written but before the
//! commit. Each restart is a new writer over the same lake, reading again from the committed
//! positions. No broker: the committed positions are a map, the records the driver's log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;
use tickflow::codec::{RecordKind, RegistryClient, WATERMARK_KEY};
use tickflow::config::AppConfig;
use tickflow::config::lake::{LakeSpec, LakeTopic};
use tickflow::kafka::record_of;
use tickflow::lake::decode_datum;
use tickflow::lake::layout::{partition_of, partition_path};
use tickflow::metrics::Metrics;
use tickflow::sink::lake::LakeWriter;
use tickflow::source::RawRecord;

/// How the lake sink dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LakeCrash {
    /// Between two records: its open files are lost.
    BetweenRecords,
    /// Right after the first record of a new lake partition (an hour boundary, mostly): a
    /// file with one record open in the new hour, the previous hour's file still open.
    AfterNewPartition,
    /// Half-way through a flush: the files of every other Kafka partition written and
    /// registered, nothing committed.
    MidFlush,
    /// After a flush wrote and registered every file, before the commit.
    BeforeCommit,
}

impl LakeCrash {
    /// Every kind.
    pub const ALL: [LakeCrash; 4] = [
        LakeCrash::BetweenRecords,
        LakeCrash::AfterNewPartition,
        LakeCrash::MidFlush,
        LakeCrash::BeforeCommit,
    ];
}

/// What the landing did.
#[derive(Debug, Default)]
pub struct Landing {
    /// Restarts of the writer.
    pub restarts: usize,
    /// Records the restarted writers found landed already and skipped.
    pub skipped: u64,
    /// `AfterNewPartition` crashes that came right after a Kafka partition's first record
    /// in a lake partition (rather than after a restarted writer's first file there).
    pub at_hour_boundaries: usize,
}

/// A record as the consumer hands it over.
struct Record {
    message: OwnedMessage,
    /// The lake partition directory it lands in (`None` for watermarks, which the lake
    /// leaves out).
    dir: Option<String>,
    /// The first record of its Kafka partition in this lake partition (an hour boundary).
    boundary: bool,
}

/// A Kafka partition's records in offset order.
type Queue = Vec<Record>;

/// The schema ids the test driver frames its records with, and a topic to register each under.
const DRIVER_SCHEMAS: [(u32, RecordKind, &str); 3] = [
    (1, RecordKind::Tick, "ticks"),
    (2, RecordKind::Bar, "bars"),
    (3, RecordKind::DeadLetter, "late"),
];

/// Registers the driver's schemas in the empty registry at `url`, in id order, so that the
/// driver's records decode there.
pub fn register_driver_schemas(runtime: &tokio::runtime::Runtime, url: &str) {
    let client = RegistryClient::new(url).unwrap();
    for (want, kind, topic) in DRIVER_SCHEMAS {
        let id = runtime
            .block_on(client.register_value(topic, kind))
            .unwrap();
        assert_eq!(id, want, "the driver's schema id of {kind:?}");
    }
}

/// Lands `records` into the lake of `spec` (registry at `registry_url`), reading `batch`
/// records of each partition in turn and committing every `commit_every` records handed to
/// the writer; at each `(records handed, crash)` of `crashes` the writer dies that way (an
/// `AfterNewPartition` crash at the next record that opens a file) and a new one resumes from
/// the committed positions. Crashes not reached when every record was handed over happen
/// then, before the last commit.
pub fn land_crashing(
    runtime: &tokio::runtime::Runtime,
    (spec, registry_url): (&LakeSpec, &str),
    records: &[RawRecord],
    (batch, commit_every): (usize, u64),
    crashes: &[(u64, LakeCrash)],
) -> Landing {
    let _entered = runtime.enter();
    let queues = queues(spec, records);
    let mut app = AppConfig::default();
    app.registry.url = registry_url.into();
    // The dead-letter producer is never used (every record lands) and needs no broker.
    app.kafka.bootstrap_servers = "127.0.0.1:9".into();
    let open = || {
        let writer = runtime.block_on(LakeWriter::open("landing", spec, &app, Metrics::new()));
        writer.unwrap()
    };
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut pending: Vec<(u64, LakeCrash)> = crashes.to_vec();
    pending.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut landing = Landing::default();
    let mut handed = 0u64;
    'run: loop {
        let mut writer = open();
        let mut cursors: Vec<usize> = Vec::new();
        for ((topic, p), queue) in &queues {
            let position = committed.get(&(topic.clone(), *p)).copied();
            writer.start_partition(topic, *p, position);
            let from = position.map_or(0, |o| queue.partition_point(|r| offset(&r.message) < o));
            cursors.push(from);
        }
        // The lake partitions this writer has opened a file in, per Kafka partition.
        let mut opened: BTreeSet<(usize, &str)> = BTreeSet::new();
        let mut since_commit = 0u64;
        loop {
            let mut progressed = false;
            for (i, queue) in queues.values().enumerate() {
                let end = (cursors[i] + batch).min(queue.len());
                while cursors[i] < end {
                    let r = &queue[cursors[i]];
                    writer.land(&record_of(&r.message)).unwrap();
                    cursors[i] += 1;
                    (handed, since_commit, progressed) = (handed + 1, since_commit + 1, true);
                    let new_file = r.dir.as_deref().is_some_and(|d| opened.insert((i, d)));
                    if let Some(kind) = due(&mut pending, handed, new_file) {
                        if kind == LakeCrash::AfterNewPartition && r.boundary {
                            landing.at_hour_boundaries += 1;
                        }
                        crash(&mut writer, kind, &queues, &mut landing);
                        continue 'run;
                    }
                    if since_commit >= commit_every {
                        commit(&mut writer, &mut committed);
                        since_commit = 0;
                    }
                }
            }
            if progressed {
                continue;
            }
            // Every record handed over: a crash still to come happens before the last commit.
            if let Some((_, kind)) = pending.pop() {
                crash(&mut writer, kind, &queues, &mut landing);
                continue 'run;
            }
            commit(&mut writer, &mut committed);
            landing.skipped += writer.stats().skipped;
            return landing;
        }
    }
}

/// The next crash if it is due after `handed` records: its point is reached and, for an
/// `AfterNewPartition` crash, the last record opened a new file.
fn due(pending: &mut Vec<(u64, LakeCrash)>, handed: u64, new_file: bool) -> Option<LakeCrash> {
    let &(at, kind) = pending.last()?;
    let ready = at <= handed && (kind != LakeCrash::AfterNewPartition || new_file);
    ready.then(|| pending.pop().expect("checked").1)
}

/// Kills `writer` the way `kind` says, and counts the restart that follows.
fn crash(
    writer: &mut LakeWriter,
    kind: LakeCrash,
    queues: &BTreeMap<(String, i32), Queue>,
    landing: &mut Landing,
) {
    landing.restarts += 1;
    match kind {
        LakeCrash::BetweenRecords | LakeCrash::AfterNewPartition => {}
        LakeCrash::BeforeCommit => {
            writer.flush(None).unwrap();
        }
        LakeCrash::MidFlush => {
            let half: Vec<(String, i32)> = queues.keys().step_by(2).cloned().collect();
            writer.flush(Some(&half)).unwrap();
        }
    }
    landing.skipped += writer.stats().skipped;
}

/// Flushes and takes the positions as committed.
fn commit(writer: &mut LakeWriter, committed: &mut BTreeMap<(String, i32), i64>) {
    for (topic, p, next) in writer.flush(None).unwrap() {
        committed.insert((topic, p), next);
    }
}

fn offset(m: &OwnedMessage) -> i64 {
    use rdkafka::Message;
    m.offset()
}

/// The records per Kafka partition, as messages, with the lake partition each lands in.
fn queues(spec: &LakeSpec, records: &[RawRecord]) -> BTreeMap<(String, i32), Queue> {
    let schemas: BTreeMap<u32, &apache_avro::Schema> = DRIVER_SCHEMAS
        .iter()
        .map(|(id, kind, _)| (*id, kind.schema()))
        .collect();
    let mut out: BTreeMap<(String, i32), Queue> = BTreeMap::new();
    for r in records {
        let topic: &LakeTopic = spec.topics.iter().find(|t| t.topic == r.topic).unwrap();
        let dir = match (&r.key, &r.value) {
            (Some(k), _) if k.as_slice() == WATERMARK_KEY => None,
            (_, Some(v)) => {
                let id = u32::from_be_bytes(v[1..5].try_into().unwrap());
                let value = decode_datum(schemas[&id], &v[5..]).unwrap();
                let (_, values) = partition_of(topic, &value).unwrap();
                Some(partition_path(&values))
            }
            _ => None,
        };
        let m = OwnedMessage::new(
            r.value.clone(),
            r.key.clone(),
            r.topic.clone(),
            r.timestamp_ms
                .map_or(Timestamp::NotAvailable, Timestamp::CreateTime),
            r.partition,
            r.offset,
            None,
        );
        let queue = out.entry((r.topic.clone(), r.partition)).or_default();
        queue.push(Record {
            message: m,
            dir,
            boundary: false,
        });
    }
    for queue in out.values_mut() {
        queue.sort_by_key(|r| offset(&r.message));
        let mut last: Option<String> = None;
        for r in queue.iter_mut() {
            if r.dir.is_some() {
                r.boundary = last.is_some() && r.dir != last;
                last.clone_from(&r.dir);
            }
        }
    }
    out
}

/// A lake spec landing `topics` (topic, table, time field) into the directory `lake`, Avro
/// with snappy (and the tables named in `parquet` as Parquet), files rolled at `max_records`.
pub fn lake_spec(
    lake: &Path,
    topics: &[(&str, &str, &str)],
    parquet: &[&str],
    max_records: u64,
) -> LakeSpec {
    let mut yaml = format!(
        "url: file://{}\ncodec: snappy\nroll: {{ max_records: {max_records} }}\ntopics:\n",
        lake.display()
    );
    for (topic, table, time) in topics {
        let format = if parquet.contains(table) {
            ", format: parquet"
        } else {
            ""
        };
        yaml.push_str(&format!(
            "  - {{ topic: \"{topic}\", table: {table}, time_field: {time}{format} }}\n"
        ));
    }
    serde_saphyr::from_str(&yaml).unwrap()
}
