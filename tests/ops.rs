//! `tickflow status` and `tickflow reset` against the test broker. While a run works, its
//! tasks show as working (running, or, where the broker cannot describe the group, not
//! released); after it stopped, every task is at the end of its input, released, with its
//! stream time. After a reset, every task shows as reset at the input's beginning, and the
//! next run writes the first run's outputs once more.

use crate::common;

use std::process::{Child, Command, Output, Stdio};

use common::golden::{read_everything, simulate_into, symbol_bars_topology};
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

/// An application on the test broker: `COUNT` simulated ticks of 20 symbols in its input,
/// the `symbol_bars_topology` file, and the environment of its runs.
struct App {
    kafka: tickflow::config::KafkaConfig,
    _registry: common::TestRegistry,
    id: String,
    input: String,
    topology: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl App {
    async fn new(prefix: &str) -> Self {
        let kafka = common::kafka();
        let registry = common::TestRegistry::start().await;
        let client = RegistryClient::new(&registry.url).unwrap();
        let id = common::unique(prefix);
        let input = format!("{id}.ticks");
        simulate_into(&kafka, &client, &input, SimConfig::default(), 20, COUNT).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, symbol_bars_topology(&id, &input, "")).unwrap();
        let state = dir.path().join("state");
        let env = engine_env(&kafka.bootstrap_servers, &registry.url, &state);
        Self {
            kafka,
            _registry: registry,
            id,
            input,
            topology: path.display().to_string(),
            env,
            dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_task_while_running_and_after() {
    // Every field bound: the registry and the directory live until the test ends.
    let App {
        kafka: _,
        _registry,
        id,
        input,
        topology,
        env,
        dir: _dir,
    } = App::new("ops").await;

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

/// The (key, value) pairs of each topic, sorted: a run's outputs as a multiset.
fn outputs_of(records: &[tickflow::source::RawRecord]) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = records
        .iter()
        .map(|r| {
            let (k, v) = (r.key.clone(), r.value.clone());
            (
                r.topic.clone(),
                k.unwrap_or_default(),
                v.unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_application_starts_over_and_writes_the_same_outputs_again() {
    let App {
        kafka,
        _registry,
        id,
        input,
        topology,
        env,
        dir,
    } = App::new("reset").await;
    let state = dir.path().join("state");
    let outputs = [
        format!("{id}.bars.1s"),
        format!("{id}.bars.1m"),
        format!("{id}.late"),
    ];
    let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();

    let (t, e) = (topology.clone(), env.clone());
    let run = move || assert!(start_run(&t, &e).wait().unwrap().success(), "the run");
    tokio::task::spawn_blocking(run.clone()).await.unwrap();
    let first = read_everything(&kafka, &outputs);
    assert!(first.len() > 100, "{} outputs", first.len());
    let (_, before) = tickflow(&["status", "-t", &topology], &env);

    let (out, text) = tickflow(&["reset", "-t", &topology], &env);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("dry run: nothing changed"), "{text}");
    assert!(text.contains("8 partition(s) to reset"), "{text}");
    let (_, after_dry_run) = tickflow(&["status", "-t", &topology], &env);
    // Every column but the event-time lag, which the wall clock moves.
    let positions = |text: &str| -> Vec<Vec<String>> {
        let rows = rows(text, &input);
        rows.iter()
            .map(|r| r[..9].iter().map(|c| c.to_string()).collect())
            .collect()
    };
    assert_eq!(
        positions(&after_dry_run),
        positions(&before),
        "a dry run changes nothing"
    );
    assert!(state.join(&id).exists());

    let (out, text) = tickflow(&["reset", "-t", &topology, "--execute"], &env);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("reset: 8 changelog partition(s) written"),
        "{text}"
    );
    assert!(!state.join(&id).exists(), "the local state is deleted");
    let (_, status) = tickflow(&["status", "-t", &topology], &env);
    let reset_rows = rows(&status, &input);
    assert_eq!(reset_rows.len(), 8, "{status}");
    for r in &reset_rows {
        assert_eq!(
            (r[3], r[4], r[5]),
            ("reset", "0", "0"),
            "at the beginning:\n{status}"
        );
    }

    tokio::task::spawn_blocking(run).await.unwrap();
    let all = read_everything(&kafka, &outputs);
    assert_eq!(all.len(), 2 * first.len(), "every output once more");
    let ends: std::collections::HashMap<(String, i32), i64> = first
        .iter()
        .map(|r| ((r.topic.clone(), r.partition), r.offset + 1))
        .fold(Default::default(), |mut m, (k, end)| {
            let e = m.entry(k).or_insert(0);
            *e = end.max(*e);
            m
        });
    let again: Vec<_> = all
        .into_iter()
        .filter(|r| {
            r.offset
                >= ends
                    .get(&(r.topic.clone(), r.partition))
                    .copied()
                    .unwrap_or(0)
        })
        .collect();
    assert!(
        outputs_of(&again) == outputs_of(&first),
        "the second run's outputs equal the first's"
    );
}
