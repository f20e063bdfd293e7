//! `tickflow query` (SQL over the lake) and `tickflow reconcile` (the bars proven against the
//! raw ticks).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::catalog::{lake_of, open_lake};
use crate::catalog::{Catalog, GlueCatalog};
use crate::config::lake::CatalogKind;
use crate::config::{AppConfig, TopologySpec};
use crate::lake::store::LakeStore;
use crate::metrics::Metrics;
use crate::query::athena::AthenaEngine;
use crate::query::bar_table;
use crate::query::chart::{Candle, ChartSpec, render};
use crate::query::local::ScanStats;
use crate::query::reconcile::{self, ReconcileOptions, Report};
use crate::query::{LocalEngine, OutputFormat, ResultSet, saved};
use crate::topology::plan::Plan;

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
    /// Where the query runs [default: athena for an s3:// lake, else local].
    #[arg(long, value_enum)]
    pub engine: Option<EngineKind>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Also print, to stderr, how many files the scans read of how many the tables hold.
    #[arg(long)]
    pub stats: bool,
    /// After an Athena query, succeeded or not, write its metrics (`tickflow_athena_*`) to
    /// this file in Prometheus' text format, for node_exporter's textfile collector (e.g.
    /// `/var/lib/node_exporter/textfile/tickflow_query.prom`).
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
}

/// The SQL engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// The embedded engine (DataFusion) over the lake's files.
    Local,
    /// Amazon Athena, over the tables in the Glue Data Catalog.
    Athena,
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

/// Flags of `tickflow chart`.
#[derive(Debug, Clone, Args)]
pub struct ChartArgs {
    /// The symbol (the bars' key).
    #[arg(long, short = 's')]
    pub symbol: String,
    /// Bar resolution, e.g. `1m`.
    #[arg(long, short = 'r', default_value = "1m")]
    pub resolution: String,
    /// Only bars starting at or after this time (RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]`, UTC).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,
    /// Only bars starting before this time.
    #[arg(long, value_parser = parse_time)]
    pub to: Option<i64>,
    /// The file to write: `.svg` or `.png`.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Width x height in pixels.
    #[arg(long, default_value = "1200x700", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Topology whose lake holds the bars.
    #[arg(long, short = 't', default_value = DEFAULT_TOPOLOGY)]
    pub topology: PathBuf,
}

/// Runs `tickflow query`.
pub async fn run(args: QueryArgs, app: AppConfig) -> anyhow::Result<()> {
    let result = answer(&args, &app).await?;
    print!("{}", result.render(args.format));
    Ok(())
}

/// The answer to `args`' query, on the engine it names.
pub async fn answer(args: &QueryArgs, app: &AppConfig) -> anyhow::Result<ResultSet> {
    let spec = TopologySpec::load(&args.topology)?;
    let lake = spec.lake.as_ref().ok_or_else(|| {
        super::usage(format!(
            "{}: the topology has no `lake:` section",
            args.topology.display()
        ))
    })?;
    let (origin, text) = match (&args.file, &args.sql) {
        (Some(path), _) => (path.display().to_string(), saved::load(path)?),
        (None, Some(sql)) => ("the query".to_string(), sql.clone()),
        (None, None) => return Err(super::usage("give the SQL or --file".into())),
    };
    let params: BTreeMap<String, String> = args.params.iter().cloned().collect();
    let engine = args.engine.unwrap_or(if lake.url.starts_with("s3://") {
        EngineKind::Athena
    } else {
        EngineKind::Local
    });
    if engine == EngineKind::Athena {
        if lake.catalog_kind() != CatalogKind::Glue {
            return Err(super::usage(
                "Athena reads the Glue Data Catalog, and this lake's catalog is local: use --engine local"
                    .into(),
            ));
        }
        let catalog = Catalog::Glue(GlueCatalog::connect(&app.aws).await?);
        let store = LakeStore::open(&lake.url, &app.aws).await?;
        let sql = bind(&spec, &catalog, &store, &origin, &text, params).await?;
        let metrics = Metrics::new();
        let athena = AthenaEngine::connect(&app.aws, &app.athena, metrics.clone()).await;
        let answered = athena.query(&lake.database, &sql).await;
        if let Some(path) = &args.metrics_file {
            metrics
                .write_athena_textfile(path)
                .with_context(|| format!("writing the query's metrics to {}", path.display()))?;
        }
        let (result, stats) = answered.with_context(|| format!("running {origin} on Athena"))?;
        eprintln!(
            "athena query {}: {:.1} MB scanned, about ${:.5} (at ${}/TB, 10 MB minimum); engine time {} ms",
            stats.query_id,
            stats.data_scanned as f64 / 1e6,
            stats.cost_usd,
            app.athena.price_per_tb,
            stats.engine_millis
        );
        return Ok(result);
    }
    let (store, catalog) = lake_of(&spec, app).await?;
    let (result, stats) = run_sql(&spec, &store, &catalog, &origin, &text, params).await?;
    if args.stats {
        eprintln!(
            "files read: {} of {} in the tables scanned",
            stats.files_read, stats.files_present
        );
    }
    Ok(result)
}

/// `text` with its placeholders bound from `params`; `day` defaults to the newest `dt`
/// partition of the tables `text` names, in the catalog, or in the lake (tables with
/// partition projection).
async fn bind(
    spec: &TopologySpec,
    catalog: &Catalog,
    store: &LakeStore,
    origin: &str,
    text: &str,
    mut params: BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let lake = spec.lake.as_ref().context("the topology has no lake")?;
    let tables: Vec<String> = lake.topics.iter().map(|t| t.table_name()).collect();
    if !params.contains_key("day")
        && saved::placeholders(text).iter().any(|p| p == "day")
        && let Some(day) = saved::newest_day(
            catalog,
            store,
            &lake.database,
            &saved::tables_read(text, &tables),
        )
        .await?
    {
        params.insert("day".into(), day);
    }
    Ok(saved::bind(origin, text, &params)?)
}

/// Runs `text` (from `origin`, for messages) over `spec`'s lake on the embedded engine, with
/// its placeholders bound from `params`.
pub async fn run_sql(
    spec: &TopologySpec,
    store: &LakeStore,
    catalog: &Catalog,
    origin: &str,
    text: &str,
    params: BTreeMap<String, String>,
) -> anyhow::Result<(ResultSet, ScanStats)> {
    let lake = spec.lake.as_ref().context("the topology has no lake")?;
    let tables: Vec<String> = lake.topics.iter().map(|t| t.table_name()).collect();
    let sql = bind(spec, catalog, store, origin, text, params).await?;
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
    if report.updates > 0 {
        out += &format!(
            "update bars left out (is_final false): {}\n",
            report.updates
        );
    }
    out += &format!(
        "bars differing: {}, missing: {}, unexpected: {}, landed twice with different values: {}\n",
        report.differing.len(),
        report.missing.len(),
        report.unexpected.len(),
        report.duplicates.len()
    );
    let copies: u64 = report.identical_duplicates.iter().map(|(_, n)| n).sum();
    out += &format!(
        "identical duplicates: {copies} extra row(s) of {} bar(s); symbols whose volume or trade count sums differ from the raw ticks: {}\n",
        report.identical_duplicates.len(),
        report.sums.len()
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
    for (id, n) in report.identical_duplicates.iter().take(10) {
        out += &format!("  landed {} times: {}\n", n + 1, name(id));
    }
    for s in report.sums.iter().take(10) {
        out += &format!(
            "  sums of {} {}: volume {} (raw ticks {}), trade count {} (raw ticks {})\n",
            s.symbol, s.resolution, s.landed.0, s.expected.0, s.landed.1, s.expected.1
        );
    }
    out += if report.differences() == 0 {
        "verdict: every bar reconciles with the raw ticks\n"
    } else {
        "verdict: DIFFERENCES FOUND\n"
    };
    out
}

/// Runs `tickflow chart`: reads the bars from the lake and draws them.
pub async fn chart(args: ChartArgs, app: AppConfig) -> anyhow::Result<()> {
    let (spec, store, catalog) = open_lake(&args.topology, &app).await?;
    let lake = spec.lake.as_ref().expect("checked by open_lake");
    let plan = Plan::of(&spec)?;
    let table = bar_table(&plan, lake, &args.resolution)?;
    let bar_micros = plan
        .defs
        .iter()
        .find(|d| d.name == args.resolution)
        .map_or(0, |d| d.size);
    if args.symbol.contains(['\'', '"', ';']) {
        return Err(super::usage(format!("`{}` is not a symbol", args.symbol)));
    }
    let mut sql = format!(
        "SELECT window_start, open, high, low, close, volume FROM {table} WHERE symbol = '{}' AND coalesce(is_final, true)",
        args.symbol
    );
    let day = |t: i64| super::fmt_micros(t)[..10].to_string();
    if let Some(from) = args.from {
        sql += &format!(
            " AND dt >= '{}' AND window_start >= {}",
            day(from),
            timestamp(from)
        );
    }
    if let Some(to) = args.to {
        sql += &format!(
            " AND dt <= '{}' AND window_start < {}",
            day(to),
            timestamp(to)
        );
    }
    sql += " ORDER BY window_start";
    let (rows, _) = run_sql(
        &spec,
        &store,
        &catalog,
        "the chart",
        &sql,
        Default::default(),
    )
    .await?;
    let candles = candles(&rows)?;
    let title = format!("{} {} bars (UTC)", args.symbol, args.resolution);
    let chart = ChartSpec {
        title: &title,
        bar_micros,
        size: args.size,
    };
    render(&args.output, &chart, &candles)?;
    println!(
        "drew {} {} bars of {} into {}",
        candles.len(),
        args.resolution,
        args.symbol,
        args.output.display()
    );
    Ok(())
}

/// A timestamp literal both engines read.
fn timestamp(micros: i64) -> String {
    format!(
        "TIMESTAMP '{}'",
        chrono::DateTime::from_timestamp_micros(micros)
            .unwrap_or_default()
            .format("%Y-%m-%d %H:%M:%S%.6f")
    )
}

/// The chart's bars from the rows of its query.
fn candles(rows: &ResultSet) -> anyhow::Result<Vec<Candle>> {
    let number = |v: &Option<String>| -> anyhow::Result<f64> {
        Ok(v.as_deref().context("a NULL in a bar")?.parse()?)
    };
    rows.rows
        .iter()
        .map(|r| {
            let start = chrono::NaiveDateTime::parse_from_str(
                r[0].as_deref().context("a bar without a start")?,
                "%Y-%m-%d %H:%M:%S%.f",
            )?;
            Ok(Candle {
                start: start.and_utc().timestamp_micros(),
                open: number(&r[1])?,
                high: number(&r[2])?,
                low: number(&r[3])?,
                close: number(&r[4])?,
                volume: number(&r[5])? as i64,
            })
        })
        .collect()
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    text.split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .filter(|(w, h)| (200..=8000).contains(w) && (150..=8000).contains(h))
        .ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT (200x150 to 8000x8000)"))
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
