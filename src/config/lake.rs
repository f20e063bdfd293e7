//! The `lake:` section of a topology: which topics the lake sink lands as Avro or Parquet
//! files, where, how files are partitioned and rolled, and which catalog registers them.
//!
//! ```yaml
//! lake:
//!   url: file://./lake            # or s3://bucket/prefix
//!   database: tickflow            # Glue database, or the local catalog's name
//!   format: avro                  # or parquet
//!   codec: snappy                 # null, deflate, snappy or zstandard
//!   topics:
//!     - { topic: ticks.raw, table: ticks }
//!     - { topic: bars.1m, partition_by: [symbol] }
//!     - { topic: bars.1h, format: parquet }   # this table's own format
//!   roll: { max_records: 1000000, max_bytes: 67108864, max_event_time_span: 1h, flush_interval: 60s }
//!   partition_projection: { since: 2024-01-01 }   # optional: Athena computes partitions
//!   upload: { multipart_threshold: 16777216, part_bytes: 8388608 }
//! ```

use serde::{Deserialize, Serialize};

use super::topology::DurationLit;

/// The lake sink stage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeSpec {
    /// Where files land: `file://DIR` (relative to the working directory unless absolute) or
    /// `s3://bucket/prefix` (the endpoint override of the app config's `aws` section applies).
    pub url: String,
    /// Catalog database holding one table per landed topic.
    #[serde(default = "default_database")]
    pub database: String,
    /// Which catalog registers tables and partitions: `local` (a catalog file in the lake,
    /// the default for `file://`) or `glue` (the AWS Glue Data Catalog, the default for
    /// `s3://`).
    #[serde(default)]
    pub catalog: Option<CatalogKind>,
    /// File format: Avro object container files, or Parquet.
    #[serde(default)]
    pub format: LakeFormat,
    /// Compression of the Avro blocks, or of the Parquet pages (`deflate` is GZIP there).
    #[serde(default)]
    pub codec: LakeCodec,
    /// Topics to land, each as one table.
    pub topics: Vec<LakeTopic>,
    /// When a file is closed.
    #[serde(default)]
    pub roll: RollSpec,
    /// Athena partition projection: the tables say how partitions map to directories, so
    /// Athena computes them from a query's filters and no partition is registered.
    #[serde(default)]
    pub partition_projection: Option<ProjectionSpec>,
    /// How files are uploaded: large ones in parts.
    #[serde(default)]
    pub upload: UploadSpec,
}

/// S3's smallest part of a multipart upload (all but the last part), in bytes.
pub const MIN_PART_BYTES: u64 = 5 << 20;

/// How files are uploaded. A file of at least `multipart_threshold` bytes is uploaded in
/// parts to a staging name, then copied to its own name only if nothing is there (on S3 a
/// conditional CompleteMultipartUpload), so it is never visible partly written either way.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSpec {
    /// Files of at least this many bytes (compressed, as written) are uploaded in parts.
    pub multipart_threshold: u64,
    /// Bytes per part (at least 5 MiB, S3's minimum).
    pub part_bytes: u64,
}

impl Default for UploadSpec {
    fn default() -> Self {
        Self {
            multipart_threshold: 16 << 20,
            part_bytes: 8 << 20,
        }
    }
}

/// Partition projection settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionSpec {
    /// First day of the `dt` range, `YYYY-MM-DD` (the range ends today: `NOW`).
    pub since: String,
}

fn default_database() -> String {
    "tickflow".into()
}

/// The catalog that registers the lake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogKind {
    /// A JSON catalog kept in the lake itself (`_catalog/`), read by the embedded query engine.
    Local,
    /// The AWS Glue Data Catalog, read by Athena.
    Glue,
}

/// The format of lake files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LakeFormat {
    /// Avro object container files: the Kafka records' datums, copied as they are.
    #[default]
    Avro,
    /// Parquet: columnar, so Athena reads only the columns a query names.
    Parquet,
}

impl LakeFormat {
    /// The file name extension, with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Avro => ".avro",
            Self::Parquet => ".parquet",
        }
    }

    /// The format of a file, by its name's extension.
    pub fn of_path(path: &str) -> Option<Self> {
        [Self::Avro, Self::Parquet]
            .into_iter()
            .find(|f| path.ends_with(f.extension()))
    }
}

/// Avro block codecs that Athena reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LakeCodec {
    /// No compression.
    Null,
    /// Deflate: smaller files, about four times slower to write than snappy.
    Deflate,
    /// Snappy: fast; Athena and Hive read it.
    #[default]
    Snappy,
    /// Zstandard.
    Zstandard,
}

/// One landed topic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeTopic {
    /// Kafka topic (Avro values in the Confluent wire format).
    pub topic: String,
    /// Table name [default: the topic with every character other than a letter, digit or
    /// `_` replaced by `_`, e.g. `bars_1m`].
    #[serde(default)]
    pub table: Option<String>,
    /// Field whose time partitions the files (`dt=YYYY-MM-DD/hour=HH`, UTC) [default: the
    /// first field with a timestamp logical type].
    #[serde(default)]
    pub time_field: Option<String>,
    /// String or integer fields that partition the files further, after `dt` and `hour`; each
    /// is a partition key named after it with `_part` appended (`symbol` → `symbol_part=AAPL`).
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// File format of this topic's table [default: the lake's `format`].
    #[serde(default)]
    pub format: Option<LakeFormat>,
}

/// The partition key (table column and directory name) of a `partition_by` field: its name
/// with `_part` appended, because Athena refuses a table whose partition key has the name of
/// a data column (and a `partition_by` field is always one).
pub fn partition_key(field: &str) -> String {
    format!("{field}_part")
}

impl LakeTopic {
    /// The table the topic lands in.
    pub fn table_name(&self) -> String {
        self.table.clone().unwrap_or_else(|| {
            self.topic
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        })
    }
}

/// When an open file is closed and written. A file holds the records of one Kafka partition
/// for one lake partition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollSpec {
    /// Most records in a file.
    pub max_records: u64,
    /// Most bytes (uncompressed Avro data) in a file.
    pub max_bytes: u64,
    /// Longest event-time span of a file's records.
    pub max_event_time_span: DurationLit,
    /// Every this long (wall clock), every open file is closed and the consumer position
    /// committed: the longest a record waits before it is queryable.
    pub flush_interval: DurationLit,
}

impl Default for RollSpec {
    fn default() -> Self {
        let lit = |text: &str| DurationLit {
            text: text.into(),
            value: humantime::parse_duration(text).expect("valid default"),
        };
        Self {
            max_records: 1_000_000,
            max_bytes: 64 << 20,
            max_event_time_span: lit("1h"),
            flush_interval: lit("60s"),
        }
    }
}

impl LakeSpec {
    /// The table `topic` lands in, if the lake lands it.
    pub fn table_for(&self, topic: &str) -> Option<String> {
        self.topics
            .iter()
            .find(|t| t.topic == topic)
            .map(|t| t.table_name())
    }

    /// The file format `topic` lands in: its own, else the lake's.
    pub fn format_of(&self, topic: &LakeTopic) -> LakeFormat {
        topic.format.unwrap_or(self.format)
    }

    /// The catalog in use: as configured, else by the URL's scheme.
    pub fn catalog_kind(&self) -> CatalogKind {
        self.catalog.unwrap_or(if self.url.starts_with("s3://") {
            CatalogKind::Glue
        } else {
            CatalogKind::Local
        })
    }

    /// Problems with the section, as (field path, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(self.url.starts_with("file://") || self.url.starts_with("s3://")) {
            out.push((
                "lake.url".into(),
                format!(
                    "`{}` is neither file://DIR nor s3://BUCKET/PREFIX",
                    self.url
                ),
            ));
        }
        if !is_name(&self.database) {
            out.push(("lake.database".into(), NAME_RULE.into()));
        }
        if self.topics.is_empty() {
            out.push(("lake.topics".into(), "at least one topic is needed".into()));
        }
        let mut tables = std::collections::HashMap::new();
        for (i, t) in self.topics.iter().enumerate() {
            let table = t.table_name();
            if !is_name(&table) {
                out.push((format!("lake.topics[{i}].table"), NAME_RULE.into()));
            } else if let Some(first) = tables.insert(table.clone(), i) {
                out.push((
                    format!("lake.topics[{i}].table"),
                    format!("table `{table}` is already used by lake.topics[{first}]"),
                ));
            }
            if t.topic.starts_with(['_', '.']) {
                out.push((
                    format!("lake.topics[{i}].topic"),
                    "files are named after the topic, and Athena skips files whose names start with `_` or `.`: land another topic, or copy this one to a topic named otherwise".into(),
                ));
            }
            for (j, f) in t.partition_by.iter().enumerate() {
                if f == "dt" || f == "hour" || f.is_empty() {
                    out.push((
                        format!("lake.topics[{i}].partition_by[{j}]"),
                        "must name a field other than dt and hour".into(),
                    ));
                }
            }
        }
        if let Some(p) = &self.partition_projection
            && chrono::NaiveDate::parse_from_str(&p.since, "%Y-%m-%d").is_err()
        {
            out.push((
                "lake.partition_projection.since".into(),
                format!("`{}` is not a date (YYYY-MM-DD)", p.since),
            ));
        }
        if self.upload.part_bytes < MIN_PART_BYTES {
            out.push((
                "lake.upload.part_bytes".into(),
                format!("must be at least {MIN_PART_BYTES} (5 MiB, S3's smallest part)"),
            ));
        }
        if self.upload.multipart_threshold == 0 {
            out.push((
                "lake.upload.multipart_threshold".into(),
                "must be more than 0".into(),
            ));
        }
        let r = &self.roll;
        for (field, zero) in [
            ("max_records", r.max_records == 0),
            ("max_bytes", r.max_bytes == 0),
            ("max_event_time_span", r.max_event_time_span.value.is_zero()),
            ("flush_interval", r.flush_interval.value.is_zero()),
        ] {
            if zero {
                out.push((format!("lake.roll.{field}"), "must be more than 0".into()));
            }
        }
        out
    }
}

const NAME_RULE: &str = "must be lower-case letters, digits and `_`, starting with a letter";

/// Glue and Athena names: lower case, digits and underscores.
fn is_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> LakeSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_follow_the_url() {
        let s = spec("url: s3://b/p\ntopics: [{topic: bars.1m}]");
        assert_eq!(s.catalog_kind(), CatalogKind::Glue);
        assert_eq!(s.topics[0].table_name(), "bars_1m");
        assert_eq!(s.codec, LakeCodec::Snappy);
        assert_eq!(s.roll, RollSpec::default());
        assert!(s.validate().is_empty());
        let s = spec("url: file://./lake\ntopics: [{topic: ticks.raw, table: ticks}]");
        assert_eq!(s.catalog_kind(), CatalogKind::Local);
        assert!(s.validate().is_empty());
    }

    #[test]
    fn reports_every_problem() {
        let s = spec(
            "url: http://x\ndatabase: Bad-Name\ntopics: [{topic: a.b}, {topic: a_b, partition_by: [dt]}, {topic: _x, table: x}]\nroll: {max_records: 0}\nupload: {part_bytes: 1000}",
        );
        let fields: Vec<String> = s.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "lake.url",
                "lake.database",
                "lake.topics[1].table",
                "lake.topics[1].partition_by[0]",
                "lake.topics[2].topic",
                "lake.upload.part_bytes",
                "lake.roll.max_records"
            ]
        );
    }
}
