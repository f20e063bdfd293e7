//! `tickflow run`: run a topology until stopped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::{AppConfig, TopologySpec};
use crate::metrics::{Metrics, StageState};
use crate::sink::lake::{self, LakeOptions, LakeStats};
use crate::topology::runtime::{self, RunOptions, RunStats};

/// Flags of `tickflow run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Topology YAML file.
    #[arg(long, short = 't')]
    pub topology: PathBuf,
    /// Longest time between commits of state and input position.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub commit_interval: Duration,
    /// Stop after a final commit when no record arrived for this long (batch jobs, tests).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub stop_when_idle: Option<Duration>,
    /// Static group membership id (`group.instance.id`), stable across restarts of this
    /// instance, so that it takes its partitions back at once.
    #[arg(long, env = "TICKFLOW_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Which stages to run: the engine, the lake sink (if the topology has a `lake:`
    /// section), or both. Each stage has its own consumer group, so they can run, scale and
    /// restart apart.
    #[arg(long, value_enum, default_value = "all")]
    pub stage: Stage,
}

/// The stages of `tickflow run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// The engine and, if configured, the lake sink.
    All,
    /// Only the topology engine.
    Engine,
    /// Only the lake sink.
    Lake,
}

/// Runs `tickflow run`: until SIGINT/SIGTERM (committing first), or until idle.
pub async fn run(args: RunArgs, app: AppConfig) -> anyhow::Result<()> {
    let spec = TopologySpec::load(&args.topology)?;
    let metrics = Metrics::new();
    let server = serve_metrics(&app, &metrics).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    tokio::spawn(async move {
        super::serve::shutdown_signal().await;
        s.store(true, Ordering::Relaxed);
    });
    let options = RunOptions {
        commit_interval: args.commit_interval,
        stop_when_idle: args.stop_when_idle,
        instance_id: args.instance_id,
    };
    // The lake sink of `--stage all` is not idle while the engine still runs.
    let engine_running = Arc::new(AtomicBool::new(args.stage != Stage::Lake));
    let lake = match (args.stage, &spec.lake) {
        (Stage::Lake, None) => {
            return Err(super::usage(format!(
                "{}: the topology has no `lake:` section",
                args.topology.display()
            )));
        }
        (Stage::Engine, _) | (_, None) => None,
        (_, Some(_)) => {
            let options = LakeOptions {
                stop_when_idle: args.stop_when_idle,
                instance_id: options.instance_id.clone(),
                upstream: (args.stage == Stage::All).then(|| engine_running.clone()),
                topic_wait: LAKE_TOPIC_WAIT,
            };
            Some(spawn_lake(&spec, &app, options, &metrics, &stop))
        }
    };
    let engine = if args.stage == Stage::Lake {
        None
    } else {
        let result = run_topology(&spec, &app, options, metrics, stop.clone()).await;
        engine_running.store(false, Ordering::Relaxed);
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        Some(result)
    };
    let landed = match lake {
        Some(task) => Some(task.await.context("lake sink task")??),
        None => None,
    };
    if let Some(server) = server {
        server.abort();
    }
    if let Some(stats) = engine {
        print_engine(&spec, &stats?);
    }
    if let Some(l) = landed {
        println!(
            "{} lake: {} records in {} files, {} replayed records already landed, {} dead letters",
            spec.application, l.records, l.files, l.skipped, l.dead_letters
        );
    }
    Ok(())
}

/// How long the lake sink waits at start for the topics it lands (the engine creates its
/// output topics as it starts, after a reachability check and schema registration).
pub const LAKE_TOPIC_WAIT: Duration = Duration::from_secs(120);

/// Starts the lake sink of `spec` (which has a `lake:` section) on its own task.
pub fn spawn_lake(
    spec: &TopologySpec,
    app: &AppConfig,
    options: LakeOptions,
    metrics: &Metrics,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<LakeStats>> {
    let (spec, app, metrics, stop) = (spec.clone(), app.clone(), metrics.clone(), stop.clone());
    tokio::spawn(async move {
        let lake = spec.lake.as_ref().expect("a lake section");
        let health = metrics.health.clone();
        let landed = lake::run(
            &spec.application,
            lake,
            &app,
            options,
            metrics,
            stop.clone(),
        )
        .await
        .with_context(|| format!("lake sink of {} ({})", spec.application, lake.url));
        if let Err(e) = &landed {
            // The whole process stops: a container restarts it, and it resumes from the
            // last commit of each stage.
            let why = crate::error::report(e.chain());
            tracing::error!(error = %why, "the lake sink failed; stopping");
            health.set(lake::LAKE, StageState::Failed(why));
            stop.store(true, Ordering::Relaxed);
        }
        landed
    })
}

fn print_engine(spec: &TopologySpec, stats: &RunStats) {
    let mut line = format!(
        "{}: {} records, {} bars, {} late, {} dead letters, {} filtered out",
        spec.application, stats.records, stats.bars, stats.late, stats.dead_letters, stats.filtered
    );
    if stats.forwarded > 0 || stats.duplicates > 0 {
        line += &format!(
            ", {} repartitioned, {} replayed duplicates skipped",
            stats.forwarded, stats.duplicates
        );
    }
    if stats.suppressed > 0 {
        line += &format!(
            ", {} outputs of the replay not written again (they reached their topic before the crash)",
            stats.suppressed
        );
    }
    println!("{line}");
}

/// Runs a topology with the given options (shared with `tickflow demo`).
pub async fn run_topology(
    spec: &TopologySpec,
    app: &AppConfig,
    options: RunOptions,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<RunStats> {
    let health = metrics.health.clone();
    let ran = runtime::run(spec, app, options, metrics, stop)
        .await
        .with_context(|| format!("running {}", spec.application));
    if let Err(e) = &ran {
        let why = crate::error::report(e.chain());
        tracing::error!(error = %why, "the engine failed; stopping");
        health.set(runtime::ENGINE, StageState::Failed(why));
    }
    ran
}

async fn serve_metrics(
    app: &AppConfig,
    metrics: &Metrics,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    if app.metrics.addr.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(&app.metrics.addr)
        .await
        .with_context(|| format!("metrics.addr {}: cannot listen", app.metrics.addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    Ok(Some(tokio::spawn(metrics.clone().serve(listener))))
}
