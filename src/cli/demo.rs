//! `tickflow demo`: the whole job on embedded parts, from a fresh clone, with nothing else
//! running: a Kafka-protocol broker inside the process, the built-in registry, the simulator;
//! then it reads the topic back through a consumer group and shows what arrived.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::fmt_micros;
use super::simulate::{SimulateArgs, produce};
use crate::codec::registry::SchemaRegistry;
use crate::codec::{Bar, Decoder, RecordKind, RegistryClient, Tick, split_header, watermark_of};
use crate::config::TopologySpec;
use crate::config::{AppConfig, KafkaConfig};
use crate::metrics::Metrics;
use crate::source::{self, ReadUntil};
use crate::topology::runtime::{RunOptions, RunStats};

/// Flags of `tickflow demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How long to run the simulator (wall clock).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Simulator pace in ticks per second, or `unlimited`.
    #[arg(long, default_value = "50000")]
    pub rate: String,
    /// Symbols to trade (the first N of config/symbols.csv).
    #[arg(long, default_value_t = 50)]
    pub symbols: usize,
    /// Partitions of the tick topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Random seed of the simulator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Directory for the demo's files (the registry's state, the state stores).
    #[arg(long, env = "TICKFLOW_DEMO_DIR", default_value = "./tickflow-demo")]
    pub dir: PathBuf,
}

/// Runs the demo.
#[cfg(feature = "embedded-broker")]
pub async fn run(args: DemoArgs, app: AppConfig) -> anyhow::Result<()> {
    let broker = crate::broker::EmbeddedBroker::start("memory://tansu/", 0).await?;
    println!(
        "● embedded Kafka-protocol broker (Tansu) on {}",
        broker.bootstrap()
    );
    let registry = Arc::new(SchemaRegistry::open(&args.dir.join("registry"))?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let registry_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(registry.serve(listener));
    println!("● built-in schema registry on {registry_url}");
    let kafka = KafkaConfig {
        bootstrap_servers: broker.bootstrap(),
        ..app.kafka.clone()
    };
    let sim = SimulateArgs {
        topic: None,
        partitions: Some(args.partitions),
        symbols: Some(args.symbols),
        seed: Some(args.seed),
        start_time: None,
        rate: args.rate.clone(),
        count: None,
        duration: Some(args.duration),
        // A calm market: a few minutes of market time, so that there are several 1-minute
        // bars and some ticks arrive after their window closed.
        trades_per_second: Some(300.0),
        out_of_order: None,
        late: None,
        replay: None,
        metrics: false,
        end_watermark: true,
    };
    let cfg = sim.sim_config(&app.simulator);
    let registry = crate::config::RegistryConfig {
        url: registry_url.clone(),
        ..Default::default()
    };
    let summary = produce(
        &kafka,
        &registry,
        &cfg,
        sim.ticks(&cfg)?,
        sim.pace()?,
        &Metrics::new(),
    )
    .await?;
    println!(
        "● simulated {} ticks of {} symbols into {} ({} partitions) in {:.1}s, {:.0} ticks/s",
        summary.ticks,
        args.symbols,
        cfg.topic,
        args.partitions,
        summary.elapsed.as_secs_f64(),
        summary.rate()
    );
    crate::sim::end_of_input(&kafka, &cfg.topic, &summary)?;
    let with_watermarks = summary.ticks as usize + args.partitions as usize;
    let ticks = read_back(&kafka, &registry_url, &cfg.topic, with_watermarks).await?;
    let report = Readback::of(&ticks, cfg.out_of_order_bound.as_micros() as i64);
    print!("{}", report.render());
    if report.ticks != summary.ticks as usize {
        bail!(
            "read back {} ticks, produced {}",
            report.ticks,
            summary.ticks
        );
    }
    let bars = run_flagship(&args, &app, &kafka, &registry_url).await?;
    print!("{}", render_bars(&bars));
    land(&app, &kafka, &registry_url).await?;
    let venue_bars = run_venues(&args, &app, &kafka, &registry_url).await?;
    print!("{}", render_venues(&venue_bars));
    query_the_lake(&app).await?;
    server.abort();
    println!(
        "● demo files (registry, state stores) are in {}",
        args.dir.display()
    );
    Ok(())
}

/// The flagship topology, compiled in so that the demo runs from any directory.
const FLAGSHIP: &str = include_str!("../../topologies/ohlc_vwap.yaml");

/// The venue topology (filter, group_by through a repartition topic, hopping windows).
const VENUES: &str = include_str!("../../topologies/venue_vwap.yaml");

/// Runs a compiled-in topology over the simulated ticks until it is idle, with its state under
/// the demo directory.
#[cfg(feature = "embedded-broker")]
async fn run_until_idle(
    file: &str,
    text: &str,
    args: &DemoArgs,
    app: &AppConfig,
    kafka: &KafkaConfig,
    registry_url: &str,
) -> anyhow::Result<(TopologySpec, RunStats)> {
    let spec = TopologySpec::parse(file, text)?;
    let state = args.dir.join("state");
    let previous = state.join(&spec.application);
    if previous.exists() {
        std::fs::remove_dir_all(&previous)
            .with_context(|| format!("clearing {}", previous.display()))?;
    }
    let mut app = app.clone();
    app.kafka = kafka.clone();
    app.registry.url = registry_url.to_string();
    app.state.dir = state;
    let options = RunOptions {
        commit_interval: Duration::from_secs(1),
        stop_when_idle: Some(Duration::from_secs(3)),
        instance_id: None,
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stats = super::run::run_topology(&spec, &app, options, Metrics::new(), stop).await?;
    Ok((spec, stats))
}

/// Runs the flagship topology's lake sink into `./lake` until it has landed everything.
#[cfg(feature = "embedded-broker")]
async fn land(app: &AppConfig, kafka: &KafkaConfig, registry_url: &str) -> anyhow::Result<()> {
    let spec = TopologySpec::parse("topologies/ohlc_vwap.yaml", FLAGSHIP)?;
    let lake = spec
        .lake
        .as_ref()
        .context("the flagship topology has a lake")?;
    let dir = std::path::Path::new(lake.url.trim_start_matches("file://"));
    clear_demo_lake(dir)?;
    let mut app = app.clone();
    app.kafka = kafka.clone();
    app.registry.url = registry_url.to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = crate::sink::lake::LakeOptions {
        stop_when_idle: Some(Duration::from_secs(3)),
        topic_wait: super::run::LAKE_TOPIC_WAIT,
        ..Default::default()
    };
    let stats =
        crate::sink::lake::run(&spec.application, lake, &app, options, Metrics::new(), stop)
            .await
            .with_context(|| format!("landing into {}", lake.url))?;
    let tables: Vec<String> = lake
        .topics
        .iter()
        .map(|t| format!("{} ({:?})", t.table_name(), lake.format_of(t)))
        .collect();
    println!(
        "● landed {} records in {} files into {} (tables {} in the local catalog {}/_catalog/{})",
        stats.records,
        stats.files,
        dir.display(),
        tables.join(", "),
        dir.display(),
        lake.database
    );
    Ok(())
}

/// Answers a saved query from the lake the demo wrote, and reconciles its bars with its
/// raw ticks.
#[cfg(feature = "embedded-broker")]
async fn query_the_lake(app: &AppConfig) -> anyhow::Result<()> {
    let spec = TopologySpec::parse("topologies/ohlc_vwap.yaml", FLAGSHIP)?;
    let (store, catalog) = super::catalog::lake_of(&spec, app).await?;
    let (mut latest, stats) = super::query::run_sql(
        &spec,
        &store,
        &catalog,
        "queries/latest_bars.sql",
        LATEST_BARS,
        Default::default(),
    )
    .await?;
    let symbols = latest.rows.len();
    latest.rows.truncate(5);
    println!(
        "● tickflow query --file queries/latest_bars.sql (first 5 of {symbols} symbols; \
         {} of {} files read):",
        stats.files_read, stats.files_present
    );
    print!("{}", latest.render(crate::query::OutputFormat::Table));
    let report = crate::query::reconcile::reconcile(&spec, &store, &Default::default()).await?;
    println!("● tickflow reconcile:");
    print!("{}", super::query::summary(&report));
    if report.differences() > 0 {
        bail!("the demo's bars do not reconcile with its ticks");
    }
    Ok(())
}

/// The saved query the demo answers, compiled in.
#[cfg(feature = "embedded-broker")]
const LATEST_BARS: &str = include_str!("../../queries/latest_bars.sql");

/// The demo's broker starts empty, so a lake from an earlier demo would clash with the new
/// offsets: it is removed, but only if it is a tickflow lake.
/// Empties `dir` if it holds an earlier demo's lake (or nothing). The directory itself stays:
/// in the container image it is a mounted volume, which cannot be removed.
fn clear_demo_lake(dir: &std::path::Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let entries: Vec<_> = entries
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    if !entries.is_empty() && !dir.join("_catalog").exists() {
        return Err(super::usage(format!(
            "{} exists and is not a tickflow lake; move it away or run the demo elsewhere",
            dir.display()
        )));
    }
    for entry in entries {
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("clearing {}", path.display()))?;
    }
    Ok(())
}

/// Runs the flagship topology, then reads back the 1-minute bars.
#[cfg(feature = "embedded-broker")]
async fn run_flagship(
    args: &DemoArgs,
    app: &AppConfig,
    kafka: &KafkaConfig,
    registry_url: &str,
) -> anyhow::Result<Vec<Bar>> {
    let file = "topologies/ohlc_vwap.yaml";
    let (spec, stats) = run_until_idle(file, FLAGSHIP, args, app, kafka, registry_url).await?;
    println!(
        "● ran topology {} (1s/1m/5m/1h bars, RocksDB state): {} records in, {} bars out, {} late ticks to ticks.late",
        spec.application, stats.records, stats.bars, stats.late
    );
    read_bars(kafka, registry_url, "bars.1m", stats.bars as usize).await
}

/// Runs the venue topology, then reads back its bars (updates and finals).
#[cfg(feature = "embedded-broker")]
async fn run_venues(
    args: &DemoArgs,
    app: &AppConfig,
    kafka: &KafkaConfig,
    registry_url: &str,
) -> anyhow::Result<Vec<Bar>> {
    let file = "topologies/venue_vwap.yaml";
    let (spec, stats) = run_until_idle(file, VENUES, args, app, kafka, registry_url).await?;
    println!(
        "● ran topology {} (lit round lots, re-keyed by venue through {}-by_venue-repartition, 5m VWAP every 1m): {} records in, {} ticks repartitioned, {} filtered out, {} bars and updates out",
        spec.application,
        spec.application,
        stats.records,
        stats.forwarded,
        stats.filtered,
        stats.bars
    );
    let sent = stats.forwarded + stats.broadcasts;
    if stats.repartition_records != sent {
        println!(
            "  warning: {sent} records were sent to the repartition topic but {} read back (the embedded broker's memory storage)",
            stats.repartition_records
        );
    }
    read_bars(kafka, registry_url, "bars.venue.5m", stats.bars as usize).await
}

/// Reads up to `count` bars of `topic` from the beginning and decodes them.
async fn read_bars(
    kafka: &KafkaConfig,
    registry_url: &str,
    topic: &str,
    count: usize,
) -> anyhow::Result<Vec<Bar>> {
    let records = read_topic(kafka, topic, count).await?;
    let client = RegistryClient::new(registry_url)?;
    let mut decoder = Decoder::<Bar>::new(RecordKind::Bar);
    let mut bars = Vec::with_capacity(records.len());
    for bytes in records {
        let (id, _) = split_header(&bytes)?;
        if !decoder.knows(id) {
            client.teach(&mut decoder, id).await?;
        }
        bars.push(decoder.decode(&bytes)?);
    }
    Ok(bars)
}

/// The final bar of each venue's last closed window (its updates are left out).
fn render_venues(bars: &[Bar]) -> String {
    let mut last: BTreeMap<&str, &Bar> = BTreeMap::new();
    for b in bars.iter().filter(|b| b.is_final) {
        let newer = last
            .get(b.symbol.as_str())
            .is_none_or(|l| b.window_start >= l.window_start);
        if newer {
            last.insert(&b.symbol, b);
        }
    }
    let mut s = "  venue   last 5-minute window (UTC)        vwap    volume  trades  min price  max price\n".to_string();
    for (venue, b) in last {
        let extra = |k: &str| b.extras.get(k).copied().unwrap_or(f64::NAN);
        s += &format!(
            "  {venue:<6}  {}  {:>10.3}  {:>8}  {:>6}  {:>9.2}  {:>9.2}\n",
            fmt_micros(b.window_start),
            b.vwap,
            b.volume,
            b.trade_count,
            extra("min_price"),
            extra("max_price"),
        );
    }
    s
}

fn render_bars(bars: &[Bar]) -> String {
    let mut s = format!(
        "● {} one-minute bars in bars.1m; those of AAPL:\n",
        bars.len()
    );
    s += "  symbol  window start (UTC)          open      high       low     close    volume      vwap  trades\n";
    let mut aapl: Vec<&Bar> = bars.iter().filter(|b| b.symbol == "AAPL").collect();
    aapl.sort_by_key(|b| b.window_start);
    for b in aapl {
        s += &format!(
            "  {:<6}  {}  {:>8.2}  {:>8.2}  {:>8.2}  {:>8.2}  {:>8}  {:>8.3}  {:>6}\n",
            b.symbol,
            fmt_micros(b.window_start),
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.vwap,
            b.trade_count
        );
    }
    s
}

/// Reads up to `count` record values of `topic` from the beginning.
async fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    count: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let (k, t) = (kafka.clone(), topic.to_string());
    let group = format!("tickflow-demo-{}", uuid::Uuid::new_v4().simple());
    let records = tokio::task::spawn_blocking(move || {
        source::read(
            &k,
            &group,
            &[&t],
            ReadUntil::count(count, Duration::from_secs(2)),
        )
    })
    .await??;
    Ok(records.into_iter().filter_map(|r| r.value).collect())
}

/// Without the embedded broker there is nothing to run the demo on.
#[cfg(not(feature = "embedded-broker"))]
pub async fn run(_: DemoArgs, _: AppConfig) -> anyhow::Result<()> {
    Err(super::usage(
        "this build has no embedded broker (built without the `embedded-broker` feature)".into(),
    ))
}

/// Consumes `count` ticks back with a fresh consumer group and decodes them.
async fn read_back(
    kafka: &KafkaConfig,
    registry_url: &str,
    topic: &str,
    count: usize,
) -> anyhow::Result<Vec<(i32, Tick)>> {
    let (k, t) = (kafka.clone(), topic.to_string());
    let records = tokio::task::spawn_blocking(move || {
        let until = ReadUntil::count(count, Duration::from_secs(10));
        source::read(&k, "tickflow-demo-readback", &[&t], until)
    })
    .await??;
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| watermark_of(r.key.as_deref(), r.value.as_deref()).is_none())
        .collect();
    let client = RegistryClient::new(registry_url)?;
    let mut decoder = Decoder::<Tick>::new(RecordKind::Tick);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let bytes = r.value.context("a tick without a value")?;
        let (id, _) = split_header(&bytes)?;
        if !decoder.knows(id) {
            client.teach(&mut decoder, id).await?;
        }
        out.push((r.partition, decoder.decode(&bytes)?));
    }
    Ok(out)
}

/// What the read-back found.
#[derive(Debug, Default)]
struct Readback {
    ticks: usize,
    per_partition: BTreeMap<i32, usize>,
    /// Ticks behind their partition's newest event time by at most the bound.
    out_of_order: usize,
    /// Ticks behind their partition's newest event time by more than the bound.
    late: usize,
    /// Per symbol: trades, volume, first and last price.
    symbols: BTreeMap<String, (usize, i64, f64, f64)>,
    span: Option<(i64, i64)>,
}

impl Readback {
    fn of(ticks: &[(i32, Tick)], bound: i64) -> Self {
        let mut r = Readback {
            ticks: ticks.len(),
            ..Default::default()
        };
        let mut newest: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, t) in ticks {
            *r.per_partition.entry(*p).or_default() += 1;
            let max = newest.entry(*p).or_insert(i64::MIN);
            if t.event_time < max.saturating_sub(bound) {
                r.late += 1;
            } else if t.event_time < *max {
                r.out_of_order += 1;
            }
            *max = (*max).max(t.event_time);
            let s = r
                .symbols
                .entry(t.symbol.clone())
                .or_insert((0, 0, t.price, t.price));
            s.0 += 1;
            s.1 += t.size;
            s.3 = t.price;
            r.span = Some(match r.span {
                None => (t.event_time, t.event_time),
                Some((a, b)) => (a.min(t.event_time), b.max(t.event_time)),
            });
        }
        r
    }

    fn render(&self) -> String {
        let mut s = format!(
            "● read back {} ticks through a consumer group; per partition {:?}\n",
            self.ticks, self.per_partition
        );
        if let Some((a, b)) = self.span {
            s += &format!("  event time {} .. {}\n", fmt_micros(a), fmt_micros(b));
        }
        s += &format!(
            "  {} arrived out of order (within the bound), {} late (beyond it)\n",
            self.out_of_order, self.late
        );
        let mut busiest: Vec<_> = self.symbols.iter().collect();
        busiest.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        s += "  symbol   trades     volume      first       last\n";
        for (sym, (n, vol, first, last)) in busiest.into_iter().take(5) {
            s += &format!("  {sym:<6} {n:>8} {vol:>10} {first:>10.2} {last:>10.2}\n");
        }
        s
    }
}
