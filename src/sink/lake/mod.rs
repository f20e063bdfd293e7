//! The lake sink: lands the records of Kafka topics as Avro object container files in a lake
//! (a directory or S3), partitioned by event time, and registers them in a catalog, with
//! exactly-once files. The protocol (see `docs/lake.md`):
//!
//! 1. Records of one Kafka partition go to one open file per lake partition; a file is
//!    closed when it reaches a roll limit and written at once, under a name made of topic,
//!    Kafka partition and first offset, with a conditional put. The file's metadata lists
//!    the offsets it holds.
//! 2. Every `flush_interval`, and when partitions are revoked, every open file is closed and
//!    written, new lake partitions are registered in the catalog, and only then is the
//!    consumer position committed. So every file written before a commit holds only offsets
//!    below the committed position.
//! 3. After a restart, the files of a Kafka partition whose first offset is at or above the
//!    committed position are the only ones that can hold records about to be replayed. The
//!    sink reads their offset lists (lazily, per lake partition, when a replayed record first
//!    goes there) and skips those records, so no record is landed twice, whatever the roll
//!    points of the previous run were. Their lake partitions are registered again (an
//!    existing partition is success), which finishes a registration the crash interrupted.

pub mod writer;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apache_avro::{Codec, Schema};

use self::writer::{ClosedFile, Landing, PartitionFiles};
use crate::catalog::{Catalog, CatalogError, GlueCatalog, LocalCatalog, PartitionDef, TableDef};
use crate::codec::{
    CodecError, DeadLetter, Encoder, Reason, RecordKind, RegistryClient, SourceRecord, watermark_of,
};
use crate::config::lake::{CatalogKind, LakeCodec, LakeFormat, LakeSpec, LakeTopic};
use crate::config::{AppConfig, KafkaConfig};
use crate::kafka::{
    ConsumerSettings, DriveOptions, Flow, Group, KafkaError, KafkaSink, Part, Position, SinkError,
    Stage,
};
use crate::lake::LakeError;
use crate::lake::layout::{
    PartitionValues, catalog_values, first_offset_of, partition_of, partition_path,
};
use crate::lake::offsets::OffsetRanges;
use crate::lake::store::LakeStore;
use crate::lake::{OFFSETS_KEY, SCHEMA_ID_KEY, TOPIC_KEY, columnar, file_info, millis};
use crate::metrics::{Metrics, StageState};

/// Staging objects older than this were left behind by a crash: no upload takes a day.
const STAGING_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Errors of the lake sink.
#[derive(Debug, thiserror::Error)]
pub enum LakeSinkError {
    /// The lake could not be read or written.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A bug: the sink's own invariant broke.
    #[error("lake sink: {0}")]
    Internal(String),
    /// A blocking task of the sink panicked or was cancelled (a bug).
    #[error("lake sink: a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The registry failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Writing dead letters failed.
    #[error(transparent)]
    DeadLetters(#[from] SinkError),
}

impl crate::error::Classified for LakeSinkError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            LakeSinkError::Lake(e) => e.class(),
            LakeSinkError::Catalog(e) => e.class(),
            LakeSinkError::Codec(e) => e.class(),
            LakeSinkError::DeadLetters(e) => e.class(),
            LakeSinkError::Kafka(e) => e.class(),
            LakeSinkError::Internal(_) | LakeSinkError::Task(_) => {
                crate::error::ErrorClass::Internal
            }
        }
    }
}

/// The lake sink's name in `/healthz` and `/readyz`.
pub const LAKE: &str = "lake";

/// How to run the sink.
#[derive(Debug, Clone, Default)]
pub struct LakeOptions {
    /// Stop (after a final flush) when the sink has read every assigned partition to its
    /// end and no record arrived for this long (and `upstream` has finished).
    pub stop_when_idle: Option<Duration>,
    /// Set while a stage of the same process that writes the landed topics (the engine under
    /// `tickflow run`) is still running: until it is cleared, the sink is never idle.
    pub upstream: Option<Arc<AtomicBool>>,
    /// How long to wait at start for every landed topic to exist (the engine creates the bar
    /// topics when it starts); the sink fails, naming the missing topics, after that.
    pub topic_wait: Duration,
    /// Static group membership (`group.instance.id`), so a restarted sink takes its
    /// partitions back at once.
    pub instance_id: Option<String>,
}

/// What a run landed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LakeStats {
    /// Records written into files.
    pub records: u64,
    /// Files written.
    pub files: u64,
    /// Replayed records found in files already.
    pub skipped: u64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: u64,
}

/// A landed topic, resolved.
struct Table {
    spec: LakeTopic,
    name: String,
    /// Registry id and schema of the table's definition (the newest seen), once known.
    schema_id: Option<u32>,
    /// The catalog's definition of the table (the current schema, columns in the table's
    /// order), once registered: the one partitions are registered with.
    registered: Option<TableDef>,
}

/// Lands records into files and registers them: everything the consumer loop and the
/// rebalance callback share. `run` drives it from a consumer; a benchmark can feed it
/// records directly.
pub struct LakeWriter {
    spec: LakeSpec,
    application: String,
    store: LakeStore,
    catalog: Catalog,
    registry: RegistryClient,
    runtime: tokio::runtime::Handle,
    schemas: HashMap<u32, KnownSchema>,
    tables: HashMap<String, Table>,
    files: HashMap<(String, i32), PartitionFiles>,
    /// Lake partitions with files, to register at the next flush: (topic, values).
    unregistered: BTreeSet<(String, PartitionValues)>,
    dead_letters: Encoder<DeadLetter>,
    dlq: KafkaSink,
    dlq_topic: String,
    metrics: Metrics,
    stats: LakeStats,
    /// When the buffer gauges were last set.
    reported: Instant,
}

/// A registry schema, parsed once, with a decoder for its datums (building one resolves the
/// schema's names, too slow to repeat per record). Kept for the life of the process, a
/// handful per topic, so that the decoder can borrow it.
struct KnownSchema {
    schema: &'static Schema,
    decoder: apache_avro::reader::datum::GenericDatumReader<'static>,
    /// The rewriter of its datums for Avro lake files, when it has timestamps finer than
    /// milliseconds.
    millis: Option<millis::Millis>,
}

impl LakeWriter {
    /// The codec of the Avro files being built in `format`: none for Parquet, which
    /// compresses its own pages.
    fn codec(&self, format: LakeFormat) -> Codec {
        if format == LakeFormat::Parquet {
            return Codec::Null;
        }
        match self.spec.codec {
            LakeCodec::Null => Codec::Null,
            LakeCodec::Deflate => Codec::Deflate(Default::default()),
            LakeCodec::Snappy => Codec::Snappy,
            LakeCodec::Zstandard => Codec::Zstandard(Default::default()),
        }
    }

    fn known(&mut self, id: u32) -> Result<&KnownSchema, LakeSinkError> {
        if !self.schemas.contains_key(&id) {
            let text = self.runtime.block_on(self.registry.schema_by_id(id))?;
            let unparseable = |e: apache_avro::Error| CodecError::SchemaNotFound {
                id,
                message: format!("unparseable schema: {e}"),
            };
            let schema: &'static Schema =
                Box::leak(Box::new(Schema::parse_str(&text).map_err(unparseable)?));
            let decoder = apache_avro::reader::datum::GenericDatumReader::builder(schema)
                .build()
                .map_err(unparseable)?;
            let millis = millis::Millis::of(schema).map_err(unparseable)?;
            self.schemas.insert(
                id,
                KnownSchema {
                    schema,
                    decoder,
                    millis,
                },
            );
        }
        Ok(&self.schemas[&id])
    }

    /// The schema that files (and tables) of `format` declare for records of schema `id`:
    /// Avro files hold millisecond timestamps (see [`millis`]).
    fn file_schema(&mut self, id: u32, format: LakeFormat) -> Result<Schema, LakeSinkError> {
        let known = self.known(id)?;
        Ok(match (&known.millis, format) {
            (Some(m), LakeFormat::Avro) => m.lake_schema.clone(),
            _ => known.schema.clone(),
        })
    }

    /// The next offset of `partition` of `topic` to land: after the last record read, else
    /// the position committed when it was assigned (`None` if neither is known).
    fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let files = self.files.get(&(topic.to_string(), partition))?;
        files
            .next_offset
            .or((files.committed >= 0).then_some(files.committed))
    }

    /// Starts landing `partition` of `topic` from the committed `position` (`None`: nothing
    /// committed). A partition already started keeps its open files.
    pub fn start_partition(&mut self, topic: &str, partition: i32, position: Option<i64>) {
        let Some(table) = self.tables.get(topic) else {
            return;
        };
        let format = self.spec.format_of(&table.spec);
        let key = (topic.to_string(), partition);
        if self.files.contains_key(&key) {
            return;
        }
        let position = position.unwrap_or(i64::MIN);
        tracing::debug!(topic, partition, position, "lake partition assigned");
        let files = PartitionFiles::new(
            topic,
            (&table.name, partition),
            (format, self.codec(format)),
            self.spec.roll.clone(),
            position,
        );
        self.files.insert(key, files);
    }

    /// Lands one record, or sends it to the dead-letter topic.
    pub fn land(&mut self, m: &SourceRecord<'_>) -> Result<(), LakeSinkError> {
        if watermark_of(m.key, m.value).is_some() {
            return Ok(());
        }
        let format = self
            .tables
            .get(m.topic)
            .map(|t| self.spec.format_of(&t.spec));
        let Some((id, datum)) = m.value.and_then(framed) else {
            return self.dead_letter(
                m,
                Reason::Undecodable,
                "not in the Confluent wire format".into(),
            );
        };
        let known = match self.known(id) {
            Ok(k) => k,
            Err(LakeSinkError::Codec(CodecError::SchemaNotFound { message, .. })) => {
                return self.dead_letter(
                    m,
                    Reason::UnknownSchema,
                    format!("schema id {id}: {message}"),
                );
            }
            Err(e) => return Err(e),
        };
        let value = match known.decoder.read_value(&mut &datum[..]) {
            Ok(v) => v,
            Err(e) => return self.dead_letter(m, Reason::Undecodable, e.to_string()),
        };
        let rewritten = match (&known.millis, format) {
            (Some(millis), Some(LakeFormat::Avro)) => match millis.rewrite(datum) {
                Ok(d) => Some(d),
                Err(e) => return self.dead_letter(m, Reason::Undecodable, e.to_string()),
            },
            _ => None,
        };
        let table = &self.tables[m.topic];
        let (time, partition) = match partition_of(&table.spec, &value) {
            Ok(x) => x,
            Err(detail) => return self.dead_letter(m, Reason::MissingField, detail),
        };
        let datum = rewritten.as_deref().unwrap_or(datum);
        if table.schema_id.is_none_or(|known| id > known) {
            let t = self.tables.get_mut(m.topic).expect("known topic");
            (t.schema_id, t.registered) = (Some(id), None);
        }
        let key = (m.topic.to_string(), m.partition);
        self.recover(&key, &partition)?;
        let files = self.files.get_mut(&key).ok_or_else(|| {
            LakeSinkError::Internal(format!("record of unassigned {}-{}", key.0, key.1))
        })?;
        let before = files.skipped;
        let closed = files.add(Landing {
            offset: m.offset,
            schema_id: id,
            datum,
            time,
            partition,
        })?;
        if files.skipped > before {
            self.stats.skipped += 1;
            self.metrics.lake_skipped.inc();
        }
        if let Some(c) = closed {
            self.write(&key.0, c)?;
        }
        Ok(())
    }

    /// Before the first record of a lake partition after an assignment: finds the files a
    /// previous run wrote there at or after the committed position, and marks their records
    /// landed.
    fn recover(
        &mut self,
        key: &(String, i32),
        values: &PartitionValues,
    ) -> Result<(), LakeSinkError> {
        let Some(files) = self.files.get_mut(key) else {
            return Ok(());
        };
        if !files.needs_check(values) {
            return Ok(());
        }
        let (position, table) = (files.committed, self.tables[&key.0].name.clone());
        let dir = format!("{table}/{}", partition_path(values));
        let names = self.runtime.block_on(self.store.list_names(&dir))?;
        let mut found = OffsetRanges::default();
        let mut any = false;
        for name in names {
            let Some(first) = first_offset_of(&name, &key.0, key.1) else {
                continue;
            };
            any = true;
            if first < position {
                continue;
            }
            let path = format!("{dir}/{name}");
            let bytes = self.runtime.block_on(self.store.get(&path))?;
            found.merge(&file_info(&path, &bytes)?.offsets);
        }
        if any {
            self.unregistered.insert((key.0.clone(), values.clone()));
        }
        if found.count() > 0 {
            tracing::info!(
                topic = key.0,
                partition = key.1,
                lake_partition = dir,
                records = found.count(),
                "found records landed by a previous run"
            );
            self.files
                .get_mut(key)
                .expect("checked")
                .mark_landed(&found);
        }
        Ok(())
    }

    /// Writes a closed file (conditional put).
    fn write(&mut self, topic: &str, closed: ClosedFile) -> Result<(), LakeSinkError> {
        let format = LakeFormat::of_path(&closed.path).unwrap_or(LakeFormat::Avro);
        let schema = self.file_schema(closed.schema_id, format)?;
        let (records, started) = (closed.file.records, closed.file.started);
        let offsets = closed.offsets.to_string();
        let metadata = [
            (OFFSETS_KEY, offsets),
            (SCHEMA_ID_KEY, closed.schema_id.to_string()),
            (TOPIC_KEY, topic.to_string()),
        ];
        let mut bytes = closed.file.finish(&schema, &metadata)?;
        if LakeFormat::of_path(&closed.path) == Some(LakeFormat::Parquet) {
            bytes = columnar::encode(bytes, self.spec.codec, &metadata)?;
        }
        let size = bytes.len() as u64;
        let upload = Instant::now();
        let created = self
            .runtime
            .block_on(self.store.put_new(&closed.path, bytes))?;
        let m = &self.metrics;
        m.lake_upload_seconds
            .observe(upload.elapsed().as_secs_f64());
        m.lake_latency_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            path = closed.path,
            records,
            size,
            ?created,
            "lake file written"
        );
        self.stats.records += records;
        self.stats.files += 1;
        self.metrics.lake_records.inc_by(records);
        self.metrics.lake_files.inc();
        self.metrics.lake_bytes.inc_by(size);
        self.unregistered
            .insert((topic.to_string(), closed.partition));
        Ok(())
    }

    /// Closes and writes every open file (of every partition, or of `only`), registers new
    /// tables and partitions, and returns the positions that may now be committed.
    pub fn flush(&mut self, only: Option<&[Part]>) -> Result<Vec<Position>, LakeSinkError> {
        let keys: Vec<Part> = match only {
            Some(parts) => parts.to_vec(),
            None => self.files.keys().cloned().collect(),
        };
        for key in &keys {
            let closed = self
                .files
                .get_mut(key)
                .map(PartitionFiles::close_all)
                .unwrap_or_default();
            for c in closed {
                self.write(&key.0, c)?;
            }
        }
        self.register()?;
        self.dlq.flush(Duration::from_secs(60))?;
        let positions = keys
            .into_iter()
            .filter_map(|key| {
                let next = self.files.get_mut(&key)?.commit_position()?;
                Some((key.0, key.1, next))
            })
            .collect();
        Ok(positions)
    }

    /// Sets the gauges of the files open and the bytes they hold in memory.
    fn report_buffers(&self) {
        let (files, bytes) = self
            .files
            .values()
            .map(PartitionFiles::buffered)
            .fold((0, 0), |(f, b), (nf, nb)| (f + nf, b + nb));
        self.metrics.lake_open_files.set(files as i64);
        self.metrics.lake_buffered_bytes.set(bytes as i64);
    }

    /// Creates or updates tables whose schema changed, and registers new partitions.
    fn register(&mut self) -> Result<(), LakeSinkError> {
        let topics: Vec<String> = self.tables.keys().cloned().collect();
        for topic in topics {
            let has_partitions = self.unregistered.iter().any(|(t, _)| *t == topic);
            let t = &self.tables[&topic];
            if t.registered.is_some() && !has_partitions {
                continue;
            }
            let Some(id) = t.schema_id else {
                continue;
            };
            let def = match t.registered.clone() {
                Some(def) => def,
                None => {
                    let fresh = self.table_def(&topic, id)?;
                    let done = self.runtime.block_on(self.catalog.ensure_table(&fresh));
                    self.count_call("ensure_table", done.is_ok());
                    let def = done?;
                    self.tables.get_mut(&topic).expect("known").registered = Some(def.clone());
                    def
                }
            };
            let parts: Vec<PartitionDef> = self
                .unregistered
                .iter()
                .filter(|(t, _)| *t == topic)
                .map(|(_, values)| PartitionDef {
                    values: catalog_values(values),
                    location: self.store.location(&format!(
                        "{}/{}",
                        def.name,
                        partition_path(values)
                    )),
                })
                .collect();
            if !parts.is_empty() {
                let done = self
                    .runtime
                    .block_on(self.catalog.add_partitions(&def, &parts));
                self.count_call("add_partitions", done.is_ok());
                done?;
                self.unregistered.retain(|(t, _)| *t != topic);
            }
        }
        Ok(())
    }

    fn count_call(&self, operation: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.metrics
            .catalog_calls
            .with_label_values(&[operation, outcome])
            .inc();
    }

    fn table_def(&mut self, topic: &str, schema_id: u32) -> Result<TableDef, LakeSinkError> {
        let format = self.spec.format_of(&self.tables[topic].spec);
        let schema = self.file_schema(schema_id, format)?;
        let t = &self.tables[topic];
        let location = self.store.location(&t.name);
        Ok(TableDef::of(
            &self.spec,
            &t.spec,
            location,
            (schema_id, &schema),
        )?)
    }

    /// Sends `m` to the dead-letter topic; its envelope carries the record's own time, so
    /// that a replay writes the same envelope.
    fn dead_letter(
        &mut self,
        m: &SourceRecord<'_>,
        reason: Reason,
        detail: String,
    ) -> Result<(), LakeSinkError> {
        let application = format!("{}-lake", self.application);
        let envelope = DeadLetter::about(m, reason, detail, &application);
        let bytes = self.dead_letters.encode(&envelope)?;
        self.dlq
            .send_to(&self.dlq_topic, m.key.unwrap_or_default(), &bytes)?;
        self.stats.dead_letters += 1;
        self.metrics
            .dead_letters
            .with_label_values(&["lake", reason.as_str()])
            .inc();
        if let Some(f) = self.files.get_mut(&(m.topic.to_string(), m.partition)) {
            f.next_offset = Some(m.offset + 1);
        }
        Ok(())
    }
}

/// Schema id and datum of a Confluent wire-format value.
fn framed(value: &[u8]) -> Option<(u32, &[u8])> {
    match value {
        [0, a, b, c, d, rest @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => None,
    }
}

/// The sink as a stage of the consumer driver: assigned partitions start at the group's
/// committed positions; revoked ones and each commit flush their files, register them, and
/// only then commit.
impl Stage for LakeWriter {
    type Error = LakeSinkError;

    fn assigned(
        &mut self,
        group: &dyn Group,
        parts: &[Part],
    ) -> Result<Vec<Option<i64>>, LakeSinkError> {
        let committed = group.committed(parts)?;
        for ((topic, p), position) in parts.iter().zip(&committed) {
            self.start_partition(topic, *p, *position);
        }
        // Resume exactly where the files were started from.
        Ok(committed)
    }

    fn revoked(
        &mut self,
        group: &dyn Group,
        parts: &[Part],
        lost: bool,
    ) -> Result<(), LakeSinkError> {
        // A lost partition belongs to another member already: what its open files hold is
        // landed again by the new owner.
        let flushed = if lost {
            Ok(())
        } else {
            self.flush(Some(parts))
                .and_then(|positions| Ok(group.commit(&positions, true)?))
        };
        for key in parts {
            self.files.remove(key);
        }
        flushed
    }

    fn record(&mut self, record: &SourceRecord<'_>) -> Result<bool, LakeSinkError> {
        self.land(record)?;
        Ok(watermark_of(record.key, record.value).is_none())
    }

    fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        LakeWriter::next_offset(self, topic, partition)
    }

    fn tick(&mut self) -> Result<Flow, LakeSinkError> {
        if self.reported.elapsed() >= Duration::from_millis(200) {
            self.report_buffers();
            self.reported = Instant::now();
        }
        Ok(Flow::Continue)
    }

    fn commit(&mut self, group: &dyn Group, _last: bool) -> Result<(), LakeSinkError> {
        let positions = self.flush(None)?;
        group.commit(&positions, true)?;
        self.report_buffers();
        Ok(())
    }
}

/// Runs the lake sink of `spec` until `stop` is set (or until idle).
pub async fn run(
    application: &str,
    spec: &LakeSpec,
    app: &AppConfig,
    options: LakeOptions,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> Result<LakeStats, LakeSinkError> {
    let waiting = StageState::Starting("opening the lake and waiting for its topics".into());
    metrics.health.set(LAKE, waiting);
    let health = metrics.health.clone();
    let writer = LakeWriter::open(application, spec, app, metrics).await?;
    let kafka = app.kafka.clone();
    let topics: Vec<String> = spec.topics.iter().map(|t| t.topic.clone()).collect();
    let (k, wait) = (kafka.clone(), options.topic_wait);
    tokio::task::spawn_blocking(move || crate::kafka::await_topics(&k, &topics, wait)).await??;
    health.set(LAKE, StageState::Ready);
    let group = format!("{application}-lake");
    tokio::task::spawn_blocking(move || land_loop(writer, &kafka, &group, &options, &stop)).await?
}

impl LakeWriter {
    /// Opens the lake store (failing fast if it cannot be listed), connects the catalog and
    /// registers the dead-letter schema. Its methods block on the current Tokio runtime: call
    /// them from a blocking thread.
    pub async fn open(
        application: &str,
        spec: &LakeSpec,
        app: &AppConfig,
        metrics: Metrics,
    ) -> Result<Self, LakeSinkError> {
        let store = LakeStore::open(&spec.url, &app.aws)
            .await?
            .with_upload(spec.upload.clone());
        store.check().await?;
        let swept = store.sweep_staging(STAGING_MAX_AGE).await?;
        if swept > 0 {
            tracing::info!(swept, "deleted staging objects left behind by a crash");
        }
        let catalog = match spec.catalog_kind() {
            CatalogKind::Local => Catalog::Local(LocalCatalog::new(store.clone())),
            CatalogKind::Glue => {
                let glue = GlueCatalog::connect(&app.aws).await?;
                glue.ensure_database(&spec.database).await?;
                Catalog::Glue(glue)
            }
        };
        let registry = RegistryClient::from_config(&app.registry)?;
        let dlq_topic = format!("{application}.dlq");
        let dlq_id = registry
            .register_value(&dlq_topic, RecordKind::DeadLetter)
            .await?;
        let tables = spec
            .topics
            .iter()
            .map(|t| {
                let table = Table {
                    spec: t.clone(),
                    name: t.table_name(),
                    schema_id: None,
                    registered: None,
                };
                (t.topic.clone(), table)
            })
            .collect();
        Ok(Self {
            spec: spec.clone(),
            application: application.into(),
            store,
            catalog,
            registry,
            runtime: tokio::runtime::Handle::current(),
            schemas: HashMap::new(),
            tables,
            files: HashMap::new(),
            unregistered: BTreeSet::new(),
            dead_letters: Encoder::new(RecordKind::DeadLetter, dlq_id),
            dlq: KafkaSink::new(&app.kafka, &dlq_topic)?,
            dlq_topic,
            metrics,
            stats: LakeStats::default(),
            reported: Instant::now(),
        })
    }

    /// What the writer has landed so far.
    pub fn stats(&self) -> &LakeStats {
        &self.stats
    }
}

fn land_loop(
    writer: LakeWriter,
    kafka: &KafkaConfig,
    group: &str,
    options: &LakeOptions,
    stop: &AtomicBool,
) -> Result<LakeStats, LakeSinkError> {
    let topics: Vec<String> = writer.spec.topics.iter().map(|t| t.topic.clone()).collect();
    let interval = writer.spec.roll.flush_interval.value;
    let mut drive = DriveOptions::new(LAKE, topics, interval);
    drive.stop_when_idle = options.stop_when_idle;
    drive.upstream = options.upstream.clone();
    drive.lag = Some(writer.metrics.consumer_lag.clone());
    let settings = ConsumerSettings::member(group)
        .static_member(options.instance_id.as_deref())
        // Landed topics that the engine creates at its start are picked up quickly.
        .set("topic.metadata.refresh.interval.ms", "5000");
    let writer = Arc::new(Mutex::new(writer));
    crate::kafka::drive(kafka, &settings, writer.clone(), &drive, stop)?;
    let stats = writer.lock().expect("sink lock").stats.clone();
    Ok(stats)
}
