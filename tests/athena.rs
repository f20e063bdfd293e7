//! `tickflow query --engine athena` against moto's Athena (started by `scripts/test.sh`), with
//! results seeded through moto's API (moto runs no SQL): the request carries the lake's
//! database, the configured workgroup and output location and the saved query with its
//! parameter bound; the seeded rows come back without Athena's header row, typed; a refused
//! query shows Athena's reason and exits 1. Polling with backoff and pagination over several
//! pages are unit-tested in `src/query/athena.rs` (moto answers every query as finished, in
//! one page). One test only: it sets the AWS environment of its process.

use crate::common;
use common::process::series;

use std::process::{Command, Output};

use aws_sdk_athena::types::{ResultConfiguration, WorkGroupConfiguration};
use serde_json::{Value as Json, json};

const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

fn endpoint() -> String {
    std::env::var("TICKFLOW_TEST_AWS_ENDPOINT")
        .expect("TICKFLOW_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test.sh")
}

fn tickflow(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickflow"));
    cmd.args(args)
        .env("TICKFLOW_LOG", "warn")
        .env("TICKFLOW_AWS__ENDPOINT", endpoint());
    for (k, v) in AWS_ENV.iter().chain(env) {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A metrics file `tickflow query --metrics-file` wrote: only `tickflow_athena_*` families
/// (node_exporter has its own process metrics), in a format `promtool check metrics` accepts.
fn textfile(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("tickflow_athena_"), "{line}");
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (installed by scripts/test.sh)");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    text
}

/// The rows moto will answer the next query with: Athena's header row, then three bars.
fn seeded() -> Json {
    let column = |name: &str, ty: &str| {
        json!({"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": name,
               "Label": name, "Type": ty, "Precision": 0, "Scale": 0,
               "Nullable": "UNKNOWN", "CaseSensitive": false})
    };
    let row = |values: [&str; 4]| json!({"Data": values.map(|v| json!({"VarCharValue": v}))});
    json!({
        "region": "us-east-1",
        "results": [{
            "column_info": [column("symbol", "varchar"), column("window_start", "timestamp"),
                            column("close", "double"), column("volume", "bigint")],
            "rows": [
                row(["symbol", "window_start", "close", "volume"]),
                row(["AAPL", "2026-11-26 14:34:00.000", "228.24", "202719"]),
                row(["MSFT", "2026-11-26 14:34:00.000", "415.3", "88120"]),
                row(["NVDA", "2026-11-26 14:34:00.000", "136.01", "301554"]),
            ],
        }]
    })
}

#[tokio::test]
async fn queries_run_on_athena_with_the_configured_context() {
    for (k, v) in AWS_ENV {
        // SAFETY: set before any thread of this test process reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let id = common::unique("athena").replace('-', "_");
    let aws = tickflow::config::AwsConfig {
        region: "us-east-1".into(),
        endpoint: Some(endpoint()),
    };
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(aws.endpoint.clone().unwrap())
        .load()
        .await;
    let client = aws_sdk_athena::Client::new(&sdk);
    let output = format!("s3://{id}-results/queries/");
    client
        .create_work_group()
        .name(&id)
        .configuration(
            WorkGroupConfiguration::builder()
                .result_configuration(
                    ResultConfiguration::builder()
                        .output_location(&output)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let seeded_ok = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/static/athena/query-results",
            endpoint()
        ))
        .json(&seeded())
        .send()
        .await
        .unwrap();
    assert!(seeded_ok.status().is_success());

    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "application: {id}
sources:
  ticks: {{ topic: ticks.raw }}
operators:
  - window: {{ id: bars, input: ticks, tumbling: [1m], grace: 2s, aggregates: [open, close, volume] }}
sinks:
  - {{ input: bars, topic: \"bars.{{resolution}}\" }}
lake:
  url: s3://{id}-lake/lake
  database: db_{id}
  topics:
    - {{ topic: ticks.raw, table: ticks }}
    - {{ topic: bars.1m, table: bars_1m }}
"
        ),
    )
    .unwrap();
    let t = topology.display().to_string();
    let env = [
        ("TICKFLOW_ATHENA__WORKGROUP", id.as_str()),
        ("TICKFLOW_ATHENA__OUTPUT_LOCATION", output.as_str()),
    ];
    let prom = dir.path().join("tickflow_query.prom");
    let prom_arg = prom.display().to_string();
    let args = [
        "query",
        "-t",
        &t,
        "--file",
        "queries/latest_bars.sql",
        "--param",
        "day=2026-11-26",
        "--format",
        "json",
        "--metrics-file",
        &prom_arg,
    ];
    let out = tickflow(&args, &env);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");

    // The rows, without the header row, numbers as numbers.
    let rows: Vec<Json> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        vec![
            json!({"symbol": "AAPL", "window_start": "2026-11-26 14:34:00.000", "close": 228.24, "volume": 202719}),
            json!({"symbol": "MSFT", "window_start": "2026-11-26 14:34:00.000", "close": 415.3, "volume": 88120}),
            json!({"symbol": "NVDA", "window_start": "2026-11-26 14:34:00.000", "close": 136.01, "volume": 301554}),
        ]
    );
    // The data scanned and the cost estimate, and the request as Athena received it.
    let query_id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("athena query "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no query id in {stderr}"));
    assert!(stderr.contains("MB scanned, about $0.00005"), "{stderr}");
    let execution = client
        .get_query_execution()
        .query_execution_id(query_id)
        .send()
        .await
        .unwrap();
    let q = execution.query_execution().unwrap();
    let context = q.query_execution_context().unwrap();
    assert_eq!(context.database(), Some(format!("db_{id}").as_str()));
    assert_eq!(context.catalog(), Some("AwsDataCatalog"));
    assert_eq!(q.work_group(), Some(id.as_str()));
    // Athena writes the results to `<output location><query id>.csv`.
    assert_eq!(
        q.result_configuration().and_then(|r| r.output_location()),
        Some(format!("{output}{query_id}.csv").as_str())
    );
    let sql = q.query().unwrap();
    assert!(
        sql.contains("FROM bars_1m") && sql.contains("dt = '2026-11-26'"),
        "{sql}"
    );
    assert!(!sql.contains("{{"), "placeholders bound: {sql}");
    // The query's metrics, for node_exporter's textfile collector: what Athena reported.
    let scanned = q.statistics().and_then(|s| s.data_scanned_in_bytes());
    let metrics = textfile(&prom);
    assert_eq!(
        series(
            &metrics,
            "tickflow_athena_queries_total{outcome=\"succeeded\"}"
        ),
        1.0
    );
    assert_eq!(
        series(
            &metrics,
            "tickflow_athena_queries_total{outcome=\"failed\"}"
        ),
        0.0
    );
    assert_eq!(
        series(&metrics, "tickflow_athena_query_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        series(&metrics, "tickflow_athena_bytes_scanned_total"),
        scanned.unwrap_or(0) as f64
    );
    assert!(series(&metrics, "tickflow_athena_last_query_timestamp_seconds") > 1.7e9);

    // The error path: Athena's reason, exit code 3 (an external service failed), and the
    // failure counted in the metrics file.
    let missing = [("TICKFLOW_ATHENA__WORKGROUP", "no-such-workgroup")];
    let args = ["query", "-t", &t, "SELECT 1", "--metrics-file", &prom_arg];
    let out = tickflow(&args, &missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("WorkGroup does not exist"), "{stderr}");
    let metrics = textfile(&prom);
    assert_eq!(
        series(
            &metrics,
            "tickflow_athena_queries_total{outcome=\"failed\"}"
        ),
        1.0
    );
    assert_eq!(
        series(
            &metrics,
            "tickflow_athena_queries_total{outcome=\"succeeded\"}"
        ),
        0.0
    );

    // A local lake has no Glue tables for Athena to read.
    let local = dir.path().join("local.yaml");
    let text = std::fs::read_to_string(&topology).unwrap();
    std::fs::write(
        &local,
        text.replace(&format!("s3://{id}-lake/lake"), "file://./lake"),
    )
    .unwrap();
    let l = local.display().to_string();
    let out = tickflow(&["query", "-t", &l, "--engine", "athena", "SELECT 1"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("use --engine local"), "{stderr}");
}
