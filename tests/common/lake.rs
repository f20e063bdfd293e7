//! Checking a lake: every record of every landed topic in exactly one file, in its event-time
//! partition, with the value it had in Kafka; and every partition holding files registered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use apache_avro::types::Value;
use tickflow::catalog::local::TableFile;
use tickflow::codec::RegistryClient;
use tickflow::config::lake::LakeFormat;
use tickflow::lake::millis::to_millis_value;
use tickflow::lake::store::LakeStore;
use tickflow::lake::{decode_datum, file_records};
use tickflow::source::RawRecord;

/// One landed record: (topic, Kafka partition, offset) → (lake partition dir, decoded value,
/// format of its file).
pub type Landed = BTreeMap<(String, i32, i64), (String, Value, LakeFormat)>;

/// A landed topic: (topic, table, time field).
pub type LandedTopic<'a> = (&'a str, &'a str, &'a str);

/// Every lake file (`.avro` or `.parquet`) under the directory `lake`, as (path under the
/// lake, bytes).
pub fn local_files(lake: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![lake.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(lake).unwrap().display().to_string();
                if LakeFormat::of_path(&rel).is_some() {
                    out.push((rel, std::fs::read(&path).unwrap()));
                }
            }
        }
    }
    out
}

/// Every lake file of a lake store, as (path under the lake, bytes).
pub async fn store_files(store: &LakeStore) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for path in store.list_all("").await.unwrap() {
        if LakeFormat::of_path(&path).is_some() {
            out.push((path.clone(), store.get(&path).await.unwrap().to_vec()));
        }
    }
    out
}

/// The records of `files`, each at the offset its file's metadata gives. Fails on any
/// record landed twice.
pub fn landed(files: &[(String, Vec<u8>)]) -> Landed {
    let mut out = Landed::new();
    let mut seen: BTreeMap<(String, i32, i64), String> = BTreeMap::new();
    for (path, bytes) in files {
        let (dir, name) = path.rsplit_once('/').unwrap();
        let parts: Vec<&str> = name.split('+').collect();
        let (topic, p) = (parts[0].to_string(), parts[1].parse::<i32>().unwrap());
        let bytes = bytes::Bytes::from(bytes.clone());
        let (info, values) = file_records(path, &bytes).unwrap();
        for (o, v) in info.offsets.iter().zip(values) {
            let key = (topic.clone(), p, o);
            if let Some(first) = seen.insert(key.clone(), path.clone()) {
                panic!("{topic}-{p}@{o} landed twice: in {first} and {path}");
            }
            let format = LakeFormat::of_path(path).unwrap();
            out.insert(key, (dir.to_string(), v, format));
        }
    }
    out
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let Value::Record(fields) = v else {
        panic!("not a record: {v:?}")
    };
    &fields.iter().find(|(n, _)| n == name).unwrap().1
}

/// The `<table>/dt=.../hour=...` directory of a record with event time `time` (micros).
pub fn hour_dir(table: &str, time: i64) -> String {
    let at = chrono::DateTime::from_timestamp_micros(time).unwrap();
    format!(
        "{table}/dt={}/hour={}",
        at.format("%Y-%m-%d"),
        at.format("%H")
    )
}

/// Checks that `landed` holds exactly the non-watermark records of `records`, each in its
/// event-time partition and equal to its Kafka value; returns the partition directories
/// holding files, per table.
pub async fn check_records(
    landed: &Landed,
    records: &[RawRecord],
    topics: &[LandedTopic<'_>],
    client: &RegistryClient,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut want = BTreeSet::new();
    let mut schemas = BTreeMap::new();
    for r in records {
        if r.key.as_deref() == Some(tickflow::codec::WATERMARK_KEY) {
            continue;
        }
        let value = r.value.as_deref().unwrap();
        let (_, table, time_field) = topics.iter().find(|(t, _, _)| *t == r.topic).unwrap();
        let key = (r.topic.clone(), r.partition, r.offset);
        let (dir, got, format) = landed
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} is not in the lake"));
        let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
        if let std::collections::btree_map::Entry::Vacant(e) = schemas.entry(id) {
            let text = client.schema_by_id(id).await.unwrap();
            e.insert(apache_avro::Schema::parse_str(&text).unwrap());
        }
        let original = decode_datum(&schemas[&id], &value[5..]).unwrap();
        // Avro files hold timestamps in milliseconds (what Athena reads), Parquet in micros.
        let as_landed = match format {
            LakeFormat::Avro => to_millis_value(original),
            LakeFormat::Parquet => original,
        };
        assert_eq!(got, &as_landed, "{key:?}");
        let t = match field(got, time_field) {
            Value::TimestampMicros(t) => *t,
            Value::TimestampMillis(t) => t * 1000,
            _ => panic!("{time_field} is not a timestamp"),
        };
        assert_eq!(dir, &hour_dir(table, t), "{key:?} partition");
        want.insert(key);
    }
    let extra: Vec<_> = landed
        .keys()
        .filter(|k| !want.contains(*k))
        .take(5)
        .collect();
    assert!(
        extra.is_empty(),
        "records in the lake that are not in Kafka: {extra:?}"
    );
    let mut dirs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (dir, _, _) in landed.values() {
        let table = dir.split('/').next().unwrap().to_string();
        dirs.entry(table).or_default().insert(dir.clone());
    }
    dirs
}

/// Checks the lake in directory `lake` against `records` (see `check_records`), and that
/// its local catalog registers exactly the partitions holding files, at their locations.
pub async fn check_local(
    lake: &Path,
    records: &[RawRecord],
    topics: &[LandedTopic<'_>],
    client: &RegistryClient,
) {
    let landed = landed(&local_files(lake));
    let dirs = check_records(&landed, records, topics, client).await;
    for (_, table, _) in topics {
        let file: TableFile = serde_json::from_slice(
            &std::fs::read(lake.join(format!("_catalog/tickflow/{table}.json"))).unwrap(),
        )
        .unwrap();
        let registered: BTreeSet<String> = file
            .partitions
            .iter()
            .map(|p| format!("{table}/dt={}/hour={}", p.values[0], p.values[1]))
            .collect();
        assert_eq!(
            Some(&registered),
            dirs.get(*table),
            "{table}: registered partitions"
        );
        for p in &file.partitions {
            // The table's location is a folder (it ends with `/`).
            let want = format!(
                "{}dt={}/hour={}",
                file.table.location, p.values[0], p.values[1]
            );
            assert_eq!(p.location, want);
        }
        assert!(file.table.columns.iter().any(|c| c.r#type == "timestamp"));
    }
}

/// The lake tests' topology: 1-minute bars of `input`, and a lake at `url` landing the ticks
/// (table `ticks`) and the bars (table `bars_1m`) into `database`, with `roll`.
pub fn topology(id: &str, input: &str, url: &str, database: &str, roll: &str) -> String {
    format!(
        "application: {id}
sources:
  ticks: {{ topic: {input} }}
operators:
  - window:
      id: bars
      input: ticks
      tumbling: [1m]
      grace: 2s
      aggregates: [open, high, low, close, volume, vwap]
      late_topic: {id}.late
sinks:
  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}
lake:
  url: {url}
  database: {database}
  codec: snappy
  topics:
    - {{ topic: {input}, table: ticks }}
    - {{ topic: {id}.bars.1m, table: bars_1m }}
  roll: {roll}
"
    )
}

/// A directory with a lake, a topology file landing into it with `roll`, and the engine's
/// environment.
pub fn setup(
    kafka: &tickflow::config::KafkaConfig,
    registry: &str,
    id: &str,
    input: &str,
    roll: &str,
) -> (tempfile::TempDir, PathBuf, PathBuf, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let t = dir.path().join("t.yaml");
    let url = format!("file://{}", lake.display());
    std::fs::write(&t, topology(id, input, &url, "tickflow", roll)).unwrap();
    let env = super::process::engine_env(
        &kafka.bootstrap_servers,
        registry,
        &dir.path().join("state"),
    );
    (dir, lake, t, env)
}
