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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apache_avro::{Codec, Schema};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use self::writer::{ClosedFile, Landing, PartitionFiles};
use crate::catalog::{Catalog, CatalogError, GlueCatalog, LocalCatalog, PartitionDef, TableDef};
use crate::codec::{
    CodecError, DeadLetter, Encoder, Reason, RecordKind, RegistryClient, SourceRecord, watermark_of,
};
use crate::config::lake::{CatalogKind, LakeCodec, LakeFormat, LakeSpec, LakeTopic};
use crate::config::{AppConfig, KafkaConfig};
use crate::kafka::client_config_with;
use crate::kafka::{KafkaSink, SinkError};
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
    #[error("kafka: {0}")]
    Kafka(String),
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
            LakeSinkError::Kafka(_) => crate::error::ErrorClass::External,
        }
    }
}

impl LakeSinkError {
    fn kafka(e: impl std::fmt::Display) -> Self {
        Self::Kafka(e.to_string())
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
    failure: Option<LakeSinkError>,
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

    /// Starts the files of newly assigned partitions at their committed positions.
    /// The next offset of `partition` of `topic` to land: after the last record read, else
    /// the position committed when it was assigned (`None` if neither is known).
    fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let files = self.files.get(&(topic.to_string(), partition))?;
        files
            .next_offset
            .or((files.committed >= 0).then_some(files.committed))
    }

    fn assign(&mut self, committed: &TopicPartitionList) {
        for e in committed.elements() {
            let position = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            self.start_partition(e.topic(), e.partition(), position);
        }
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
    pub fn land(&mut self, m: &impl Message) -> Result<(), LakeSinkError> {
        if watermark_of(m.key(), m.payload()).is_some() {
            return Ok(());
        }
        let format = self
            .tables
            .get(m.topic())
            .map(|t| self.spec.format_of(&t.spec));
        let Some((id, datum)) = m.payload().and_then(framed) else {
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
        let table = &self.tables[m.topic()];
        let (time, partition) = match partition_of(&table.spec, &value) {
            Ok(x) => x,
            Err(detail) => return self.dead_letter(m, Reason::MissingField, detail),
        };
        let datum = rewritten.as_deref().unwrap_or(datum);
        if table.schema_id.is_none_or(|known| id > known) {
            let t = self.tables.get_mut(m.topic()).expect("known topic");
            (t.schema_id, t.registered) = (Some(id), None);
        }
        let key = (m.topic().to_string(), m.partition());
        self.recover(&key, &partition)?;
        let files = self.files.get_mut(&key).ok_or_else(|| {
            LakeSinkError::kafka(format!("record of unassigned {}-{}", key.0, key.1))
        })?;
        let before = files.skipped;
        let closed = files.add(Landing {
            offset: m.offset(),
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
    pub fn flush(
        &mut self,
        only: Option<&TopicPartitionList>,
    ) -> Result<TopicPartitionList, LakeSinkError> {
        let keys: Vec<(String, i32)> = match only {
            Some(tpl) => tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect(),
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
        let mut tpl = TopicPartitionList::new();
        for key in &keys {
            if let Some(next) = self
                .files
                .get_mut(key)
                .and_then(PartitionFiles::commit_position)
            {
                tpl.add_partition_offset(&key.0, key.1, Offset::Offset(next))
                    .map_err(LakeSinkError::kafka)?;
            }
        }
        Ok(tpl)
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

    fn dead_letter(
        &mut self,
        m: &impl Message,
        reason: Reason,
        detail: String,
    ) -> Result<(), LakeSinkError> {
        let source = SourceRecord {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            value: m.payload(),
            // The record's own time, so that a replay writes the same envelope.
            timestamp: m
                .timestamp()
                .to_millis()
                .map_or(0, |ms| ms.saturating_mul(1000)),
        };
        let application = format!("{}-lake", self.application);
        let envelope = DeadLetter::about(&source, reason, detail, &application);
        let bytes = self.dead_letters.encode(&envelope)?;
        self.dlq
            .send_to(&self.dlq_topic, m.key().unwrap_or_default(), &bytes)?;
        self.stats.dead_letters += 1;
        self.metrics
            .dead_letters
            .with_label_values(&["lake", reason.as_str()])
            .inc();
        if let Some(f) = self.files.get_mut(&(m.topic().to_string(), m.partition())) {
            f.next_offset = Some(m.offset() + 1);
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

/// Consumer context that flushes revoked partitions and starts assigned ones.
struct LakeContext {
    sink: Arc<Mutex<LakeWriter>>,
    auth: crate::kafka::Auth,
}

crate::oauth_client_context!(LakeContext);

impl ConsumerContext for LakeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut sink = self.sink.lock().expect("sink lock");
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            let partitions = crate::kafka::describe(tpl);
            tracing::info!(stage = LAKE, %partitions, lost, "partitions revoked");
            let result = if lost {
                Ok(())
            } else {
                sink.flush(Some(tpl)).and_then(|positions| {
                    if positions.count() == 0 {
                        return Ok(());
                    }
                    consumer
                        .commit(&positions, CommitMode::Sync)
                        .map_err(LakeSinkError::kafka)
                })
            };
            for e in tpl.elements() {
                sink.files.remove(&(e.topic().to_string(), e.partition()));
            }
            if let Err(e) = result {
                sink.failure.get_or_insert(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions = crate::kafka::describe(tpl);
            tracing::info!(stage = LAKE, %partitions, "partitions assigned");
            let mut sink = self.sink.lock().expect("sink lock");
            match consumer.committed_offsets((*tpl).clone(), Duration::from_secs(30)) {
                Ok(committed) => sink.assign(&committed),
                Err(e) => {
                    sink.failure.get_or_insert(LakeSinkError::kafka(e));
                }
            }
        }
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
    tokio::task::spawn_blocking(move || crate::kafka::await_topics(&k, &topics, wait))
        .await
        .map_err(LakeSinkError::kafka)?
        .map_err(LakeSinkError::kafka)?;
    health.set(LAKE, StageState::Ready);
    let group = format!("{application}-lake");
    tokio::task::spawn_blocking(move || land_loop(writer, &kafka, &group, &options, &stop))
        .await
        .map_err(LakeSinkError::kafka)?
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
            failure: None,
        })
    }

    /// What the writer has landed so far.
    pub fn stats(&self) -> &LakeStats {
        &self.stats
    }
}

fn land_loop(
    sink: LakeWriter,
    kafka: &KafkaConfig,
    group: &str,
    options: &LakeOptions,
    stop: &AtomicBool,
) -> Result<LakeStats, LakeSinkError> {
    let topics: Vec<String> = sink.spec.topics.iter().map(|t| t.topic.clone()).collect();
    let interval = sink.spec.roll.flush_interval.value;
    let sink = Arc::new(Mutex::new(sink));
    let mut settings = vec![
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("fetch.wait.max.ms", "50"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        // Landed topics that the engine creates at its start are picked up quickly.
        ("topic.metadata.refresh.interval.ms", "5000"),
    ];
    if let Some(id) = &options.instance_id {
        settings.push(("group.instance.id", id.as_str()));
    }
    let auth = crate::kafka::Auth::of(kafka).map_err(LakeSinkError::kafka)?;
    let context = LakeContext {
        sink: sink.clone(),
        auth: auth.clone(),
    };
    let consumer: BaseConsumer<LakeContext> = client_config_with(kafka, &settings)
        .create_with_context(context)
        .map_err(LakeSinkError::kafka)?;
    auth.prime(consumer.client().native_client())
        .map_err(LakeSinkError::kafka)?;
    consumer
        .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
        .map_err(LakeSinkError::kafka)?;
    let (mut last_flush, mut idle, mut pending) = (Instant::now(), Duration::ZERO, 0u64);
    let mut last_report = Instant::now();
    let mut ends = crate::kafka::EndCheck::default();
    let mut errors = crate::kafka::ErrorLog::new(LAKE);
    let upstream_running = || {
        options
            .upstream
            .as_ref()
            .is_some_and(|u| u.load(Ordering::Relaxed))
    };
    while !stop.load(Ordering::Relaxed) {
        let polled = Instant::now();
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                errors.ok();
                sink.lock().expect("sink lock").land(&m)?;
                (idle, pending) = (Duration::ZERO, pending + 1);
            }
            Some(Err(e)) => errors.error(&e),
            // Idle only at the end of every assigned partition, with the upstream stage done:
            // a slow fetch, a rebalance or an engine still producing is not idleness.
            None if options.stop_when_idle.is_some()
                && !upstream_running()
                && ends.at_end(&consumer, |t, p| {
                    sink.lock().expect("sink lock").next_offset(t, p)
                }) =>
            {
                idle += polled.elapsed()
            }
            None => {}
        }
        if options.stop_when_idle.is_some() {
            ends.explain(LAKE, crate::kafka::EXPLAIN_EVERY);
        }
        let mut s = sink.lock().expect("sink lock");
        if let Some(f) = s.failure.take() {
            return Err(f);
        }
        if last_report.elapsed() >= Duration::from_millis(200) {
            s.report_buffers();
            last_report = Instant::now();
        }
        if pending > 0 && last_flush.elapsed() >= interval {
            commit(&mut s, &consumer)?;
            s.report_buffers();
            crate::kafka::report_lag(&consumer, "lake", &s.metrics.consumer_lag);
            (last_flush, pending) = (Instant::now(), 0);
        }
        if options.stop_when_idle.is_some_and(|d| idle >= d) {
            break;
        }
    }
    let mut s = sink.lock().expect("sink lock");
    commit(&mut s, &consumer)?;
    Ok(s.stats.clone())
}

fn commit(
    sink: &mut LakeWriter,
    consumer: &BaseConsumer<LakeContext>,
) -> Result<(), LakeSinkError> {
    let positions = sink.flush(None)?;
    if positions.count() > 0 {
        consumer
            .commit(&positions, CommitMode::Sync)
            .map_err(LakeSinkError::kafka)?;
    }
    Ok(())
}
