//! `tickflow query` (SQL over the lake) and `tickflow reconcile` (the bars proven against the
//! raw ticks).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::catalog::open_lake;
use crate::catalog::Catalog;
use crate::config::{AppConfig, TopologySpec};
use crate::query::local::ScanStats;
use crate::query::reconcile::{self, ReconcileOptions, Report};
use crate::query::{LocalEngine, OutputFormat, ResultSet, saved};
use crate::sink::lake::store::LakeStore;

/// The topology the lake commands read by default: the flagship job's, which the demo runs.
pub const DEFAULT_TOPOLOGY: &str = "topologies/ohlc_vwap.yaml";

/// Flags of `tickflow query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The SQL to run (or use --file).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub sql: Option<String>,
    /// A file of SQL to run, e.g. one of the saved queries in `queries/`.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Topology whose `lake:` section names the lake, its database and tables.
    #[arg(long, short = 't', default_value = DEFAULT_TOPOLOGY)]
    pub topology: PathBuf,
    /// A value for a `{{name}}` placeholder, as name=value (repeatable). `day` defaults to
    /// the newest `dt` partition in the catalog.
    #[arg(long = "param", short = 'p', value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Also print, to stderr, how many files the scans read of how many the tables hold.
    #[arg(long)]
    pub stats: bool,
}

/// Flags of `tickflow reconcile`.
#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// Topology whose rules (windows, grace, checks) and lake are reconciled.
    #[arg(long, short = 't', default_value = DEFAULT_TOPOLOGY)]
    pub topology: PathBuf,
    /// Only windows starting at or after this time (RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]`, UTC).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,
    /// Only windows starting before this time.
    #[arg(long, value_parser = parse_time)]
    pub to: Option<i64>,
    /// Only this resolution (repeatable), e.g. `1m`.
    #[arg(long = "resolution", short = 'r')]
    pub resolutions: Vec<String>,
}

/// Runs `tickflow query`.
pub async fn run(args: QueryArgs, app: AppConfig) -> anyhow::Result<()> {
    let result = answer(&args, &app).await?;
    print!("{}", result.render(args.format));
    Ok(())
}

/// The answer to `args`' query on the embedded engine.
pub async fn answer(args: &QueryArgs, app: &AppConfig) -> anyhow::Result<ResultSet> {
    let (spec, store, catalog) = open_lake(&args.topology, app).await?;
    let (origin, text) = match (&args.file, &args.sql) {
        (Some(path), _) => (path.display().to_string(), saved::load(path)?),
        (None, Some(sql)) => ("the query".to_string(), sql.clone()),
        (None, None) => bail!("give the SQL or --file"),
    };
    let params: BTreeMap<String, String> = args.params.iter().cloned().collect();
    let (result, stats) = run_sql(&spec, &store, &catalog, &origin, &text, params).await?;
    if args.stats {
        eprintln!(
            "files read: {} of {} in the tables scanned",
            stats.files_read, stats.files_present
        );
    }
    Ok(result)
}

/// Runs `text` (from `origin`, for messages) over `spec`'s lake with its placeholders bound
/// from `params`; `day` defaults to the newest `dt` partition in the catalog.
pub async fn run_sql(
    spec: &TopologySpec,
    store: &LakeStore,
    catalog: &Catalog,
    origin: &str,
    text: &str,
    mut params: BTreeMap<String, String>,
) -> anyhow::Result<(ResultSet, ScanStats)> {
    let lake = spec.lake.as_ref().context("the topology has no lake")?;
    let tables: Vec<String> = lake.topics.iter().map(|t| t.table_name()).collect();
    if !params.contains_key("day")
        && saved::placeholders(text).iter().any(|p| p == "day")
        && let Some(day) = saved::newest_day(catalog, &lake.database, &tables).await?
    {
        params.insert("day".into(), day);
    }
    let sql = saved::bind(origin, text, &params)?;
    let engine = LocalEngine::open(store, catalog, &lake.database, &tables).await?;
    engine
        .query_with_stats(&sql)
        .await
        .with_context(|| format!("running {origin}"))
}

/// Runs `tickflow reconcile`; fails (exit code 1) when any bar differs.
pub async fn reconcile(args: ReconcileArgs, app: AppConfig) -> anyhow::Result<()> {
    let report = verdict(&args, &app).await?;
    print!("{}", summary(&report));
    if report.differences() > 0 {
        bail!("{} bar(s) do not reconcile", report.differences());
    }
    Ok(())
}

/// Reconciles the lake of `args`' topology.
pub async fn verdict(args: &ReconcileArgs, app: &AppConfig) -> anyhow::Result<Report> {
    let (spec, store, _) = open_lake(&args.topology, app).await?;
    let options = ReconcileOptions {
        from: args.from,
        to: args.to,
        resolutions: args.resolutions.clone(),
    };
    Ok(reconcile::reconcile(&spec, &store, &options).await?)
}

/// The report as the user reads it.
pub fn summary(report: &Report) -> String {
    let mut out = format!(
        "ticks read: {} ({} refused by the checks, {} late (tick, resolution) pairs)\n",
        report.ticks, report.rejected, report.late
    );
    let checked: u64 = report.checked.values().sum();
    let per: Vec<String> = report
        .checked
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    out += &format!("bars checked: {checked} ({})\n", per.join(", "));
    out += &format!(
        "bars differing: {}, missing: {}, unexpected: {}, landed twice with different values: {}\n",
        report.differing.len(),
        report.missing.len(),
        report.unexpected.len(),
        report.duplicates.len()
    );
    for (field, n) in report.by_field() {
        out += &format!("  {field}: {n} bar(s)\n");
    }
    let name = |id: &reconcile::BarId| format!("{} {} {}", id.0, id.1, super::fmt_micros(id.2));
    for (id, fields) in report.differing.iter().take(10) {
        out += &format!("  differs: {} ({})\n", name(id), fields.join(", "));
    }
    for id in report.missing.iter().take(10) {
        out += &format!("  missing: {}\n", name(id));
    }
    for id in report.unexpected.iter().take(10) {
        out += &format!("  unexpected: {}\n", name(id));
    }
    out += if report.differences() == 0 {
        "verdict: every bar reconciles with the raw ticks\n"
    } else {
        "verdict: DIFFERENCES FOUND\n"
    };
    out
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not name=value"))
}

fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| {
            d.and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .timestamp_micros()
        })
        .map_err(|_| format!("`{text}` is not a time (RFC 3339 or YYYY-MM-DD[ HH:MM[:SS]], UTC)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_utc() {
        let want = 1_741_012_200_000_000; // 2025-03-03T14:30:00Z
        assert_eq!(parse_time("2025-03-03T14:30:00Z"), Ok(want));
        assert_eq!(parse_time("2025-03-03 14:30"), Ok(want));
        assert_eq!(
            parse_time("2025-03-03 09:30:00"),
            Ok(want - 5 * 3_600_000_000)
        );
        assert!(parse_time("yesterday").is_err());
    }
}
