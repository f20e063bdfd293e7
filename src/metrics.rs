//! Every metric tickflow exports, in one explicit Prometheus registry, and the `/metrics`
//! endpoint. Names follow `tickflow_<thing>_<unit>[_total]`.

use prometheus::{Encoder, IntCounter, Registry, TextEncoder};

/// The metrics of one tickflow process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Ticks the simulator handed to Kafka.
    pub sim_ticks: IntCounter,
    /// Encoded bytes the simulator handed to Kafka.
    pub sim_bytes: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let sim_ticks = IntCounter::new(
            "tickflow_sim_ticks_total",
            "Ticks produced by the simulator",
        )
        .expect("valid metric");
        let sim_bytes = IntCounter::new(
            "tickflow_sim_bytes_total",
            "Encoded tick bytes produced by the simulator",
        )
        .expect("valid metric");
        registry
            .register(Box::new(sim_ticks.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(sim_bytes.clone()))
            .expect("unique metric");
        Self {
            registry,
            sim_ticks,
            sim_bytes,
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
