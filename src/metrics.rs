//! Every metric tickflow exports, in one explicit Prometheus registry, and the `/metrics`
//! endpoint, with the health (`/healthz`) and readiness (`/readyz`) of the process's stages.
//! Names follow `tickflow_<thing>_<unit>[_total]`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Where a stage of the process (the engine, the lake sink) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageState {
    /// Starting, restoring state, or waiting for partitions: alive but not ready.
    Starting(String),
    /// Running with every assigned task restored.
    Ready,
    /// Stopped by an error: the process is unhealthy and about to exit.
    Failed(String),
}

/// The states of the process's stages, shared by the stages and the HTTP endpoint.
#[derive(Clone, Default)]
pub struct Health {
    stages: Arc<Mutex<BTreeMap<&'static str, StageState>>>,
}

impl Health {
    /// Records the state of `stage`.
    pub fn set(&self, stage: &'static str, state: StageState) {
        self.stages
            .lock()
            .expect("health lock")
            .insert(stage, state);
    }

    /// Healthy unless a stage failed; the text names each stage's state.
    pub fn healthy(&self) -> (bool, String) {
        let stages = self.stages.lock().expect("health lock");
        let ok = !stages.values().any(|s| matches!(s, StageState::Failed(_)));
        (ok, describe(&stages))
    }

    /// Ready when at least one stage is registered and every one is ready.
    pub fn ready(&self) -> (bool, String) {
        let stages = self.stages.lock().expect("health lock");
        let ok = !stages.is_empty() && stages.values().all(|s| *s == StageState::Ready);
        (ok, describe(&stages))
    }
}

fn describe(stages: &BTreeMap<&'static str, StageState>) -> String {
    let mut out = String::new();
    for (stage, state) in stages {
        let line = match state {
            StageState::Starting(why) => format!("{stage}: starting ({why})\n"),
            StageState::Ready => format!("{stage}: ready\n"),
            StageState::Failed(why) => format!("{stage}: failed: {why}\n"),
        };
        out.push_str(&line);
    }
    out
}

/// The metrics of one tickflow process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Health and readiness of the process's stages.
    pub health: Health,
    /// Ticks the simulator handed to Kafka.
    pub sim_ticks: IntCounter,
    /// Encoded bytes the simulator handed to Kafka.
    pub sim_bytes: IntCounter,
    /// Input records the engine processed, per topic and partition (take a task's handle
    /// with [`Metrics::records_of`]).
    pub records: IntCounterVec,
    /// Bars the engine produced, per output topic and resolution.
    pub bars: IntCounterVec,
    /// (tick, resolution) pairs routed to the late topic, per resolution.
    pub late_ticks: IntCounterVec,
    /// Ticks a filter dropped.
    pub filtered: IntCounter,
    /// Ticks a `group_by` sent to its repartition topic.
    pub forwarded: IntCounter,
    /// Records sent to a dead-letter topic, per stage (`engine`, `lake`) and reason.
    pub dead_letters: IntCounterVec,
    /// Changelog records read while restoring state stores.
    pub restore_records: IntCounter,
    /// Outputs a replay recomputed and did not write again: a copy had reached the topic
    /// before the crash or the failover (`at_least_once`).
    pub replayed_outputs: IntCounter,
    /// Changelog records still to read by the restore in progress.
    pub restore_remaining: IntGauge,
    /// Partitions (tasks) this instance runs now.
    pub assigned_partitions: IntGauge,
    /// Engine commits, by outcome: `committed`, or `aborted` (a Kafka transaction under
    /// `exactly_once_v2` that could not commit).
    pub commits: IntCounterVec,
    /// Records the lake sink wrote into files.
    pub lake_records: IntCounter,
    /// Files the lake sink wrote.
    pub lake_files: IntCounter,
    /// Bytes of the files the lake sink wrote.
    pub lake_bytes: IntCounter,
    /// Replayed records the lake sink found in files already, and skipped.
    pub lake_skipped: IntCounter,
    /// Lake files open (being filled in memory, not yet written).
    pub lake_open_files: IntGauge,
    /// Bytes the open lake files hold in memory.
    pub lake_buffered_bytes: IntGauge,
    /// Seconds an engine commit took (flushing outputs and changelogs, and the transaction).
    pub commit_seconds: Histogram,
    /// Seconds from an input record's Kafka timestamp to the bar it emitted being produced.
    pub bar_latency_seconds: Histogram,
    /// Wall clock minus stream time, per input topic and partition (engine tasks).
    pub event_time_lag_seconds: GaugeVec,
    /// Records between a consumer's position and the partition's end, per consumer
    /// (`engine`, `lake`), topic and partition.
    pub consumer_lag: IntGaugeVec,
    /// Windows open in each task's store, per input topic and partition.
    pub open_windows: IntGaugeVec,
    /// Bytes of each task's RocksDB store (SST files and memtables), per input topic and
    /// partition.
    pub state_bytes: IntGaugeVec,
    /// Seconds a lake file's upload took (conditional put, or multipart and copy).
    pub lake_upload_seconds: Histogram,
    /// Seconds from consuming a file's first record to the file being durable.
    pub lake_latency_seconds: Histogram,
    /// Catalog calls, by operation (`ensure_table`, `add_partitions`) and outcome (`ok`,
    /// `error`).
    pub catalog_calls: IntCounterVec,
    /// Athena queries this process ran, by outcome (`succeeded`, `failed`, `timed_out`).
    pub athena_queries: IntCounterVec,
    /// Bytes the Athena queries of this process scanned (what Athena bills).
    pub athena_bytes_scanned: IntCounter,
    /// Seconds an Athena query took, from its start to its last result page.
    pub athena_query_seconds: Histogram,
    /// Unix time at which the last Athena query of this process ended.
    pub athena_last_query: Gauge,
    /// 1 when `/readyz` would answer 200, else 0 (set at each scrape).
    ready: IntGauge,
    /// 1 when `/healthz` would answer 200, else 0 (set at each scrape).
    healthy: IntGauge,
}

/// Histogram buckets in seconds from 1 ms to about 4.7 hours, each 4 times the last.
fn seconds_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 4.0, 12).expect("valid buckets")
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(seconds_buckets());
    registered(registry, Histogram::with_opts(opts).expect("valid metric"))
}

/// Registers `m` in `registry` and returns it (metric handles are shared clones).
fn registered<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: T) -> T {
    registry
        .register(Box::new(m.clone()))
        .expect("unique metric");
    m
}

/// Every dead-letter reason, so that each series exists (at 0) before its first record.
pub const DEAD_LETTER_REASONS: [&str; 9] = [
    "undecodable",
    "unknown_schema",
    "incompatible_schema",
    "missing_field",
    "bad_price",
    "bad_size",
    "implausible_event_time",
    "overflow",
    "bad_repartition_record",
];

/// Every outcome of an Athena query, so that each series exists (at 0) before the first.
pub const ATHENA_OUTCOMES: [&str; 3] = ["succeeded", "failed", "timed_out"];

/// The git revision the binary was built from (`TICKFLOW_GIT_REVISION` at build time).
const REVISION: &str = match option_env!("TICKFLOW_GIT_REVISION") {
    Some(r) => r,
    None => "unknown",
};

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help).expect("valid metric"))
}

/// A gauge per engine task: labels `topic` and `partition`.
fn task_gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &["topic", "partition"]).expect("valid metric");
    registered(registry, g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(registry, c)
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let dead_letters = counter_vec(
            &registry,
            "tickflow_dead_letters_total",
            "Records sent to a dead-letter topic, per stage (engine, lake) and reason",
            &["stage", "reason"],
        );
        let commits = counter_vec(
            &registry,
            "tickflow_commits_total",
            "Engine commits, by outcome (committed, aborted)",
            &["outcome"],
        );
        Self {
            commits,
            sim_ticks: counter(
                &registry,
                "tickflow_sim_ticks_total",
                "Ticks produced by the simulator",
            ),
            sim_bytes: counter(
                &registry,
                "tickflow_sim_bytes_total",
                "Encoded tick bytes produced by the simulator",
            ),
            records: counter_vec(
                &registry,
                "tickflow_records_total",
                "Input records the engine processed, per topic and partition",
                &["topic", "partition"],
            ),
            bars: counter_vec(
                &registry,
                "tickflow_bars_total",
                "Bars the engine produced, per output topic and resolution",
                &["topic", "resolution"],
            ),
            late_ticks: counter_vec(
                &registry,
                "tickflow_late_ticks_total",
                "Ticks that arrived after their window closed, per resolution",
                &["resolution"],
            ),
            filtered: counter(
                &registry,
                "tickflow_filtered_ticks_total",
                "Ticks a filter dropped",
            ),
            forwarded: counter(
                &registry,
                "tickflow_forwarded_ticks_total",
                "Ticks a group_by sent to its repartition topic",
            ),
            dead_letters,
            restore_records: counter(
                &registry,
                "tickflow_restore_records_total",
                "Changelog records read while restoring state stores",
            ),
            replayed_outputs: counter(
                &registry,
                "tickflow_replayed_outputs_total",
                "Outputs a replay recomputed and did not write again (a copy reached the topic before the crash)",
            ),
            restore_remaining: gauge(
                &registry,
                "tickflow_restore_remaining_records",
                "Changelog records still to read by the restore in progress",
            ),
            assigned_partitions: gauge(
                &registry,
                "tickflow_assigned_partitions",
                "Partitions (tasks) this instance runs now",
            ),
            lake_records: counter(
                &registry,
                "tickflow_lake_records_total",
                "Records the lake sink wrote into files",
            ),
            lake_files: counter(
                &registry,
                "tickflow_lake_files_total",
                "Files the lake sink wrote",
            ),
            lake_bytes: counter(
                &registry,
                "tickflow_lake_bytes_total",
                "Bytes of the files the lake sink wrote",
            ),
            lake_open_files: gauge(
                &registry,
                "tickflow_lake_open_files",
                "Lake files open (being filled in memory, not yet written)",
            ),
            lake_buffered_bytes: gauge(
                &registry,
                "tickflow_lake_buffered_bytes",
                "Bytes the open lake files hold in memory",
            ),
            lake_skipped: counter(
                &registry,
                "tickflow_lake_skipped_records_total",
                "Replayed records the lake sink found in files already, and skipped",
            ),
            commit_seconds: histogram(
                &registry,
                "tickflow_commit_duration_seconds",
                "Seconds an engine commit took",
            ),
            bar_latency_seconds: histogram(
                &registry,
                "tickflow_bar_latency_seconds",
                "Seconds from an input record's Kafka timestamp to its bar being produced",
            ),
            event_time_lag_seconds: registered(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "tickflow_event_time_lag_seconds",
                        "Wall clock minus stream time, per input partition",
                    ),
                    &["topic", "partition"],
                )
                .expect("valid metric"),
            ),
            open_windows: task_gauge(
                &registry,
                "tickflow_open_windows",
                "Windows open in a task's store, per input partition",
            ),
            state_bytes: task_gauge(
                &registry,
                "tickflow_state_store_bytes",
                "Bytes of a task's RocksDB store (SST files and memtables), per input partition",
            ),
            consumer_lag: registered(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "tickflow_consumer_lag_records",
                        "Records between the consumer's position and the partition's end",
                    ),
                    &["consumer", "topic", "partition"],
                )
                .expect("valid metric"),
            ),
            lake_upload_seconds: histogram(
                &registry,
                "tickflow_lake_upload_duration_seconds",
                "Seconds a lake file's upload took",
            ),
            lake_latency_seconds: histogram(
                &registry,
                "tickflow_lake_latency_seconds",
                "Seconds from consuming a lake file's first record to the file being durable",
            ),
            catalog_calls: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "tickflow_catalog_calls_total",
                        "Catalog calls by operation and outcome",
                    ),
                    &["operation", "outcome"],
                )
                .expect("valid metric"),
            ),
            athena_queries: counter_vec(
                &registry,
                "tickflow_athena_queries_total",
                "Athena queries by outcome (succeeded, failed, timed_out)",
                &["outcome"],
            ),
            athena_bytes_scanned: counter(
                &registry,
                "tickflow_athena_bytes_scanned_total",
                "Bytes Athena scanned for the queries",
            ),
            athena_query_seconds: histogram(
                &registry,
                "tickflow_athena_query_duration_seconds",
                "Seconds from an Athena query's start to its last result page",
            ),
            athena_last_query: registered(
                &registry,
                Gauge::new(
                    "tickflow_athena_last_query_timestamp_seconds",
                    "Unix time at which the last Athena query ended",
                )
                .expect("valid metric"),
            ),
            ready: gauge(
                &registry,
                "tickflow_ready",
                "1 when every stage is ready (as /readyz), else 0",
            ),
            healthy: gauge(
                &registry,
                "tickflow_healthy",
                "1 unless a stage failed (as /healthz), else 0",
            ),
            health: Health::default(),
            registry,
        }
        .with_process_metrics()
    }

    /// Adds the build-info gauge and the process metrics (CPU, resident memory, open file
    /// descriptors: `process_*`), and starts every known labelled series at 0 (a series
    /// that appears only with its first event hides it from `rate()` and `increase()`).
    fn with_process_metrics(self) -> Self {
        for stage in ["engine", "lake"] {
            for reason in DEAD_LETTER_REASONS {
                self.dead_letters.with_label_values(&[stage, reason]);
            }
        }
        for outcome in ["committed", "aborted"] {
            self.commits.with_label_values(&[outcome]);
        }
        for outcome in ATHENA_OUTCOMES {
            self.athena_queries.with_label_values(&[outcome]);
        }
        for operation in ["ensure_table", "add_partitions"] {
            for outcome in ["ok", "error"] {
                self.catalog_calls.with_label_values(&[operation, outcome]);
            }
        }
        let info = IntGaugeVec::new(
            Opts::new(
                "tickflow_build_info",
                "Always 1; the labels name the version and git revision",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), REVISION])
            .set(1);
        registered(&self.registry, info);
        #[cfg(target_os = "linux")]
        self.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        self
    }

    /// Input records the engine processed, over every task.
    pub fn records_total(&self) -> u64 {
        use prometheus::core::Collector;
        let families = self.records.collect();
        let counters = families.iter().flat_map(|f| f.get_metric());
        counters.map(|m| m.get_counter().get_value() as u64).sum()
    }

    /// The input-record counter of one task (topic, partition), to hold instead of looking
    /// the series up for every record.
    pub fn records_of(&self, topic: &str, partition: i32) -> IntCounter {
        self.records
            .with_label_values(&[topic, &partition.to_string()])
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.ready.set(i64::from(self.health.ready().0));
        self.healthy.set(i64::from(self.health.healthy().0));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }

    /// The Athena metrics (`tickflow_athena_*`) in Prometheus' text format, for the textfile
    /// collector of node_exporter: a one-shot `tickflow query` has no endpoint to scrape, and
    /// node_exporter exposes its own process metrics.
    pub fn render_athena(&self) -> String {
        let families: Vec<_> = self
            .registry
            .gather()
            .into_iter()
            .filter(|f| f.name().starts_with("tickflow_athena_"))
            .collect();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }

    /// Writes [`Metrics::render_athena`] to `path` atomically (a temporary file beside it,
    /// then a rename), so that a collector never reads half a file.
    pub fn write_athena_textfile(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        std::fs::write(&tmp, self.render_athena())?;
        std::fs::rename(&tmp, path)
    }

    /// Serves `/metrics` (Prometheus text format), `/healthz` (200 unless a stage failed,
    /// else 503) and `/readyz` (200 once every stage is ready, else 503) until the listener
    /// fails. The health bodies name each stage's state.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        use axum::http::StatusCode;
        let status = |(ok, text): (bool, String)| {
            let code = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, text)
        };
        let (m, h, r) = (self.clone(), self.health.clone(), self.health.clone());
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let m = m.clone();
                    async move { m.render() }
                }),
            )
            .route(
                "/healthz",
                axum::routing::get(move || {
                    let h = h.clone();
                    async move { status(h.healthy()) }
                }),
            )
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let r = r.clone();
                    async move { status(r.ready()) }
                }),
            );
        axum::serve(listener, app).await
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        let m = Metrics::new();
        m.sim_ticks.inc_by(3);
        let text = m.render();
        assert!(text.contains("tickflow_sim_ticks_total 3"), "{text}");
    }

    #[test]
    fn build_process_and_zero_series_exist_from_the_start() {
        let text = Metrics::new().render();
        assert!(text.contains("tickflow_build_info{revision="), "{text}");
        assert!(text.contains("# TYPE process_open_fds gauge"), "{text}");
        for reason in DEAD_LETTER_REASONS {
            let line =
                format!("tickflow_dead_letters_total{{reason=\"{reason}\",stage=\"lake\"}} 0");
            assert!(text.contains(&line), "{line}");
        }
    }

    /// `/readyz` answers 503 while a stage restores and 200 once every stage is ready;
    /// `/healthz` answers 503 once a stage failed.
    #[tokio::test]
    async fn health_endpoints_follow_the_stages() {
        let m = Metrics::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(m.clone().serve(listener));
        let get = |path: &str| {
            let url = format!("{base}{path}");
            async move {
                let r = reqwest::get(url).await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        assert_eq!(get("/readyz").await.0, 503, "nothing registered yet");
        m.health
            .set("engine", StageState::Starting("restoring t-0".into()));
        m.health.set("lake", StageState::Ready);
        let (code, body) = get("/readyz").await;
        assert_eq!(code, 503);
        assert!(body.contains("engine: starting (restoring t-0)"), "{body}");
        assert_eq!(get("/healthz").await.0, 200);
        m.health.set("engine", StageState::Ready);
        assert_eq!(get("/readyz").await.0, 200);
        m.health
            .set("lake", StageState::Failed("S3 said no".into()));
        let (code, body) = get("/healthz").await;
        assert_eq!(code, 503);
        assert!(body.contains("lake: failed: S3 said no"), "{body}");
        assert_eq!(get("/readyz").await.0, 503);
        server.abort();
    }
}
