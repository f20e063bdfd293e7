//! The local catalog: one JSON file per table in the lake itself,
//! `_catalog/<database>/<table>.json`, holding the same definition a Glue table would have
//! and its registered partitions. The embedded query engine reads it. One sink process
//! writes a table's file at a time (the lake sink of one application).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{CatalogError, PartitionDef, TableDef};
use crate::lake::store::LakeStore;

/// A table's catalog file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableFile {
    /// The table.
    pub table: TableDef,
    /// Its registered partitions.
    pub partitions: BTreeSet<PartitionDef>,
}

/// The local catalog of a lake.
#[derive(Debug, Clone)]
pub struct LocalCatalog {
    store: LakeStore,
}

impl LocalCatalog {
    /// The catalog kept in `store`.
    pub fn new(store: LakeStore) -> Self {
        Self { store }
    }

    fn path(database: &str, table: &str) -> String {
        format!("_catalog/{database}/{table}.json")
    }

    /// The catalog file of `table` in `database`, if the table exists.
    pub async fn table(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Option<TableFile>, CatalogError> {
        let path = Self::path(database, table);
        let Some(bytes) = self.store.get_opt(&path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CatalogError::Corrupt {
                path: self.store.location(&path),
                source: e.into(),
            })
    }

    /// Every table of `database`.
    pub async fn tables(&self, database: &str) -> Result<Vec<TableFile>, CatalogError> {
        let mut out = Vec::new();
        for name in self
            .store
            .list_names(&format!("_catalog/{database}"))
            .await?
        {
            if let Some(table) = name.strip_suffix(".json")
                && let Some(t) = self.table(database, table).await?
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn save(&self, file: &TableFile) -> Result<(), CatalogError> {
        let bytes = serde_json::to_vec_pretty(file).expect("serializable");
        let path = Self::path(&file.table.database, &file.table.name);
        Ok(self.store.put(&path, bytes).await?)
    }

    /// Creates the table, or updates its definition when `table` has a newer schema; returns
    /// `table` with the columns in the table's order.
    pub async fn ensure_table(&self, table: &TableDef) -> Result<TableDef, CatalogError> {
        match self.table(&table.database, &table.name).await? {
            Some(mut f) => {
                let (table, write) = table.replacing(&f.table)?;
                if write {
                    f.table = table.clone();
                    self.save(&f).await?;
                }
                Ok(table)
            }
            None => {
                let file = TableFile {
                    table: table.clone(),
                    partitions: BTreeSet::new(),
                };
                self.save(&file).await?;
                Ok(table.clone())
            }
        }
    }

    /// Adds partitions the table does not have yet.
    pub async fn add_partitions(
        &self,
        table: &TableDef,
        partitions: &[PartitionDef],
    ) -> Result<(), CatalogError> {
        let mut file = match self.table(&table.database, &table.name).await? {
            Some(f) => f,
            None => TableFile {
                table: table.clone(),
                partitions: BTreeSet::new(),
            },
        };
        let before = file.partitions.len();
        file.partitions.extend(partitions.iter().cloned());
        if file.partitions.len() == before {
            return Ok(());
        }
        self.save(&file).await
    }
}
