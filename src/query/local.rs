//! The embedded SQL engine: DataFusion over the lake's Avro or Parquet files, with the tables, columns
//! and partition keys the catalog defines (the local catalog of a `file://` lake, or Glue's
//! definitions of an S3 lake), under the same names Athena uses. Partition keys are string
//! columns read from the `key=value` directories, so a filter on `dt` or `hour` skips whole
//! directories, as it does in Athena.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema as ArrowSchema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::avro::AvroFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::{QueryError, ResultSet};
use crate::catalog::{Catalog, TableDef};
use crate::config::lake::LakeFormat;
use crate::lake::columnar;
use crate::lake::store::LakeStore;

/// The URL the lake's object store is registered under in the engine.
const LAKE_URL: &str = "lake://lake/";
/// How timestamps are shown: as Athena shows them.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// What a query read: files of its tables' scans after partition pruning, and files present
/// in those tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Distinct files the query's scans read.
    pub files_read: usize,
    /// Files in the tables the query scans.
    pub files_present: usize,
}

/// DataFusion with the lake's tables registered.
pub struct LocalEngine {
    ctx: SessionContext,
    store: LakeStore,
    tables: Vec<TableDef>,
}

impl LocalEngine {
    /// Registers each of `tables` that `catalog` defines in `database`, over the files in
    /// `store`. Tables the catalog does not have yet are left out.
    pub async fn open(
        store: &LakeStore,
        catalog: &Catalog,
        database: &str,
        tables: &[String],
    ) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema("awsdatacatalog", database)
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        let url = url::Url::parse(LAKE_URL).expect("valid URL");
        ctx.register_object_store(&url, store.object_store());
        let mut defs = Vec::new();
        for name in tables {
            let Some(def) = catalog.table_def(database, name).await? else {
                continue;
            };
            ctx.register_table(name.as_str(), Arc::new(listing_table(store, &def)?))?;
            defs.push(def);
        }
        Ok(Self {
            ctx,
            store: store.clone(),
            tables: defs,
        })
    }

    /// The tables registered.
    pub fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    /// Runs `sql` and returns its answer.
    pub async fn query(&self, sql: &str) -> Result<ResultSet, QueryError> {
        Ok(self.query_with_stats(sql).await?.0)
    }

    /// Runs `sql` and returns its answer, with the files its scans read.
    pub async fn query_with_stats(&self, sql: &str) -> Result<(ResultSet, ScanStats), QueryError> {
        let frame = self.ctx.sql(sql).await?;
        let scanned: Vec<TableDef> = self
            .scanned_tables(frame.logical_plan())
            .into_iter()
            .cloned()
            .collect();
        let plan = frame.create_physical_plan().await?;
        let mut stats = ScanStats {
            files_read: files_scanned(&plan),
            files_present: 0,
        };
        for def in &scanned {
            stats.files_present += self.files_of(def).await?;
        }
        let schema = plan.schema();
        let batches = collect(plan, self.ctx.task_ctx()).await?;
        Ok((result_set(&batches, &schema)?, stats))
    }

    fn scanned_tables(&self, plan: &LogicalPlan) -> Vec<&TableDef> {
        let mut names = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                names.push(scan.table_name.table().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        });
        self.tables
            .iter()
            .filter(|t| names.contains(&t.name))
            .collect()
    }

    async fn files_of(&self, def: &TableDef) -> Result<usize, QueryError> {
        let rel = self.store.relative(&def.location).unwrap_or_default();
        let names = self.store.list_all(&rel).await?;
        let extension = def.format.extension();
        Ok(names.iter().filter(|n| n.ends_with(extension)).count())
    }
}

/// A listing table over `def`'s directory: Avro or Parquet files under `key=value`
/// partition directories, with the columns of the table's Avro schema.
fn listing_table(store: &LakeStore, def: &TableDef) -> Result<ListingTable, QueryError> {
    let rel = store.relative(&def.location).ok_or_else(|| {
        QueryError::Unsupported(format!(
            "table {} is at {}, outside the lake",
            def.name, def.location
        ))
    })?;
    let url = ListingTableUrl::parse(format!("{LAKE_URL}{rel}/"))?;
    let partition_cols = def
        .partition_keys
        .iter()
        .map(|k| (k.name.clone(), DataType::Utf8))
        .collect();
    let format: Arc<dyn FileFormat> = match def.format {
        LakeFormat::Avro => Arc::new(AvroFormat),
        LakeFormat::Parquet => Arc::new(ParquetFormat::default()),
    };
    let options = ListingOptions::new(format)
        .with_file_extension(def.format.extension())
        .with_table_partition_cols(partition_cols);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(arrow_schema(def)?);
    Ok(ListingTable::try_new(config)?)
}

/// The Arrow schema of the table's files: what arrow-avro's reader gives records of the
/// table's Avro schema, which is also what Parquet lake files hold.
fn arrow_schema(def: &TableDef) -> Result<Arc<ArrowSchema>, QueryError> {
    let bad = |e: crate::error::BoxError| {
        QueryError::unreadable_file(format!("table {} schema", def.name), e)
    };
    let schema = apache_avro::Schema::parse_str(&def.avro_schema).map_err(|e| bad(e.into()))?;
    columnar::arrow_schema(&schema).map_err(|e| bad(e.into()))
}

/// Files read by the file scans in `plan`, each counted once however many scans read it.
fn files_scanned(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut files = std::collections::BTreeSet::new();
    collect_files(plan, &mut files);
    files.len()
}

fn collect_files(plan: &Arc<dyn ExecutionPlan>, out: &mut std::collections::BTreeSet<String>) {
    if let Some(c) = file_scan(plan) {
        for g in &c.file_groups {
            out.extend(g.iter().map(|f| f.object_meta.location.to_string()));
        }
    }
    for child in plan.children() {
        collect_files(child, out);
    }
}

fn file_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    plan.downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()
}

/// Batches as display strings, timestamps as Athena shows them.
fn result_set(batches: &[RecordBatch], schema: &ArrowSchema) -> Result<ResultSet, QueryError> {
    let mut out = ResultSet {
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        types: schema
            .fields()
            .iter()
            .map(|f| sql_type(f.data_type()))
            .collect(),
        rows: Vec::new(),
    };
    let options = FormatOptions::default()
        .with_timestamp_format(Some(TIMESTAMP_FORMAT))
        .with_timestamp_tz_format(Some(TIMESTAMP_FORMAT));
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(datafusion::error::DataFusionError::from)?;
        for row in 0..batch.num_rows() {
            out.rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| (!c.is_null(row)).then(|| f.value(row).to_string()))
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// The SQL (Athena) name of an Arrow type.
fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "varbinary".into(),
        DataType::List(f) | DataType::LargeList(f) => format!("array({})", sql_type(f.data_type())),
        DataType::Map(..) => "map".into(),
        DataType::Struct(_) => "row".into(),
        DataType::Dictionary(_, v) => sql_type(v),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{LocalCatalog, PartitionDef};
    use crate::config::lake::{LakeCodec, LakeSpec};
    use crate::lake::file::AvroFile;
    use apache_avro::types::Value;

    const OLD: &str = r#"{"type":"record","name":"T","fields":[{"name":"symbol","type":"string"},
      {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#;
    const NEW: &str = r#"{"type":"record","name":"T","fields":[{"name":"symbol","type":"string"},
      {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
      {"name":"seq","type":["null","long"],"default":null}]}"#;

    /// Like NEW, with `seq` inserted between the old fields.
    const MID: &str = r#"{"type":"record","name":"T","fields":[{"name":"symbol","type":"string"},
      {"name":"seq","type":["null","long"],"default":null},
      {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#;

    /// An Avro lake file of `n` records of `schema` (fields of OLD, NEW or MID, in the
    /// schema's order), starting at offset `first`, and its metadata.
    fn avro(schema: &apache_avro::Schema, first: i64, n: i64) -> (Vec<u8>, [(&str, String); 2]) {
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap();
        let apache_avro::Schema::Record(record) = schema else {
            panic!("a record schema")
        };
        let mut file = AvroFile::new(apache_avro::Codec::Null, [1; 16]);
        for i in first..first + n {
            let fields = record
                .fields
                .iter()
                .map(|f| {
                    let value = match f.name.as_str() {
                        "symbol" => Value::String(format!("S{}", i % 3)),
                        "at" => Value::TimestampMicros(i),
                        _ => Value::Union(1, Box::new(Value::Long(i))),
                    };
                    (f.name.clone(), value)
                })
                .collect();
            file.append(&writer.write_value_to_vec(Value::Record(fields)).unwrap())
                .unwrap();
        }
        let metadata = [
            ("tickflow.offsets", format!("{first}-{}", first + n - 1)),
            ("tickflow.schema_id", "1".to_string()),
        ];
        (file.finish(schema, &metadata).unwrap(), metadata)
    }

    /// A result row of non-null cells.
    fn row(cells: &[&str]) -> Vec<Option<String>> {
        cells.iter().map(|s| Some(s.to_string())).collect()
    }

    /// A Parquet lake file of `n` records of `schema`, starting at offset `first`.
    fn parquet(schema: &apache_avro::Schema, first: i64, n: i64) -> Vec<u8> {
        let (avro, metadata) = avro(schema, first, n);
        columnar::encode(avro, LakeCodec::Snappy, &metadata).unwrap()
    }

    /// A field inserted mid-record (MID after OLD) goes to the end of the table's columns,
    /// where Athena's by-position match of the old partitions expects it, and the engine
    /// reads files of both schemas by name.
    #[tokio::test]
    async fn a_field_inserted_mid_record_goes_last_and_both_files_read() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = LakeStore::open(&url, &Default::default()).await.unwrap();
        let spec: LakeSpec =
            serde_saphyr::from_str(&format!("url: {url}\ntopics: [{{topic: t}}]")).unwrap();
        let catalog = Catalog::Local(LocalCatalog::new(store.clone()));
        for (id, json, hour, first, n) in [(1, OLD, "08", 0, 40), (2, MID, "09", 40, 25)] {
            let schema = apache_avro::Schema::parse_str(json).unwrap();
            let dir = format!("t/dt=2026-03-02/hour={hour}");
            let bytes = avro(&schema, first, n).0;
            store
                .put_new(&format!("{dir}/t+0+{first:010}.avro"), bytes)
                .await
                .unwrap();
            let fresh = TableDef::of(&spec, &spec.topics[0], store.location("t"), (id, &schema));
            let def = catalog.ensure_table(&fresh.unwrap()).await.unwrap();
            let partition = PartitionDef {
                values: vec!["2026-03-02".into(), hour.into()],
                location: store.location(&dir),
            };
            catalog.add_partitions(&def, &[partition]).await.unwrap();
        }
        let def = catalog.table_def("tickflow", "t").await.unwrap().unwrap();
        let columns: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["symbol", "at", "seq"]);
        let engine = LocalEngine::open(&store, &catalog, "tickflow", &["t".into()])
            .await
            .unwrap();
        let rows = engine
            .query("SELECT count(*), count(seq), sum(seq), max(at) FROM t")
            .await
            .unwrap()
            .rows;
        let sum = (40..65).sum::<i64>().to_string();
        assert_eq!(rows, [row(&["65", "25", &sum, "1970-01-01 00:00:00.000"])]);
    }

    /// Parquet files of an older schema and of a newer one (a new optional field) answer
    /// one query: the new column is null in the old files.
    #[tokio::test]
    async fn parquet_tables_read_old_and_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = LakeStore::open(&url, &Default::default()).await.unwrap();
        let (old, new) = (
            apache_avro::Schema::parse_str(OLD).unwrap(),
            apache_avro::Schema::parse_str(NEW).unwrap(),
        );
        let hour = "t/dt=2026-03-02/hour=09";
        for (schema, first, n) in [(&old, 0, 40), (&new, 40, 25)] {
            let name = format!("{hour}/t+0+{first:010}.parquet");
            let bytes = parquet(schema, first, n);
            store.put_new(&name, bytes).await.unwrap();
        }
        let spec: LakeSpec = serde_saphyr::from_str(&format!(
            "url: {url}\nformat: parquet\ntopics: [{{topic: t}}]"
        ))
        .unwrap();
        let def = TableDef::of(&spec, &spec.topics[0], store.location("t"), (2, &new)).unwrap();
        let catalog = Catalog::Local(LocalCatalog::new(store.clone()));
        catalog.ensure_table(&def).await.unwrap();
        let partition = PartitionDef {
            values: vec!["2026-03-02".into(), "09".into()],
            location: store.location(hour),
        };
        catalog.add_partitions(&def, &[partition]).await.unwrap();
        let engine = LocalEngine::open(&store, &catalog, "tickflow", &["t".into()])
            .await
            .unwrap();
        let rows = engine
            .query("SELECT count(*), count(seq), sum(seq), min(at), max(hour) FROM t")
            .await
            .unwrap()
            .rows;
        let sum = (40..65).sum::<i64>().to_string();
        assert_eq!(
            rows,
            [row(&["65", "25", &sum, "1970-01-01 00:00:00.000", "09"])]
        );
    }
}
