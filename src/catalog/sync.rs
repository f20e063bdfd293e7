//! `tickflow catalog sync`: creates or repairs each landed topic's table from the files in
//! the lake, and registers every partition that holds files of the lake's format. The files
//! carry what it needs: their Avro schema and its registry id (`tickflow.schema_id`), so no
//! registry is consulted. Registering is idempotent, so it can run at any time, also next to a sink.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::Schema;

use super::{Catalog, CatalogError, PartitionDef, TableDef};
use crate::config::lake::{LakeFormat, LakeSpec};
use crate::lake::file_info;
use crate::lake::layout::decoded;
use crate::lake::store::LakeStore;

/// What `sync` found and registered for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSync {
    /// Table name.
    pub table: String,
    /// Files found.
    pub files: usize,
    /// Partitions holding files (all registered).
    pub partitions: usize,
    /// Registry id of the schema the table now has, if it has files.
    pub schema_id: Option<u32>,
}

/// Creates or repairs every table of `spec` in `catalog` from the files in `store`.
pub async fn sync(
    spec: &LakeSpec,
    store: &LakeStore,
    catalog: &Catalog,
) -> Result<Vec<TableSync>, CatalogError> {
    let mut out = Vec::new();
    for topic in &spec.topics {
        let table = topic.table_name();
        let files: Vec<String> = store
            .list_all(&format!("{table}/"))
            .await?
            .into_iter()
            .filter(|p| LakeFormat::of_path(p) == Some(spec.format_of(topic)))
            .collect();
        // The newest file (highest first offset in its name) of each partition directory.
        let mut newest: BTreeMap<String, String> = BTreeMap::new();
        for path in &files {
            let (dir, _) = path.rsplit_once('/').unwrap_or(("", path));
            let entry = newest.entry(dir.to_string()).or_default();
            if path.as_str() > entry.as_str() {
                *entry = path.clone();
            }
        }
        let mut best: Option<(u32, Schema)> = None;
        for path in newest.values() {
            let (id, schema) = file_schema(store, path).await?;
            if best.as_ref().is_none_or(|(b, _)| id > *b) {
                best = Some((id, schema));
            }
        }
        let Some((schema_id, schema)) = best else {
            out.push(TableSync {
                table,
                files: 0,
                partitions: 0,
                schema_id: None,
            });
            continue;
        };
        let location = store.location(&table);
        let def = TableDef::of(spec, topic, location, (schema_id, &schema))?;
        let def = catalog.ensure_table(&def).await?;
        let partitions: BTreeSet<PartitionDef> = newest
            .keys()
            .filter_map(|dir| partition_of(&table, dir, store))
            .collect();
        let partitions: Vec<PartitionDef> = partitions.into_iter().collect();
        catalog.add_partitions(&def, &partitions).await?;
        out.push(TableSync {
            table,
            files: files.len(),
            partitions: partitions.len(),
            schema_id: Some(schema_id),
        });
    }
    Ok(out)
}

/// The schema and schema id a lake file was written with.
async fn file_schema(store: &LakeStore, path: &str) -> Result<(u32, Schema), CatalogError> {
    let bytes = store.get(path).await?;
    let info = file_info(path, &bytes).map_err(|e| CatalogError::Corrupt {
        path: store.location(path),
        source: e.into(),
    })?;
    Ok((info.schema_id, info.schema))
}

/// The partition of directory `dir` (`<table>/k=v/k=v`), if it is one; its values decoded,
/// as the sink registers them.
fn partition_of(table: &str, dir: &str, store: &LakeStore) -> Option<PartitionDef> {
    let rest = dir.strip_prefix(&format!("{table}/"))?;
    let values: Option<Vec<String>> = rest
        .split('/')
        .map(|kv| kv.split_once('=').map(|(_, v)| decoded(v)))
        .collect();
    Some(PartitionDef {
        values: values?,
        location: store.location(dir),
    })
}
