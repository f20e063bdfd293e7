//! Every metric tickflow exports, in one explicit Prometheus registry, and the `/metrics`
//! endpoint. Names follow `tickflow_<thing>_<unit>[_total]`.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The metrics of one tickflow process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Ticks the simulator handed to Kafka.
    pub sim_ticks: IntCounter,
    /// Encoded bytes the simulator handed to Kafka.
    pub sim_bytes: IntCounter,
    /// Input records a topology processed.
    pub records: IntCounter,
    /// Bars a topology produced.
    pub bars: IntCounter,
    /// (tick, resolution) pairs routed to the late topic.
    pub late_ticks: IntCounter,
    /// Records sent to the dead-letter topic, by reason.
    pub dead_letters: IntCounterVec,
    /// Changelog records read while restoring state stores.
    pub restore_records: IntCounter,
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
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let dead_letters = counter_vec(
            &registry,
            "tickflow_dead_letters_total",
            "Records sent to the dead-letter topic, by reason",
            "reason",
        );
        let commits = counter_vec(
            &registry,
            "tickflow_commits_total",
            "Engine commits, by outcome (committed, aborted)",
            "outcome",
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
            records: counter(
                &registry,
                "tickflow_records_total",
                "Input records processed by the topology",
            ),
            bars: counter(
                &registry,
                "tickflow_bars_total",
                "Bars produced by the topology",
            ),
            late_ticks: counter(
                &registry,
                "tickflow_late_ticks_total",
                "Ticks that arrived after their window closed, per resolution",
            ),
            dead_letters,
            restore_records: counter(
                &registry,
                "tickflow_restore_records_total",
                "Changelog records read while restoring state stores",
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
            lake_skipped: counter(
                &registry,
                "tickflow_lake_skipped_records_total",
                "Replayed records the lake sink found in files already, and skipped",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }

    /// Serves `GET /metrics` on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = self.clone();
                async move { m.render() }
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
}
