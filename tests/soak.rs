//! Issue 14's soak through the test broker. The engine and the lake sink run as two processes
//! over one input, and each is SIGKILLed again and again: at seeded random points, and right
//! after an hour boundary (the engine: as soon as it has emitted hour bars; the sink: as soon
//! as it has written a Kafka partition's first file of a new hour). Every fifth engine restart
//! also loses its state directory. Then, counted record by record:
//! - every bar topic holds each final bar once, equal to a brute-force recomputation, and
//!   each `emit: update` bar and late tick once;
//! - the dead-letter topic is empty (the simulation writes no bad data);
//! - the lake holds every record of every landed topic once, in its partition, registered;
//! - `tickflow query`'s `SUM(volume)` and `SUM(trade_count)` of each bar table's final bars
//!   equal the brute-force bars' sums (for tumbling windows: those of the on-time ticks).
//!
//! Two topologies: the flagship's (1s, 1m, 5m and 1h bars, hourly bars landed as Parquet),
//! and hopping windows (1m every 30s, 1h every 30m) that emit updates.
//!
//! `scripts/soak.sh` runs it at full size (`TICKFLOW_SOAK=1`: 1,000,000 ticks over about 6
//! hours of market time and 20 kills of each process, per topology); the test command runs it
//! at 40,000 ticks and 5 kills of each (one of the engine's losing its state).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::golden::{Rules, assert_outputs_once, flagship_rules, read_all, read_everything};
use common::golden::{bars_each, expected_with, records_in, simulate_into, tick_log};
use common::process::{Engine, crash_env, interrupt, scrape, start_engine_with, sum_of};
use tickflow::codec::RegistryClient;
use tickflow::config::KafkaConfig;
use tickflow::sim::SimConfig;

const S: i64 = 1_000_000;

/// (ticks, kills of each process): the full soak with `TICKFLOW_SOAK=1`, else a small one.
fn size() -> (u64, usize) {
    if std::env::var("TICKFLOW_SOAK").is_ok_and(|v| v == "1") {
        (1_000_000, 20)
    } else {
        (40_000, 5)
    }
}

/// How long the last run of a stage may take: the input is all there.
fn finish_within() -> Duration {
    Duration::from_secs(if size().0 > 100_000 { 3600 } else { 300 })
}

/// One kill: after how many records of the run (landed records, for the sink), unless an
/// hour boundary comes first (`at_hour`); and whether the engine's state is deleted after.
#[derive(Debug, Clone, Copy)]
struct Kill {
    after: u64,
    at_hour: bool,
    delete_state: bool,
}

/// `n` kills, seeded: every fourth (from the second) at the next hour boundary, or after a
/// quarter of the input (an hour of market time holds less); every fifth losing the state.
/// The others come after 1/5 to 3/5 of `ticks / n` records, so the input outlasts them all.
fn kills(seed: u64, n: usize, ticks: u64) -> Vec<Kill> {
    let (low, high) = (ticks / (5 * n as u64), ticks * 3 / (5 * n as u64));
    common::kill_points(seed, n, low, high)
        .into_iter()
        .enumerate()
        .map(|(i, after)| {
            let at_hour = i % 4 == 1;
            Kill {
                after: if at_hour { ticks / 4 } else { after },
                at_hour,
                delete_state: i % 5 == 4,
            }
        })
        .collect()
}

/// A topology of the soak: its windows (YAML), the rules that recompute its bars, the
/// resolution whose bars mark an hour boundary, and the bar topics landed in the lake as
/// (resolution, table, format).
struct Soak<'a> {
    prefix: &'a str,
    window: &'a str,
    rules: Rules<'a>,
    hour: &'a str,
    landed: &'a [(&'a str, &'a str, &'a str)],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flagship_survives_kills_of_the_engine_and_the_lake_sink() {
    soak(Soak {
        prefix: "soak",
        window: "tumbling: [1s, 1m, 5m, 1h]\n      grace: 5s",
        rules: flagship_rules(),
        hour: "1h",
        landed: &[
            ("1m", "bars_1m", "avro"),
            ("5m", "bars_5m", "avro"),
            ("1h", "bars_1h", "parquet"),
        ],
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopping_windows_with_updates_survive_kills_of_the_engine_and_the_lake_sink() {
    soak(Soak {
        prefix: "soak-hop",
        window: "hopping: [{ size: 1m, advance: 30s }, { size: 1h, advance: 30m }]\n      grace: 5s\n      emit: { update: 10s }",
        rules: Rules {
            windows: &[
                ("1m-every-30s", 60 * S, 30 * S),
                ("1h-every-30m", 3600 * S, 1800 * S),
            ],
            ..flagship_rules()
        },
        hour: "1h-every-30m",
        landed: &[
            ("1m-every-30s", "bars_1m", "avro"),
            ("1h-every-30m", "bars_1h", "parquet"),
        ],
    })
    .await;
}

async fn soak(s: Soak<'_>) {
    let (count, n) = size();
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique(s.prefix);
    let input = format!("{id}.ticks");
    // About 6 hours of market time from 09:30, whatever the size: six hour boundaries.
    let cfg = SimConfig {
        trades_per_second: count as f64 / 21_600.0,
        late_fraction: 0.005,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 100, count).await;

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let topology = dir.path().join("t.yaml");
    let yaml = topology_yaml(&s, &id, (&input, count), &lake);
    std::fs::write(&topology, yaml).unwrap();
    let env = crash_env(&kafka.bootstrap_servers, &registry.url, dir.path());

    let started = Instant::now();
    let run = Run {
        topology,
        env,
        state: dir.path().join("state"),
        lake: lake.clone(),
        hour: s.hour.to_string(),
    };
    let (engine_kills, sink_kills) = (kills(0x50a6, n, count), kills(0x1a4e, n, count));
    let (done_tx, done_rx) = mpsc::channel();
    let engine_run = run.clone();
    let engine = tokio::task::spawn_blocking(move || {
        let hits = engine_run.kill_engine(&engine_kills);
        done_tx.send(()).unwrap();
        hits
    });
    let sink = tokio::task::spawn_blocking(move || run.kill_sink(&sink_kills, done_rx));
    let (engine_hours, sink_hours) = (engine.await.unwrap(), sink.await.unwrap());
    eprintln!(
        "{id}: {count} ticks, {n} kills of the engine ({engine_hours} at an hour boundary) and {n} of the sink ({sink_hours}) in {:?}",
        started.elapsed()
    );
    assert!(engine_hours > 0 && sink_hours > 0, "no kill at an hour");

    let counted =
        assert_outputs_once(&kafka, &client, &id, (&input, count as usize + 8), &s.rules).await;
    eprintln!("{id}: outputs once: {counted:?}");
    assert_eq!(records_in(&kafka, &[&format!("{id}.dlq")]), 0);
    check_lake(
        &s,
        &kafka,
        &client,
        (&id, &input, count),
        &lake,
        &dir.path().join("t.yaml"),
    )
    .await;
}

/// The soak's topology: the window of `s` on `input`, its bars to `{id}.bars.<resolution>`,
/// a lake in `lake` landing the ticks and `s.landed`, in files of a hundredth of the `count`
/// ticks at most (so a sink writes files, and is killed, all along its input).
fn topology_yaml(s: &Soak<'_>, id: &str, (input, count): (&str, u64), lake: &Path) -> String {
    let mut tables = format!("    - {{ topic: {input}, table: ticks }}\n");
    for (res, table, format) in s.landed {
        tables +=
            &format!("    - {{ topic: \"{id}.bars.{res}\", table: {table}, format: {format} }}\n");
    }
    format!(
        "application: {id}
sources:
  ticks: {{ topic: {input} }}
operators:
  - window:
      id: bars
      input: ticks
      {}
      aggregates: [open, high, low, close, volume, vwap, trade_count, turnover]
      late_topic: {id}.late
sinks:
  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}
lake:
  url: file://{}
  database: tickflow
  codec: snappy
  topics:
{tables}  roll: {{ max_records: {}, flush_interval: 2s }}
",
        s.window,
        lake.display(),
        count / 100
    )
}

/// What the two killing threads share.
#[derive(Clone)]
struct Run {
    topology: PathBuf,
    env: Vec<(String, String)>,
    state: PathBuf,
    lake: PathBuf,
    hour: String,
}

impl Run {
    /// Starts `stage` of the topology (it stops after 60 s at the end of its input).
    fn start(&self, stage: &str) -> Engine {
        self.start_with(stage, &[])
    }

    fn start_with(&self, stage: &str, extra: &[&str]) -> Engine {
        let instance = format!("soak-{stage}");
        let mut args = vec!["--stage", stage, "--instance-id", &instance];
        args.extend(extra);
        start_engine_with(&self.topology, &self.env, &args)
    }

    /// Runs `stage` to the end of its input: the input is all there, and the idle stop
    /// counts only at the end of every partition. Fails (killing it) after `finish_within()`.
    fn finish(&self, stage: &str) {
        let mut process = self.start_with(stage, &["--stop-when-idle", "10s"]);
        let deadline = Instant::now() + finish_within();
        while Instant::now() < deadline {
            if let Some(status) = process.child.try_wait().unwrap() {
                assert!(status.success(), "the last {stage} run: {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let metrics = scrape(process.metrics_port).unwrap_or_default();
        let lag: Vec<&str> = metrics.lines().filter(|l| l.contains("lag")).collect();
        interrupt(process, 0, "KILL");
        panic!(
            "the last {stage} run did not stop; its lag:\n{}",
            lag.join("\n")
        );
    }

    /// Kills the engine at each of `kills`, then runs it to the end; returns how many kills
    /// came right after the engine emitted hour bars.
    fn kill_engine(&self, kills: &[Kill]) -> usize {
        let mut at_hours = 0;
        for (i, k) in kills.iter().enumerate() {
            let mut engine = self.start("engine");
            let hour = format!("resolution=\"{}\"", self.hour);
            let why = wait_until(&mut engine, &format!("engine kill {i}"), |text| {
                if k.at_hour && series_sum(text, "tickflow_bars_total", &hour) > 0 {
                    Some("hour bars emitted")
                } else if sum_of(text, "tickflow_records_total").unwrap_or(0) >= k.after {
                    Some("records")
                } else {
                    None
                }
            });
            at_hours += usize::from(why == "hour bars emitted");
            eprintln!("engine kill {i}: {why} ({k:?})");
            interrupt(engine, 0, "KILL");
            if k.delete_state {
                // A new host: the stores are rebuilt from their changelogs.
                std::fs::remove_dir_all(&self.state).unwrap();
            }
        }
        self.finish("engine");
        at_hours
    }

    /// Kills the lake sink at each of `kills`, then runs it until `engine_done` says the
    /// engine ran to the end, stops it with SIGTERM and runs it to the end; returns how many
    /// kills came right after the sink wrote a Kafka partition's first file of a new hour.
    ///
    /// Each run follows the previous one at once, as a restarted container would: the test
    /// broker (Tansu 0.6) once left a static member that rejoined well after its previous run
    /// was killed (its session had expired) with an empty assignment for good, a gap that
    /// waiting for the engine made. Kafka replaces such a member; `scripts/test.sh` prints
    /// the broker's group log when a suite fails.
    fn kill_sink(&self, kills: &[Kill], engine_done: mpsc::Receiver<()>) -> usize {
        let mut at_hours = 0;
        for (i, k) in kills.iter().enumerate() {
            let mut sink = self.start("lake");
            let hours = partition_hours(&self.lake);
            let why = wait_until(&mut sink, &format!("sink kill {i}"), |text| {
                if k.at_hour && partition_hours(&self.lake) > hours {
                    Some("a new hour's file")
                } else if sum_of(text, "tickflow_lake_records_total").unwrap_or(0) >= k.after {
                    Some("records")
                } else {
                    None
                }
            });
            at_hours += usize::from(why == "a new hour's file");
            eprintln!("sink kill {i}: {why} ({k:?})");
            interrupt(sink, 0, "KILL");
        }
        let sink = self.start_with("lake", &["--stop-when-idle", "1h"]);
        engine_done.recv().unwrap();
        interrupt(sink, 0, "TERM");
        self.finish("lake");
        at_hours
    }
}

/// Polls the process's metrics every 20 ms until `done` names why to stop; fails if it exits
/// first or takes over 5 minutes.
fn wait_until(
    process: &mut Engine,
    what: &str,
    done: impl Fn(&str) -> Option<&'static str>,
) -> &'static str {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(why) = scrape(process.metrics_port).and_then(|text| done(&text)) {
            return why;
        }
        assert!(Instant::now() < deadline, "{what}: not within 300 s");
        let status = process.child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "{what}: the process ended first ({status:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sum of the series of metric `name` whose labels hold `label` (`resolution="1h"`).
fn series_sum(scrape: &str, name: &str, label: &str) -> u64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The (hour, Kafka partition) pairs of the ticks table's files (`ticks/dt=…/hour=…/
/// <topic>+<partition>+<offset>.avro`) in the lake so far.
fn partition_hours(lake: &Path) -> usize {
    let list = |dir: &Path| -> Vec<PathBuf> {
        let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
        entries.map(|e| e.path()).collect()
    };
    let mut pairs = std::collections::BTreeSet::new();
    for day in list(&lake.join("ticks")) {
        for hour in list(&day) {
            for file in list(&hour) {
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                if let Some(partition) = name.split('+').nth(1) {
                    pairs.insert((hour.clone(), partition.to_string()));
                }
            }
        }
    }
    pairs.len()
}

/// The lake holds every record of the ticks and of the landed bar topics once, registered;
/// `tickflow query`'s sums over each bar table's final bars equal the brute-force bars'; and
/// its update rows are the topic's.
async fn check_lake(
    s: &Soak<'_>,
    kafka: &KafkaConfig,
    client: &RegistryClient,
    (id, input, count): (&str, &str, u64),
    lake: &Path,
    topology: &Path,
) {
    let topics: Vec<String> = s
        .landed
        .iter()
        .map(|(r, _, _)| format!("{id}.bars.{r}"))
        .collect();
    let (k, i, t) = (kafka.clone(), input.to_string(), topics.clone());
    let (ticks, bars) = tokio::task::spawn_blocking(move || {
        let ticks = read_all(&k, &[&i], count as usize + 8);
        let names: Vec<&str> = t.iter().map(String::as_str).collect();
        (ticks, read_everything(&k, &names))
    })
    .await
    .unwrap();
    let mut tables = vec![(input, "ticks", "event_time")];
    for ((_, table, _), topic) in s.landed.iter().zip(&topics) {
        tables.push((topic.as_str(), table, "window_start"));
    }
    let all: Vec<_> = ticks.iter().chain(&bars).cloned().collect();
    common::lake::check_local(lake, &all, &tables, client).await;

    let (want, _) = expected_with(&tick_log(&ticks, client).await, &s.rules);
    let decoded = bars_each(&bars, client).await;
    for (res, table, _) in s.landed {
        let finals = want.values().filter(|b| b.resolution == *res);
        let sums = finals.fold((0, 0, 0), |(v, n, c), b| {
            (v + b.volume, n + b.trade_count, c + 1)
        });
        let updates = decoded
            .iter()
            .filter(|b| b.resolution == *res && !b.is_final)
            .count() as i64;
        // As the saved queries select final bars.
        let finals = format!(
            "SELECT sum(volume) AS v, sum(trade_count) AS n, count(*) AS c FROM {table} \
             WHERE coalesce(is_final, true)"
        );
        let got = query_numbers(topology, &finals, &["v", "n", "c"]);
        let not_final =
            format!("SELECT count(*) AS c FROM {table} WHERE NOT coalesce(is_final, true)");
        let got_updates = query_numbers(topology, &not_final, &["c"])[0];
        eprintln!("{id}: {table}: final (volume, trades, bars) {got:?}, {got_updates} updates");
        assert_eq!(
            got,
            [sums.0, sums.1, sums.2],
            "{table}: brute force {sums:?}"
        );
        assert_eq!(got_updates, updates, "{table}: the topic's update bars");
    }
}

/// The `columns` of the one row of `sql` run by `tickflow query` on the topology's lake, as
/// integers.
fn query_numbers(topology: &Path, sql: &str, columns: &[&str]) -> Vec<i64> {
    let out = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["query", "-t"])
        .arg(topology)
        .args(["--format", "json", sql])
        .env("TICKFLOW_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{sql}: {stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let number = |c: &&str| {
        let v = &row[*c];
        v.as_i64()
            .or_else(|| v.as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("{c} of {sql}: {v}"))
    };
    columns.iter().map(number).collect()
}
