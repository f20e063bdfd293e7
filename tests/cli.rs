//! The `tickflow` binary as a user meets it: the demo from an empty directory, the simulator
//! and tail against the test broker, and clear failures on bad input.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tickflow(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickflow"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("TICKFLOW_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = tickflow(dir.path(), &["--help"], &[]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    for cmd in [
        "demo", "run", "simulate", "validate", "graph", "test", "tail", "catalog", "registry",
        "broker", "status",
    ] {
        assert!(
            stdout.contains(&format!("  {cmd} ")),
            "{cmd} missing from:\n{stdout}"
        );
    }
}

#[test]
fn validate_reports_every_problem_and_fails() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tickflow(
        root,
        &["validate", "tests/topologies/bad_everything.yaml"],
        &[],
    );
    let (_, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings, not a failure: {stderr}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("bad_everything.yaml:"))
            .count(),
        12,
        "{stderr}"
    );
    let out = tickflow(root, &["validate", "topologies/ohlc_vwap.yaml"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out).0,
        "topologies/ohlc_vwap.yaml: ok (application ohlc-vwap, 1 sources, 1 operators, 1 sinks)\n"
    );
}

#[test]
fn demo_runs_from_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = tickflow(dir.path(), &["demo", "--duration", "2s"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("embedded Kafka-protocol broker"),
        "{stdout}"
    );
    assert!(stdout.contains("● read back "), "{stdout}");
    assert!(stdout.contains("● ran topology ohlc-vwap"), "{stdout}");
    assert!(stdout.contains("one-minute bars in bars.1m"), "{stdout}");
    let aapl_bars = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("AAPL    20"))
        .count();
    assert!(aapl_bars >= 2, "AAPL's 1-minute bars printed:\n{stdout}");
    assert!(stdout.contains("● ran topology venue-vwap"), "{stdout}");
    assert!(!stdout.contains("warning"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("  XNAS    20")),
        "a venue's VWAP printed:\n{stdout}"
    );
    assert!(
        dir.path()
            .join("tickflow-demo/registry/registry.json")
            .exists()
    );
    assert!(dir.path().join("tickflow-demo/state/ohlc-vwap").is_dir());
    assert!(dir.path().join("tickflow-demo/state/venue-vwap").is_dir());
    assert!(stdout.contains("● landed "), "{stdout}");
    let ticks = dir.path().join("lake/_catalog/tickflow/ticks.json");
    assert!(ticks.exists(), "{stdout}");
    assert!(dir.path().join("lake/bars_1m").is_dir(), "{stdout}");
    assert!(stdout.contains("bars_1h (Parquet)"), "{stdout}");
}

#[test]
fn missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = tickflow(
        dir.path(),
        &["--config", "nope.yaml", "simulate", "--count", "1"],
        &[],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nope.yaml: cannot read configuration"),
        "{stderr}"
    );
}

#[test]
fn malformed_config_is_located() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "kafka:\n  bootstrap_servers: x:1\nsimulator:\n  sed: 4\n",
    )
    .unwrap();
    let out = tickflow(
        dir.path(),
        &["--config", "c.yaml", "simulate", "--count", "1"],
        &[],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "a user error: {stderr}");
    assert!(
        stderr.contains("error: c.yaml:4:3: simulator.sed: unknown field `sed`"),
        "{stderr}"
    );
}

#[test]
fn unreachable_broker_fails_fast_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let servers = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let out = tickflow(
        dir.path(),
        &["simulate", "--count", "10"],
        &[
            ("TICKFLOW_KAFKA__BOOTSTRAP_SERVERS", &servers),
            ("TICKFLOW_KAFKA__CONNECT_TIMEOUT", "2s"),
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "an external failure: {stderr}");
    assert!(
        stderr.contains(&format!("cannot reach Kafka at {servers} within 2s")),
        "{stderr}"
    );
    // A hang guard, not a performance assertion: the timeout is 2 s.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn unreadable_replay_row_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("idx.csv"),
        "Index,Date,Open,High,Low,Close,Adj Close,Volume,CloseUSD\n\
         NYA,1965-12-31,528.69,528.69,528.69,528.69,528.69,0,528.69\n\
         NYA,1966-01-03,527.21,oops,527.21,527.21,527.21,0,527.21\n",
    )
    .unwrap();
    let out = tickflow(dir.path(), &["simulate", "--replay", "idx.csv"], &[]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("idx.csv:3: column 4"), "{stderr}");
}

/// A replayed CSV goes to the broker and comes back through `tail`, decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_tail() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("idx.csv"),
        "Index,Date,Open,High,Low,Close,Adj Close,Volume,CloseUSD\n\
         HSI,1986-12-31,2568.3,2570,2560,2565,2565,1000,330.0\n",
    )
    .unwrap();
    let topic = common::unique("replay");
    let env = [
        (
            "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS",
            kafka.bootstrap_servers.as_str(),
        ),
        ("TICKFLOW_REGISTRY__URL", registry.url.as_str()),
    ];
    let path = dir.path().to_path_buf();
    let t = topic.clone();
    let env_owned: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (produced, tailed) = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env_owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let p = tickflow(
            &path,
            &[
                "simulate",
                "--replay",
                "idx.csv",
                "--topic",
                &t,
                "--partitions",
                "2",
            ],
            &env,
        );
        let t = tickflow(
            &path,
            &["tail", "--topic", &t, "-n", "4", "--idle", "60s"],
            &env,
        );
        (p, t)
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&produced);
    assert!(produced.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("produced 4 ticks to "), "{stdout}");
    let (stdout, stderr) = text(&tailed);
    assert!(tailed.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let volume: i64 = lines
        .iter()
        .map(|l| l["value"]["size"].as_i64().unwrap())
        .sum();
    assert_eq!(volume, 1000);
    assert!(
        lines
            .iter()
            .all(|l| l["key"] == "HSI" && l["value"]["venue"] == "INDX")
    );
}

/// A log filter that does not parse is an error (a typo must not silence the logs).
#[test]
fn a_bad_log_filter_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tickflow(
        dir.path(),
        &["--log", "tickflow=loud[", "graph", "x.yaml"],
        &[],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--log / TICKFLOW_LOG"), "{stderr}");
}

/// `--log-format json` writes one JSON object per log line; text logs carry no colour codes
/// when stderr is not a terminal. (`run` logs where it serves metrics, then fails on the
/// unreachable broker.)
#[test]
fn json_logs_are_one_object_per_line_and_text_logs_have_no_colour() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = [
        ("TICKFLOW_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ("TICKFLOW_KAFKA__CONNECT_TIMEOUT", "2s"),
        ("TICKFLOW_METRICS__ADDR", "127.0.0.1:0"),
    ];
    let args = [
        "--log",
        "info",
        "run",
        "--topology",
        "topologies/ohlc_vwap.yaml",
        "--stage",
        "engine",
    ];
    let json = tickflow(
        root,
        &[&["--log-format", "json"][..], &args[..]].concat(),
        &env,
    );
    let (_, stderr) = text(&json);
    assert!(!json.status.success());
    let logs: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("error:") && !l.trim().is_empty())
        .collect();
    assert!(!logs.is_empty(), "no log line at info: {stderr}");
    for line in &logs {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
    let plain = tickflow(root, &args, &env);
    let (_, stderr) = text(&plain);
    assert!(stderr.contains("serving /metrics"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in: {stderr}");
}

/// A command asked for what its topology cannot give (here: SQL over a topology without a
/// lake) is the user's to fix: exit code 2, saying what is missing.
#[test]
fn a_usage_error_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        "application: nolake\nsources:\n  ticks: { topic: t }\noperators:\n  - window: { id: bars, input: ticks, tumbling: [1m], aggregates: [open, close] }\nsinks:\n  - { input: bars, topic: \"bars.{resolution}\" }\n",
    )
    .unwrap();
    let t = topology.to_str().unwrap();
    let out = tickflow(dir.path(), &["query", "-t", t, "SELECT 1"], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no `lake:` section"), "{stderr}");
}

/// A failing command says each cause once, though DataFusion's error both prints its source
/// and returns it, and SQL the engine cannot parse is the user's to fix (exit code 2).
#[test]
fn a_bad_query_names_its_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let topology = concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/ohlc_vwap.yaml");
    let out = tickflow(dir.path(), &["query", "-t", topology, "SELEC 1"], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.matches("Expected: an SQL statement").count(),
        1,
        "{stderr}"
    );
}
