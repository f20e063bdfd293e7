//! `tickflow status` against the test broker. While a run works, its tasks show as working
//! (running, or, where the broker cannot describe the group, not released); after it stopped,
//! every task is at the end of its input, released, with its stream time.

use crate::common;

use std::process::{Child, Command, Output, Stdio};

use common::golden::{simulate_into, symbol_bars_topology};
use common::process::engine_env;
use tickflow::codec::RegistryClient;
use tickflow::sim::SimConfig;

const COUNT: u64 = 20_000;

fn command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickflow"));
    cmd.args(args)
        .env("TICKFLOW_METRICS__ADDR", "")
        .env("TICKFLOW_LOG", "warn")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn tickflow(args: &[&str], env: &[(String, String)]) -> (Output, String) {
    let out = command(args, env).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// `tickflow run` until its input has been idle for 5 s.
fn start_run(topology: &str, env: &[(String, String)]) -> Child {
    let args = [
        "run",
        "-t",
        topology,
        "--commit-interval",
        "200ms",
        "--stop-when-idle",
        "5s",
    ];
    command(&args, env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The rows of `status` output for `input`'s partitions, split on whitespace: topic, part,
/// owner, state, committed, position, end, lag, stream time, event-time lag.
fn rows<'a>(text: &'a str, input: &str) -> Vec<Vec<&'a str>> {
    text.lines()
        .filter(|l| l.starts_with(input))
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_task_while_running_and_after() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("ops");
    let input = format!("{id}.ticks");
    simulate_into(&kafka, &client, &input, SimConfig::default(), 20, COUNT).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, symbol_bars_topology(&id, &input, "")).unwrap();
    let topology = path.display().to_string();
    let env = engine_env(
        &kafka.bootstrap_servers,
        &registry.url,
        &dir.path().join("state"),
    );

    let (t, e, i) = (topology.clone(), env.clone(), input.clone());
    tokio::task::spawn_blocking(move || {
        let mut run = start_run(&t, &e);
        let mut working = false;
        while run.try_wait().unwrap().is_none() {
            let (out, text) = tickflow(&["status", "-t", &t], &e);
            assert!(out.status.success(), "{text}");
            working |= rows(&text, &i)
                .iter()
                .any(|r| ["running", "unreleased"].contains(&r[3]));
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        assert!(run.wait().unwrap().success(), "the run");
        assert!(working, "status never showed a task at work during the run");
    })
    .await
    .unwrap();

    let (out, text) = tickflow(&["status", "-t", &topology], &env);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with(&format!("application {id}: ")), "{text}");
    let rows = rows(&text, &input);
    assert_eq!(rows.len(), 8, "one row per input partition:\n{text}");
    for r in &rows {
        assert_eq!(r.len(), 10, "{text}");
        assert!(["unassigned", "released"].contains(&r[3]), "{text}");
        assert_eq!(r[4], r[6], "the group committed the end:\n{text}");
        assert_eq!(
            r[5], r[6],
            "the task's position is the partition's end:\n{text}"
        );
        assert_eq!(r[7], "0", "{text}");
        assert!(r[8].starts_with("20"), "a stream time:\n{text}");
    }
}
