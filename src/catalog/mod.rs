//! Catalogs that register the lake's tables and partitions, so that SQL engines see them:
//! the AWS Glue Data Catalog (for Athena) and a local catalog kept in the lake (for the
//! embedded engine). Both take the same table definitions, made from the topics' Avro
//! schemas.

mod evolve;
pub mod glue;
pub mod hive;
pub mod local;
pub mod sync;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

pub use glue::GlueCatalog;

use std::collections::BTreeMap;

use crate::config::lake::{LakeFormat, LakeSpec, LakeTopic, ProjectionSpec, partition_key};
pub use local::LocalCatalog;

/// Errors of the catalog stage.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A schema cannot be a table.
    #[error("schema: {0}")]
    Schema(String),
    /// The catalog's storage failed.
    #[error("catalog store: {0}")]
    Store(String),
    /// A Glue call failed.
    #[error("glue {what}: {}", glue::in_full(.source))]
    Glue {
        /// The call and what it was for.
        what: String,
        /// The SDK's error.
        source: crate::error::BoxError,
    },
    /// The local catalog's files in the lake cannot be read or written.
    #[error("catalog store: {0}")]
    Lake(#[from] crate::lake::LakeError),
    /// A catalog file is not what tickflow writes.
    #[error("catalog file {path}: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it: the JSON or lake reader's error.
        source: crate::error::BoxError,
    },
}

impl crate::error::Classified for CatalogError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            // A record schema that cannot be a table.
            CatalogError::Schema(_) => crate::error::ErrorClass::User,
            CatalogError::Lake(e) => e.class(),
            _ => crate::error::ErrorClass::External,
        }
    }
}

/// A table column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name (lower case).
    pub name: String,
    /// Hive type name: `string`, `bigint`, `double`, `timestamp`, `array<string>`, ...
    pub r#type: String,
    /// The field's documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A table of the Avro or Parquet files landed from one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    /// Database (Glue database).
    pub database: String,
    /// Table name.
    pub name: String,
    /// The topic the table lands.
    pub topic: String,
    /// URL of the table's directory (`s3://...` or `file://...`).
    pub location: String,
    /// The format of its files.
    #[serde(default)]
    pub format: LakeFormat,
    /// Registry id of the schema the columns come from (the newest seen).
    pub schema_id: u32,
    /// That Avro schema, as JSON with logical types and defaults (`avro.schema.literal`).
    pub avro_schema: String,
    /// Columns, from the schema's fields.
    pub columns: Vec<Column>,
    /// Partition columns, in directory order (`dt`, `hour`, then `partition_by` fields).
    pub partition_keys: Vec<Column>,
    /// Athena partition projection properties (`projection.*`, `storage.location.template`);
    /// empty when partitions are registered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub projection: BTreeMap<String, String>,
}

impl TableDef {
    /// The table of `topic` in the lake `spec` describes (its database, file format and
    /// partition projection), at `location`, with the columns of `schema` (registry id
    /// `schema_id`) and the partition keys `dt`, `hour` and the topic's `partition_by`
    /// fields; under partition projection the table projects its partitions.
    pub fn of(
        spec: &LakeSpec,
        topic: &LakeTopic,
        location: String,
        (schema_id, schema): (u32, &Schema),
    ) -> Result<Self, CatalogError> {
        let string = |name: &str| Column {
            name: name.into(),
            r#type: "string".into(),
            comment: None,
        };
        let mut partition_keys = vec![string("dt"), string("hour")];
        partition_keys.extend(topic.partition_by.iter().map(|f| string(&partition_key(f))));
        // A table's location is a folder: Athena and Glue crawlers expect the trailing `/`.
        let location = if location.ends_with('/') {
            location
        } else {
            location + "/"
        };
        let projection = spec
            .partition_projection
            .as_ref()
            .map(|p| projection_properties(p, &location, &topic.partition_by))
            .unwrap_or_default();
        Ok(Self {
            database: spec.database.clone(),
            name: topic.table_name(),
            topic: topic.topic.clone(),
            location,
            format: spec.format_of(topic),
            schema_id,
            // The full schema, not its canonical form: that would strip logical types
            // (timestamps) and the defaults that let old files be read with new fields.
            avro_schema: serde_json::to_string(schema)
                .map_err(|e| CatalogError::Schema(e.to_string()))?,
            columns: hive::columns(schema)?,
            partition_keys,
            projection,
        })
    }

    /// Whether Athena projects the partitions (none are registered).
    pub fn projected(&self) -> bool {
        !self.projection.is_empty()
    }
}

/// Athena's partition projection properties for a table at `location`: `dt` a day from
/// `since` to today, `hour` 00 to 23, and each `partition_by` field injected (a query must
/// give its value).
fn projection_properties(
    p: &ProjectionSpec,
    location: &str,
    partition_by: &[String],
) -> BTreeMap<String, String> {
    let mut props: BTreeMap<String, String> = [
        ("projection.enabled", "true".to_string()),
        ("projection.dt.type", "date".into()),
        ("projection.dt.format", "yyyy-MM-dd".into()),
        ("projection.dt.range", format!("{},NOW", p.since)),
        ("projection.dt.interval", "1".into()),
        ("projection.dt.interval.unit", "DAYS".into()),
        ("projection.hour.type", "integer".into()),
        ("projection.hour.range", "0,23".into()),
        ("projection.hour.digits", "2".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut template = format!(
        "{}/dt=${{dt}}/hour=${{hour}}",
        location.trim_end_matches('/')
    );
    for key in partition_by.iter().map(|f| partition_key(f)) {
        props.insert(format!("projection.{key}.type"), "injected".into());
        template.push_str(&format!("/{key}=${{{key}}}"));
    }
    props.insert("storage.location.template".into(), template);
    props
}

/// One registered partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionDef {
    /// Values of the partition keys, in order.
    pub values: Vec<String>,
    /// URL of the partition's directory.
    pub location: String,
}

/// The catalog a lake sink registers its tables in.
#[derive(Debug, Clone)]
pub enum Catalog {
    /// The local catalog file of a lake.
    Local(LocalCatalog),
    /// The AWS Glue Data Catalog.
    Glue(GlueCatalog),
}

impl Catalog {
    /// Creates the table, or updates it when `table` comes from a newer schema. Returns the
    /// definition to register partitions with: `table`'s, with its columns in the order the
    /// catalog's table has them (see [`TableDef::keeping_order_of`]).
    pub async fn ensure_table(&self, table: &TableDef) -> Result<TableDef, CatalogError> {
        match self {
            Catalog::Local(c) => c.ensure_table(table).await,
            Catalog::Glue(c) => c.ensure_table(table).await,
        }
    }

    /// The definition of `table` in `database`, if the catalog has it.
    pub async fn table_def(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Option<TableDef>, CatalogError> {
        match self {
            Catalog::Local(c) => Ok(c.table(database, table).await?.map(|f| f.table)),
            Catalog::Glue(c) => c.table_def(database, table).await,
        }
    }

    /// The partition values of `table` that the catalog has registered.
    pub async fn partition_values(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Vec<Vec<String>>, CatalogError> {
        match self {
            Catalog::Local(c) => Ok(c
                .table(database, table)
                .await?
                .map(|f| f.partitions.into_iter().map(|p| p.values).collect())
                .unwrap_or_default()),
            Catalog::Glue(c) => Ok(c
                .partitions(database, table)
                .await?
                .into_iter()
                .map(|(values, _)| values)
                .collect()),
        }
    }

    /// Registers partitions of `table`; those already registered are left as they are.
    /// A table with partition projection registers none.
    pub async fn add_partitions(
        &self,
        table: &TableDef,
        partitions: &[PartitionDef],
    ) -> Result<(), CatalogError> {
        if table.projected() {
            return Ok(());
        }
        match self {
            Catalog::Local(c) => c.add_partitions(table, partitions).await,
            Catalog::Glue(c) => c.add_partitions(table, partitions).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RecordKind;

    #[test]
    fn projection_maps_every_partition_key_to_its_directory() {
        let mut spec: LakeSpec = serde_saphyr::from_str(
            "url: s3://b/lake\ndatabase: db\ntopics: [{topic: bars.1m, partition_by: [symbol]}]\npartition_projection: {since: 2026-01-01}",
        )
        .unwrap();
        let topic = spec.topics[0].clone();
        let schema = (3, RecordKind::Bar.schema());
        let location = "s3://b/lake/bars_1m".to_string();
        let def = TableDef::of(&spec, &topic, location.clone(), schema).unwrap();
        assert_eq!(
            def.location, "s3://b/lake/bars_1m/",
            "a folder, as Athena expects"
        );
        assert!(def.projected());
        let p = |k: &str| def.projection.get(k).map(String::as_str);
        assert_eq!(p("projection.dt.type"), Some("date"));
        assert_eq!(p("projection.dt.range"), Some("2026-01-01,NOW"));
        assert_eq!(p("projection.hour.range"), Some("0,23"));
        assert_eq!(p("projection.symbol_part.type"), Some("injected"));
        assert_eq!(
            p("storage.location.template"),
            Some("s3://b/lake/bars_1m/dt=${dt}/hour=${hour}/symbol_part=${symbol_part}")
        );
        let keys: Vec<&str> = def.partition_keys.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(keys, ["dt", "hour", "symbol_part"]);
        let columns: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).collect();
        assert!(
            keys.iter().all(|k| !columns.contains(k)),
            "Athena refuses a partition key named like a column"
        );
        spec.partition_projection = None;
        let registered = TableDef::of(&spec, &topic, location, schema).unwrap();
        assert!(!registered.projected() && registered.projection.is_empty());
    }
}
