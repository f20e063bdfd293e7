//! Where records go in the lake: the partition of a record (event-time `dt`/`hour`, then the
//! topic's `partition_by` fields), partition directories, and file names, which are made of
//! topic, Kafka partition and first offset so that the same records always get the same name.

use apache_avro::types::Value;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::config::lake::{LakeFormat, LakeTopic};

/// Partition columns and values of a lake partition, e.g. `[("dt", "2026-03-02"), ("hour",
/// "14")]`.
pub type PartitionValues = Vec<(String, String)>;

/// The directory of a lake partition under its table: `dt=2026-03-02/hour=14`.
pub fn partition_path(values: &PartitionValues) -> String {
    let parts: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("/")
}

/// Bytes of a partition value that are percent-encoded in its directory name: all but
/// letters, digits, `-`, `_` and `.`.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// The values a catalog registers for a lake partition: each as it is in the data, decoded
/// from its directory name (`BRK/B` for `symbol_part=BRK%2FB`), as Hive and Athena's
/// `MSCK REPAIR TABLE` register them and as the embedded engine reads the directories.
pub fn catalog_values(values: &PartitionValues) -> Vec<String> {
    values.iter().map(|(_, v)| decoded(v)).collect()
}

/// A partition value from its directory name's encoded form.
pub fn decoded(encoded: &str) -> String {
    percent_decode_str(encoded).decode_utf8_lossy().into_owned()
}

/// Where a file of a Kafka partition goes: its table, lake partition and format.
pub struct FileSpot<'a> {
    /// Table directory.
    pub table: &'a str,
    /// Lake partition.
    pub values: &'a PartitionValues,
    /// File format.
    pub format: LakeFormat,
}

/// The object name of a file:
/// `<table>/<partition>/<topic>+<partition>+<first offset>.<avro|parquet>`, as Kafka
/// Connect's S3 sink names them, so the same records always get the same name.
pub fn file_path(spot: &FileSpot<'_>, topic: &str, p: i32, first: i64) -> String {
    format!(
        "{}/{}/{}",
        spot.table,
        partition_path(spot.values),
        file_name(topic, p, first, spot.format)
    )
}

/// `<topic>+<partition>+<first offset, 10 digits or more>.<avro|parquet>`.
pub fn file_name(topic: &str, p: i32, first: i64, format: LakeFormat) -> String {
    format!("{topic}+{p}+{first:010}{}", format.extension())
}

/// The first offset in a file name of `topic` partition `p` (of either format), if the name
/// is one.
pub fn first_offset_of(name: &str, topic: &str, p: i32) -> Option<i64> {
    let rest = name.strip_prefix(&format!("{topic}+{p}+"))?;
    let format = LakeFormat::of_path(rest)?;
    rest.strip_suffix(format.extension())?.parse().ok()
}

/// Event time (UTC microseconds) and lake partition of a record, or why it has none.
pub fn partition_of(spec: &LakeTopic, value: &Value) -> Result<(i64, PartitionValues), String> {
    let Value::Record(fields) = value else {
        return Err("the value is not a record".into());
    };
    let time = match &spec.time_field {
        Some(name) => fields
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| micros(v))
            .ok_or_else(|| format!("no timestamp field `{name}`"))?,
        None => fields
            .iter()
            .find_map(|(_, v)| micros(v))
            .ok_or("no timestamp field")?,
    };
    let at = chrono::DateTime::from_timestamp_micros(time).ok_or("timestamp out of range")?;
    let mut values = vec![
        ("dt".to_string(), at.format("%Y-%m-%d").to_string()),
        ("hour".to_string(), at.format("%H").to_string()),
    ];
    for name in &spec.partition_by {
        let v = fields
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| partition_text(v))
            .ok_or_else(|| format!("no string or integer field `{name}`"))?;
        values.push((crate::config::lake::partition_key(name), v));
    }
    Ok((time, values))
}

fn micros(v: &Value) -> Option<i64> {
    match v {
        Value::TimestampMicros(t) | Value::LocalTimestampMicros(t) => Some(*t),
        Value::TimestampMillis(t) | Value::LocalTimestampMillis(t) => Some(t * 1000),
        Value::TimestampNanos(t) | Value::LocalTimestampNanos(t) => Some(t / 1000),
        Value::Union(_, inner) => micros(inner),
        _ => None,
    }
}

/// A partition value safe in a path: letters, digits, `-`, `_` and `.` kept, every other
/// byte of its UTF-8 percent-encoded, like Hive does.
fn partition_text(v: &Value) -> Option<String> {
    let raw = match v {
        Value::String(s) | Value::Enum(_, s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Long(l) => l.to_string(),
        Value::Union(_, inner) => return partition_text(inner),
        _ => return None,
    };
    Some(utf8_percent_encode(&raw, ESCAPED).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A file's name gives back its topic partition's first offset, in either format.
        #[test]
        fn file_names_round_trip(topic in "[a-zA-Z0-9._-]{1,60}", p in 0i32..10_000, first in 0i64..i64::MAX, parquet: bool) {
            let format = if parquet { LakeFormat::Parquet } else { LakeFormat::Avro };
            let name = file_name(&topic, p, first, format);
            proptest::prop_assert_eq!(first_offset_of(&name, &topic, p), Some(first));
            proptest::prop_assert_eq!(first_offset_of(&name, &topic, p + 1), None);
        }

        /// Any name found in a listing is read without panic.
        #[test]
        fn any_name_is_read_without_panic(name: String, topic: String, p: i32) {
            let _ = first_offset_of(&name, &topic, p);
        }
    }

    proptest::proptest! {
        /// Any value is kept whole through its directory name, which holds only path-safe
        /// bytes, and the catalog gets the value back.
        #[test]
        fn partition_values_round_trip(raw: String) {
            let text = partition_text(&Value::String(raw.clone())).unwrap();
            let safe = |c: char| c.is_ascii_alphanumeric() || "-_.%".contains(c);
            proptest::prop_assert!(text.chars().all(safe), "{}", text);
            proptest::prop_assert_eq!(decoded(&text), raw);
        }
    }

    #[test]
    fn values_are_escaped_by_utf8_byte() {
        let text = partition_text(&Value::String("BRK/B é€".into())).unwrap();
        assert_eq!(text, "BRK%2FB%20%C3%A9%E2%82%AC");
        let values = vec![("symbol_part".to_string(), text)];
        assert_eq!(catalog_values(&values), ["BRK/B é€"]);
    }

    #[test]
    fn names_are_kafka_connect_style() {
        let values = vec![
            ("dt".to_string(), "2026-03-02".to_string()),
            ("hour".to_string(), "09".to_string()),
        ];
        let mut spot = FileSpot {
            table: "ticks",
            values: &values,
            format: LakeFormat::Avro,
        };
        let path = file_path(&spot, "ticks.raw", 3, 42);
        assert_eq!(
            path,
            "ticks/dt=2026-03-02/hour=09/ticks.raw+3+0000000042.avro"
        );
        spot.format = LakeFormat::Parquet;
        let path = file_path(&spot, "ticks.raw", 3, 42);
        assert!(path.ends_with("/ticks.raw+3+0000000042.parquet"), "{path}");
        assert_eq!(
            first_offset_of("ticks.raw+3+0000000042.parquet", "ticks.raw", 3),
            Some(42)
        );
        assert_eq!(
            first_offset_of("ticks.raw+3+0000000042.avro", "ticks.raw", 3),
            Some(42)
        );
        assert_eq!(
            first_offset_of("ticks.raw+4+0000000042.avro", "ticks.raw", 3),
            None
        );
    }
}
