//! `deploy/` against a real Prometheus server (Debian's `prometheus`; `tests/deploy.sh` checks
//! the same files with its `promtool`). Prometheus scrapes a running `tickflow run` (the engine
//! and the lake sink) every second, with `deploy/prometheus.yml`'s job and `deploy/alerts.yml`'s
//! rules. Asked through Prometheus' HTTP API, every PromQL expression of
//! `deploy/grafana-dashboard.json` returns series (a panel naming a metric that does not
//! exist fails), and every alert rule is evaluated without error and names only metrics that
//! Prometheus scraped.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::golden::simulate_into;
use common::process::{interrupt, start_engine_with};
use serde_json::Value;
use tickflow::codec::RegistryClient;
use tickflow::sim::SimConfig;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// A Prometheus server on a free port, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: std::path::PathBuf,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus in `dir` with `deploy/prometheus.yml` scraping `target` every second
    /// and evaluating `deploy/alerts.yml` every second.
    fn start(dir: &Path, target: u16) -> Self {
        let config = std::fs::read_to_string(format!("{DEPLOY}/prometheus.yml")).unwrap();
        for needed in [
            "127.0.0.1:9464",
            "scrape_interval: 15s",
            "evaluation_interval: 15s",
        ] {
            assert!(config.contains(needed), "deploy/prometheus.yml: {needed}");
        }
        let config = config
            .replace("127.0.0.1:9464", &format!("127.0.0.1:{target}"))
            .replace("interval: 15s", "interval: 1s");
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        std::fs::copy(format!("{DEPLOY}/alerts.yml"), dir.join("alerts.yml")).unwrap();
        let port = common::free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .spawn()
            .expect("prometheus (Debian's `prometheus` package)");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: dir.join("prometheus.err"),
            http: reqwest::Client::new(),
        }
    }

    /// `GET /api/v1/<path>` with `params`: the response's `data`; fails on an error status.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("{}/api/v1/{path}", self.url);
        let response = self.http.get(&url).query(params).send().await;
        let body: Value = response.unwrap().json().await.unwrap();
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// The series of the instant query `expr`.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (60 s at most) until `expr` returns a series whose value is at least `value`.
    async fn wait_for(&self, expr: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.ready().await {
                let series = self.query(expr).await;
                if series.iter().any(|s| number(&s["value"]) >= value) {
                    return;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("Prometheus: {expr} did not reach {value} within 60 s; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn ready(&self) -> bool {
        let response = self.http.get(format!("{}/-/ready", self.url)).send().await;
        response.is_ok_and(|r| r.status().is_success())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number of an instant query's `[time, "value"]` pair (NaN if none).
fn number(value: &Value) -> f64 {
    value[1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every PromQL expression of the Grafana dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{DEPLOY}/grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap().to_string();
            queries.push((title, target["expr"].as_str().unwrap().to_string()));
        }
    }
    assert!(queries.len() >= 20, "{queries:?}");
    queries
}

/// The metric names (`tickflow_…`, `process_…`) that `text` mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_lowercase() || c == '_';
    text.split(|c: char| !word(c))
        .filter(|w| w.starts_with("tickflow_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_run_and_every_dashboard_query_and_alert_evaluates() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("prom");
    let input = format!("{id}.ticks");
    const COUNT: u64 = 20_000;
    // Late ticks too, so that the late panel has something to draw.
    let cfg = SimConfig {
        trades_per_second: 8.0,
        late_fraction: 0.01,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 30, COUNT).await;
    let roll = "{ max_records: 2000, flush_interval: 1s }";
    let (dir, _lake, t, env) = common::lake::setup(&kafka, &registry.url, &id, &input, roll);
    // It keeps running at the end of its input while Prometheus scrapes it.
    let engine = start_engine_with(&t, &env, &["--stop-when-idle", "600s"]);
    let prometheus = Prometheus::start(dir.path(), engine.metrics_port);

    // Every tick processed and as many records landed, seen by Prometheus in a few scrapes.
    let count = COUNT as f64;
    prometheus
        .wait_for("sum(tickflow_records_total)", count)
        .await;
    prometheus
        .wait_for("sum(tickflow_lake_records_total)", count)
        .await;
    prometheus
        .wait_for("count_over_time(up{job=\"tickflow\"}[1m])", 5.0)
        .await;
    prometheus.wait_for("up{job=\"tickflow\"}", 1.0).await;

    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries() {
        if prometheus.query(&expr).await.is_empty() {
            empty.push(format!("{panel}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without series: {empty:#?}"
    );

    check_alerts(&prometheus).await;
    interrupt(engine, 0, "TERM");
}

/// Every rule of `deploy/alerts.yml` is loaded and was evaluated without error; its query
/// answers through the API; every metric the rules name is one Prometheus scraped.
async fn check_alerts(prometheus: &Prometheus) {
    let rules_file = std::fs::read_to_string(format!("{DEPLOY}/alerts.yml")).unwrap();
    let written = rules_file.matches("- alert:").count();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let data = prometheus.api("rules", &[("type", "alert")]).await;
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = |r: &Value| r["lastEvaluation"].as_str() != Some("0001-01-01T00:00:00Z");
        if rules.len() == written && rules.iter().all(evaluated) {
            break rules;
        }
        assert!(
            Instant::now() < deadline,
            "rules not all evaluated: {rules:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for rule in &rules {
        let (name, query) = (&rule["name"], rule["query"].as_str().unwrap());
        assert_eq!(rule["health"], "ok", "alert {name}: {rule}");
        // Evaluated again through the query API: it must parse and run (an alert that does
        // not fire returns nothing).
        prometheus.query(query).await;
    }
    let scraped: BTreeSet<String> = prometheus
        .api("label/__name__/values", &[])
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let missing: Vec<String> = metric_names(&rules_file)
        .into_iter()
        .filter(|m| !scraped.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "alerts name unscraped metrics: {missing:?}"
    );
}
