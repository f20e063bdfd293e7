//! Running `tickflow run` as a child process, watching its progress through its metrics
//! endpoint, and stopping it with a signal.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment pointing `tickflow run` at the test broker, a registry and a state
/// directory.
pub fn engine_env(kafka: &str, registry: &str, state: &Path) -> Vec<(String, String)> {
    vec![
        ("TICKFLOW_KAFKA__BOOTSTRAP_SERVERS".into(), kafka.into()),
        ("TICKFLOW_REGISTRY__URL".into(), registry.into()),
        ("TICKFLOW_STATE__DIR".into(), state.display().to_string()),
        // Tansu with SQLite storage has left a metadata request unanswered for over 10 s (the
        // product default) right after a SIGKILL under load; a CI run failed on it.
        ("TICKFLOW_KAFKA__CONNECT_TIMEOUT".into(), "30s".into()),
    ]
}

/// [`engine_env`] with the state in `dir/state`, for tests that kill engines and delete their
/// state: a restart without its state is a new writer, which waits for the killed one's
/// release (it never comes) for 3 s instead of the product's 30 s.
pub fn crash_env(kafka: &str, registry: &str, dir: &Path) -> Vec<(String, String)> {
    let mut env = engine_env(kafka, registry, &dir.join("state"));
    env.push(("TICKFLOW_STATE__HANDOVER_TIMEOUT".into(), "3s".into()));
    env
}

/// A running engine and the port of its metrics endpoint.
pub struct Engine {
    pub child: Child,
    pub metrics_port: u16,
}

/// A test that fails leaves no process behind: one still running is killed.
impl Drop for Engine {
    fn drop(&mut self) {
        if self.child.try_wait().is_ok_and(|status| status.is_none()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `tickflow run` on `topology` with a metrics endpoint on a free port, 200 ms commits,
/// stopping after 60 s without input (Tansu can pause fetches for many seconds under load);
/// static membership when `instance_id` is given.
pub fn start_engine(
    topology: &Path,
    env: &[(String, String)],
    instance_id: Option<&str>,
) -> Engine {
    match instance_id {
        Some(id) => start_engine_with(topology, env, &["--instance-id", id]),
        None => start_engine_with(topology, env, &[]),
    }
}

/// Like [`start_engine`], with extra arguments for `tickflow run` (a `--stop-when-idle` or
/// `--commit-interval` among them replaces the default one).
pub fn start_engine_with(topology: &Path, env: &[(String, String)], args: &[&str]) -> Engine {
    let metrics_port = super::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickflow"));
    cmd.args(["run", "--topology"])
        .arg(topology)
        .env(
            "TICKFLOW_METRICS__ADDR",
            format!("127.0.0.1:{metrics_port}"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if !args.contains(&"--stop-when-idle") {
        cmd.args(["--stop-when-idle", "60s"]);
    }
    if !args.contains(&"--commit-interval") {
        cmd.args(["--commit-interval", "200ms"]);
    }
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Engine {
        child: cmd.spawn().unwrap(),
        metrics_port,
    }
}

/// `tickflow_records_total` from the engine's metrics endpoint, if it answers.
pub fn records_processed(port: u16) -> Option<u64> {
    metric(port, "tickflow_records_total")
}

/// The value of metric `name` from the engine's metrics endpoint, if it answers: the one
/// series `name` names with its labels, or the sum of every series of a bare name.
pub fn metric(port: u16, name: &str) -> Option<u64> {
    sum_of(&scrape(port)?, name)
}

/// The series `name` of a scrape (with labels: that one), or the sum of every series of a
/// bare name; `None` if there is none.
/// The value of the series `series` (name and labels as exposed) in a scrape; panics when
/// it is missing.
pub fn series(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
        .trim()
        .parse()
        .unwrap()
}

pub fn sum_of(scrape: &str, name: &str) -> Option<u64> {
    let bare = !name.contains('{');
    let mut found = None;
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.split_once(' ') else {
            continue;
        };
        let labelled = series
            .strip_prefix(name)
            .is_some_and(|r| r.starts_with('{'));
        if (series == name || (bare && labelled))
            && let Ok(v) = value.trim().parse::<f64>()
        {
            *found.get_or_insert(0) += v as u64;
        }
    }
    found
}

/// The engine's `/metrics` response (headers and body), if it answers.
pub fn scrape(port: u16) -> Option<String> {
    get(port, "/metrics")
}

/// The response (headers and body) of the metrics endpoint on `port` to `GET path`.
pub fn get(port: u16, path: &str) -> Option<String> {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    // A process that stopped answering must not hang the test.
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    conn.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Waits for the engine to exit, scraping its `/metrics` every 100 ms; returns its exit
/// status and the last scrape (the state just before it stopped).
pub fn wait_scraping(mut engine: Engine) -> (std::process::ExitStatus, String) {
    let mut last = String::new();
    loop {
        if let Some(status) = engine.child.try_wait().unwrap() {
            return (status, last);
        }
        if let Some(text) = scrape(engine.metrics_port) {
            last = text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the engine's metric `name` satisfies `ok`, checking it is still running.
pub fn wait_for_metric(engine: &mut Engine, name: &str, ok: impl Fn(u64) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !metric(engine.metrics_port, name).is_some_and(&ok) {
        assert!(Instant::now() < deadline, "{what}: not within 180 s");
        assert!(
            engine.child.try_wait().unwrap().is_none(),
            "the engine finished before {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the engine has processed at least `records` records, checking it is still
/// running.
pub fn wait_for_records(engine: &mut Engine, records: u64, before: &str) {
    let what = format!("the {before} ({records} records)");
    wait_for_metric(engine, "tickflow_records_total", |n| n >= records, &what);
}

/// Lets the engine process at least `records` records (none: a process without engine tasks,
/// such as a lake sink, has no `tickflow_records_total` series), checks it is still
/// mid-stream, and stops it with `signal`.
pub fn interrupt(mut engine: Engine, records: u64, signal: &str) {
    if records > 0 {
        wait_for_records(&mut engine, records, signal);
    }
    let running = engine.child.try_wait().unwrap().is_none();
    assert!(running, "the process finished before the {signal}");
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &engine.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    engine.child.wait().unwrap();
}
