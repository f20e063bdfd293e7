//! `tickflow catalog`: the lake's tables in the catalog.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::catalog::{Catalog, GlueCatalog, LocalCatalog, sync};
use crate::config::lake::CatalogKind;
use crate::config::{AppConfig, TopologySpec};
use crate::lake::store::LakeStore;

/// Flags of `tickflow catalog`.
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// Catalog subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CatalogCommand {
    /// Create or repair the tables of a topology's lake from its files, and register every
    /// partition that holds files.
    Sync {
        /// Topology YAML file with a `lake:` section.
        #[arg(long, short = 't')]
        topology: PathBuf,
    },
}

/// Runs `tickflow catalog`.
pub async fn run(args: CatalogArgs, app: AppConfig) -> anyhow::Result<()> {
    let CatalogCommand::Sync { topology } = args.command;
    let (spec, store, catalog) = open_lake(&topology, &app).await?;
    let lake = spec.lake.as_ref().expect("checked by open_lake");
    for t in sync::sync(lake, &store, &catalog).await? {
        match t.schema_id {
            Some(id) => println!(
                "{}.{}: {} files in {} partitions, all registered (schema id {id})",
                lake.database, t.table, t.files, t.partitions
            ),
            None => println!("{}.{}: no files yet", lake.database, t.table),
        }
    }
    Ok(())
}

/// The topology in `path`, its lake's store (checked to be reachable) and its catalog.
pub async fn open_lake(
    path: &Path,
    app: &AppConfig,
) -> anyhow::Result<(TopologySpec, LakeStore, Catalog)> {
    let spec = TopologySpec::load(path)?;
    let (store, catalog) = lake_of(&spec, app)
        .await
        .with_context(|| format!("{}", path.display()))?;
    Ok((spec, store, catalog))
}

/// The store (checked to be reachable) and catalog of `spec`'s lake.
pub async fn lake_of(spec: &TopologySpec, app: &AppConfig) -> anyhow::Result<(LakeStore, Catalog)> {
    let lake = spec
        .lake
        .as_ref()
        .ok_or_else(|| super::usage("the topology has no `lake:` section".into()))?;
    let store = LakeStore::open(&lake.url, &app.aws).await?;
    store.check().await?;
    let catalog = match lake.catalog_kind() {
        CatalogKind::Local => Catalog::Local(LocalCatalog::new(store.clone())),
        CatalogKind::Glue => Catalog::Glue(GlueCatalog::connect(&app.aws).await?),
    };
    Ok((store, catalog))
}
