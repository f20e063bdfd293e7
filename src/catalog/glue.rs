//! The AWS Glue Data Catalog: a database, one external table per landed topic (Avro files
//! through `AvroSerDe` with `avro.schema.literal`, so Athena reads them as they are; Parquet
//! files through `ParquetHiveSerDe`), and its partitions, registered in batches. Credentials and region come from the standard AWS chain
//! (environment, profile, EC2 instance role); throttling and 5xx answers are retried by the
//! SDK with exponential backoff.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_glue::Client;
use aws_sdk_glue::config::retry::RetryConfig;
use aws_sdk_glue::error::DisplayErrorContext;
use aws_sdk_glue::types::{
    Column as GlueColumn, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
};

use super::{CatalogError, Column, PartitionDef, TableDef};
use crate::config::AwsConfig;
use crate::config::lake::LakeFormat;
use crate::error::BoxError;

/// Hive's input format, output format and SerDe of a file format.
struct HiveFormat {
    input: &'static str,
    output: &'static str,
    serde: &'static str,
    /// The table's `classification` (what Glue crawlers would call it).
    classification: &'static str,
}

const AVRO: HiveFormat = HiveFormat {
    input: "org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat",
    output: "org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat",
    serde: "org.apache.hadoop.hive.serde2.avro.AvroSerDe",
    classification: "avro",
};

const PARQUET: HiveFormat = HiveFormat {
    input: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    output: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    serde: "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    classification: "parquet",
};

fn hive_format(format: LakeFormat) -> &'static HiveFormat {
    match format {
        LakeFormat::Avro => &AVRO,
        LakeFormat::Parquet => &PARQUET,
    }
}
/// Table parameter holding the registry id of the table's schema.
const SCHEMA_ID: &str = "tickflow.schema_id";
/// Most partitions in one `BatchCreatePartition` call (Glue's limit).
const BATCH: usize = 100;

/// A Glue Data Catalog client.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: Client,
}

fn err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> CatalogError {
    CatalogError::Glue {
        what: what.into(),
        source: Box::new(e),
    }
}

/// An AWS SDK error (Glue's, Athena's) with its causes and details, as the SDKs print them.
pub(crate) fn in_full(e: &BoxError) -> String {
    DisplayErrorContext(&**e).to_string()
}

impl GlueCatalog {
    /// A client for the region and endpoint of `aws`, with up to 10 attempts per call.
    pub async fn connect(aws: &AwsConfig) -> Result<Self, CatalogError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(aws.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(10));
        if let Some(endpoint) = &aws.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        Ok(Self {
            client: Client::new(&config),
        })
    }

    /// Creates `database` unless it exists.
    pub async fn ensure_database(&self, database: &str) -> Result<(), CatalogError> {
        let input = DatabaseInput::builder()
            .name(database)
            .description("Tables landed by tickflow")
            .build()
            .map_err(|e| err("database input", e))?;
        match self
            .client
            .create_database()
            .database_input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(err(&format!("create database {database}"), e)),
        }
    }

    /// The Glue table `database.table`, if it exists.
    async fn get_table(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Option<aws_sdk_glue::types::Table>, CatalogError> {
        let got = self
            .client
            .get_table()
            .database_name(database)
            .name(table)
            .send()
            .await;
        match got {
            Ok(out) => Ok(out.table),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(err(&format!("get table {database}.{table}"), e)),
        }
    }

    /// Creates the table, or updates it when `table` has a newer schema than the catalog's;
    /// returns `table` with the columns in the table's order.
    pub async fn ensure_table(&self, table: &TableDef) -> Result<TableDef, CatalogError> {
        self.ensure_database(&table.database).await?;
        let existing = self.get_table(&table.database, &table.name).await?;
        let Some(existing) = existing else {
            return match self
                .client
                .create_table()
                .database_name(&table.database)
                .table_input(table_input(table)?)
                .send()
                .await
            {
                Ok(_) => Ok(table.clone()),
                // Created meanwhile by another sink: it is there, which is what we wanted;
                // its column order is the one to keep.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
                {
                    match self.get_table(&table.database, &table.name).await? {
                        Some(t) => table.keeping_order_of(&def_of(&table.database, &t)),
                        None => Ok(table.clone()),
                    }
                }
                Err(e) => Err(err(&format!("create table {}", table.name), e)),
            };
        };
        let (table, write) = table.replacing(&def_of(&table.database, &existing))?;
        if !write {
            return Ok(table);
        }
        self.client
            .update_table()
            .database_name(&table.database)
            .table_input(table_input(&table)?)
            .send()
            .await
            .map_err(|e| err(&format!("update table {}", table.name), e))?;
        Ok(table)
    }

    /// Registers partitions in batches; one that exists already is success.
    pub async fn add_partitions(
        &self,
        table: &TableDef,
        partitions: &[PartitionDef],
    ) -> Result<(), CatalogError> {
        for chunk in partitions.chunks(BATCH) {
            let inputs: Vec<PartitionInput> = chunk
                .iter()
                .map(|p| {
                    PartitionInput::builder()
                        .set_values(Some(p.values.clone()))
                        .storage_descriptor(storage(table, &p.location))
                        .build()
                })
                .collect();
            let out = self
                .client
                .batch_create_partition()
                .database_name(&table.database)
                .table_name(&table.name)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|e| err(&format!("register partitions of {}", table.name), e))?;
            for failure in out.errors() {
                let code = failure
                    .error_detail()
                    .and_then(|d| d.error_code())
                    .unwrap_or("");
                if code != "AlreadyExistsException" {
                    let message = failure.error_detail().and_then(|d| d.error_message());
                    return Err(CatalogError::Store(format!(
                        "glue register partition {:?} of {}: {code} {}",
                        failure.partition_values(),
                        table.name,
                        message.unwrap_or_default()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The partition value lists of `table` (every page).
    pub async fn partitions(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Vec<(Vec<String>, String)>, CatalogError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .get_partitions()
            .database_name(database)
            .table_name(table)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| err(&format!("get partitions of {table}"), e))?;
            for p in page.partitions() {
                let location = p
                    .storage_descriptor()
                    .and_then(|s| s.location())
                    .unwrap_or_default()
                    .to_string();
                out.push((p.values().to_vec(), location));
            }
        }
        Ok(out)
    }

    /// The full definition of `table`, as tickflow registered it, if it exists.
    pub async fn table_def(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Option<TableDef>, CatalogError> {
        Ok(self
            .get_table(database, table)
            .await?
            .map(|t| def_of(database, &t)))
    }
}

/// The definition of the Glue table `t` of `database`, as tickflow registered it.
fn def_of(database: &str, t: &aws_sdk_glue::types::Table) -> TableDef {
    let param = |k: &str| {
        t.parameters()
            .and_then(|p| p.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let columns = |cols: &[GlueColumn]| -> Vec<Column> {
        cols.iter()
            .map(|c| Column {
                name: c.name().to_string(),
                r#type: c.r#type().unwrap_or_default().to_string(),
                comment: c.comment().map(str::to_string),
            })
            .collect()
    };
    let storage = t.storage_descriptor();
    TableDef {
        database: database.into(),
        name: t.name().to_string(),
        topic: param("tickflow.topic"),
        location: storage
            .and_then(|s| s.location())
            .unwrap_or_default()
            .to_string(),
        format: format_of(t),
        schema_id: param(SCHEMA_ID).parse().unwrap_or(0),
        avro_schema: param("avro.schema.literal"),
        columns: columns(storage.map(|s| s.columns()).unwrap_or_default()),
        partition_keys: columns(t.partition_keys()),
        projection: projection_of(t),
    }
}

/// The file format of a Glue table, by its SerDe.
fn format_of(t: &aws_sdk_glue::types::Table) -> LakeFormat {
    let serde = t
        .storage_descriptor()
        .and_then(|s| s.serde_info())
        .and_then(|s| s.serialization_library());
    if serde == Some(PARQUET.serde) {
        LakeFormat::Parquet
    } else {
        LakeFormat::Avro
    }
}

/// The partition projection properties of a Glue table.
fn projection_of(t: &aws_sdk_glue::types::Table) -> BTreeMap<String, String> {
    t.parameters()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("projection.") || *k == "storage.location.template")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn glue_column(c: &Column) -> Result<GlueColumn, CatalogError> {
    GlueColumn::builder()
        .name(&c.name)
        .r#type(&c.r#type)
        .set_comment(c.comment.as_ref().map(|s| s.chars().take(255).collect()))
        .build()
        .map_err(|e| err("column", e))
}

fn storage(table: &TableDef, location: &str) -> StorageDescriptor {
    let columns: Vec<GlueColumn> = table
        .columns
        .iter()
        .filter_map(|c| glue_column(c).ok())
        .collect();
    let hive = hive_format(table.format);
    let mut serde = SerDeInfo::builder().serialization_library(hive.serde);
    if table.format == LakeFormat::Avro {
        serde = serde.parameters("avro.schema.literal", &table.avro_schema);
    }
    StorageDescriptor::builder()
        .set_columns(Some(columns))
        .location(location)
        .input_format(hive.input)
        .output_format(hive.output)
        .serde_info(serde.build())
        .build()
}

fn table_input(table: &TableDef) -> Result<TableInput, CatalogError> {
    let partition_keys = table
        .partition_keys
        .iter()
        .map(glue_column)
        .collect::<Result<Vec<_>, _>>()?;
    let parameters: HashMap<String, String> = [
        ("classification", hive_format(table.format).classification),
        ("EXTERNAL", "TRUE"),
        ("avro.schema.literal", table.avro_schema.as_str()),
        ("tickflow.topic", table.topic.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(SCHEMA_ID.to_string(), table.schema_id.to_string())])
    .chain(table.projection.clone())
    .collect();
    TableInput::builder()
        .name(&table.name)
        .description(format!(
            "Records of Kafka topic {}, landed by tickflow",
            table.topic
        ))
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(parameters))
        .set_partition_keys(Some(partition_keys))
        .storage_descriptor(storage(table, &table.location))
        .build()
        .map_err(|e| err("table input", e))
}
