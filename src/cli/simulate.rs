//! `tickflow simulate`: produce a simulated market (or a CSV replay) to Kafka.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::codec::{Encoder, RecordKind, RegistryClient, Tick};
use crate::config::{AppConfig, KafkaConfig, RegistryConfig};
use crate::kafka;
use crate::kafka::KafkaSink;
use crate::metrics::Metrics;
use crate::sim::{self, Pace, RunSummary, Session, SimConfig, TickStream};

/// Flags of `tickflow simulate`; unset ones come from the `simulator` section of the config.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Topic to produce to (created if missing).
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of the topic when it is created.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Trade the first N symbols of the universe (0 = all).
    #[arg(long)]
    pub symbols: Option<usize>,
    /// Random seed; with a fixed --start-time the tick sequence is identical byte for byte.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Market start time (RFC 3339) [default: the open of the last session that has closed,
    /// so that event times lie in the past: the engine refuses ticks from the future].
    #[arg(long)]
    pub start_time: Option<String>,
    /// Wall-clock pace in ticks per second, or `unlimited`.
    #[arg(long, default_value = "unlimited")]
    pub rate: String,
    /// Stop after this many ticks.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this much wall-clock time, e.g. `30s` or `5m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Mean trades per second of market time, all symbols.
    #[arg(long)]
    pub trades_per_second: Option<f64>,
    /// Fraction of ticks delivered out of order (within the configured bound).
    #[arg(long)]
    pub out_of_order: Option<f64>,
    /// Fraction of ticks delivered late (beyond any grace period).
    #[arg(long)]
    pub late: Option<f64>,
    /// Replay daily bars from a CSV in the indexProcessed.csv layout instead of simulating.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Serve Prometheus metrics on `metrics.addr` while producing.
    #[arg(long)]
    pub metrics: bool,
    /// At the end, write a watermark record to every partition one day past the last event
    /// time, so that a topology closes every window (end of input).
    #[arg(long)]
    pub end_watermark: bool,
}

impl SimulateArgs {
    /// The simulator settings: the config's, with the flags laid over them.
    pub fn sim_config(&self, base: &SimConfig) -> SimConfig {
        let mut c = base.clone();
        set(&mut c.topic, self.topic.clone());
        set(&mut c.partitions, self.partitions);
        set(&mut c.symbols, self.symbols);
        set(&mut c.seed, self.seed);
        set(&mut c.trades_per_second, self.trades_per_second);
        set(&mut c.out_of_order_fraction, self.out_of_order);
        set(&mut c.late_fraction, self.late);
        c
    }

    /// The pace: `--rate` and `--duration`.
    pub fn pace(&self) -> anyhow::Result<Pace> {
        let rate = match self.rate.as_str() {
            "unlimited" | "max" | "0" => None,
            r => Some(
                r.parse::<f64>()
                    .ok()
                    .filter(|r| *r > 0.0)
                    .with_context(|| {
                        format!("--rate: `{r}` is not a positive number or `unlimited`")
                    })?,
            ),
        };
        Ok(Pace {
            rate,
            duration: self.duration,
        })
    }

    /// The tick sequence: a replay of `--replay`, or the simulated market.
    pub fn ticks(&self, cfg: &SimConfig) -> anyhow::Result<Box<dyn Iterator<Item = Tick> + Send>> {
        cfg.validate()?;
        let session = Session::from_config(cfg)?;
        if let Some(path) = &self.replay {
            let ticks = sim::replay_ticks(path, &session)?;
            let n = self.count.map_or(ticks.len(), |c| c as usize);
            return Ok(Box::new(ticks.into_iter().take(n)));
        }
        if self.count.is_none() && self.duration.is_none() {
            return Err(super::usage("give --count or --duration (or both)".into()));
        }
        let universe = sim::universe(cfg.symbols_file.as_deref(), cfg.symbols)?;
        let start = match &self.start_time {
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .with_context(|| format!("--start-time: `{s}` is not an RFC 3339 time"))?
                .timestamp_micros(),
            None => session.last_closed_open(chrono::Utc::now().timestamp_micros()),
        };
        Ok(Box::new(TickStream::from_config(
            cfg, universe, start, self.count,
        )?))
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Runs `tickflow simulate`.
pub async fn run(args: SimulateArgs, app: AppConfig) -> anyhow::Result<()> {
    let cfg = args.sim_config(&app.simulator);
    let ticks = args.ticks(&cfg)?;
    let pace = args.pace()?;
    let metrics = Metrics::new();
    let server = if args.metrics {
        let listener = tokio::net::TcpListener::bind(&app.metrics.addr)
            .await
            .with_context(|| format!("metrics.addr {}", app.metrics.addr))?;
        Some(tokio::spawn(metrics.clone().serve(listener)))
    } else {
        None
    };
    let summary = produce(&app.kafka, &app.registry, &cfg, ticks, pace, &metrics).await?;
    if args.end_watermark {
        sim::end_of_input(&app.kafka, &cfg.topic, &summary)?;
    }
    if let Some(server) = server {
        server.abort();
    }
    println!(
        "produced {} ticks to {} in {:.2}s ({:.0} ticks/s, {:.1} MB); event time {}",
        summary.ticks,
        cfg.topic,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary.bytes as f64 / 1e6,
        summary
            .event_time_range
            .map(|(a, b)| format!("{} .. {}", super::fmt_micros(a), super::fmt_micros(b)))
            .unwrap_or_else(|| "-".into())
    );
    Ok(())
}

/// Checks the broker, creates the topic, registers the tick schema and produces `ticks`.
pub async fn produce(
    kafka_cfg: &KafkaConfig,
    registry: &RegistryConfig,
    cfg: &SimConfig,
    ticks: Box<dyn Iterator<Item = Tick> + Send>,
    pace: Pace,
    metrics: &Metrics,
) -> anyhow::Result<RunSummary> {
    let k = kafka_cfg.clone();
    tokio::task::spawn_blocking(move || kafka::check_reachable(&k)).await??;
    kafka::ensure_topic(kafka_cfg, &cfg.topic, cfg.partitions, &[]).await?;
    let registry = RegistryClient::from_config(registry)?;
    let id = registry
        .register_value(&cfg.topic, RecordKind::Tick)
        .await
        .context("registering the tick schema")?;
    let encoder = Encoder::<Tick>::new(RecordKind::Tick, id);
    let sink = KafkaSink::new(kafka_cfg, &cfg.topic)?;
    let bar = progress_bar();
    let m = metrics.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let mut counted = RunSummary::default();
        let result = sim::produce_ticks(ticks, &encoder, &sink, pace, |s| {
            bar.set_position(s.ticks);
            bar.set_message(format!("{:.0} ticks/s", s.rate()));
            count_progress(&m, &mut counted, s);
        });
        bar.finish_and_clear();
        if let Ok(s) = &result {
            count_progress(&m, &mut counted, s);
        }
        result
    })
    .await??;
    Ok(summary)
}

/// Adds what was produced since the last call to the counters (once per batch, not per tick).
fn count_progress(m: &Metrics, counted: &mut RunSummary, now: &RunSummary) {
    m.sim_ticks.inc_by(now.ticks - counted.ticks);
    m.sim_bytes.inc_by(now.bytes - counted.bytes);
    counted.ticks = now.ticks;
    counted.bytes = now.bytes;
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} ticks  {msg}  [{elapsed}]")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
