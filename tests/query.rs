//! SQL over a lake written by a seeded run: each saved query's answer equals a brute-force
//! computation from the generated ticks; partition filters skip files; `reconcile` proves the
//! clean lake and finds a bar that was tampered with. Once over Avro files, once over Parquet.
//! The run's `/metrics`, scraped while it runs, has every metric the README documents, and
//! its counters and histograms moved.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use apache_avro::types::Value;
use common::golden::{Rules, expected_with, read_all, simulate_into, tick_log};
use common::lake;
use common::process::{series, start_engine_with, wait_scraping};
use serde_json::Value as Json;
use tickflow::codec::{Bar, RegistryClient, Tick};
use tickflow::config::lake::LakeFormat;
use tickflow::sim::SimConfig;

const MINUTE: i64 = 60_000_000;

fn tickflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(args)
        .env("TICKFLOW_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs a saved query (or SQL) on the topology's lake; its JSON rows, and stderr.
fn query(topology: &Path, what: &[&str]) -> (Vec<serde_json::Map<String, Json>>, String) {
    let t = topology.display().to_string();
    let mut args = vec!["query", "-t", &t, "--format", "json", "--stats"];
    args.extend(what);
    let out = tickflow(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "query {what:?} failed: {stderr}");
    let rows = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            Json::Object(o) => o,
            other => panic!("not a row: {other}"),
        })
        .collect();
    (rows, stderr)
}

fn text(row: &serde_json::Map<String, Json>, col: &str) -> String {
    row[col]
        .as_str()
        .unwrap_or_else(|| panic!("{col}: {row:?}"))
        .to_string()
}

fn num(row: &serde_json::Map<String, Json>, col: &str) -> f64 {
    row[col]
        .as_f64()
        .unwrap_or_else(|| panic!("{col}: {row:?}"))
}

fn near(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0)
}

fn day_of(t: i64) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

fn shown(t: i64) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_queries_and_reconcile_agree_with_brute_force() {
    queries_agree_with_brute_force(LakeFormat::Avro).await;
}

/// The same over a lake of Parquet files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_queries_and_reconcile_agree_over_parquet() {
    queries_agree_with_brute_force(LakeFormat::Parquet).await;
}

async fn queries_agree_with_brute_force(format: LakeFormat) {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("query");
    let input = format!("{id}.ticks");
    const COUNT: u64 = 40_000;
    // About an hour and a half of market time, with late and out-of-order ticks.
    let cfg = SimConfig {
        trades_per_second: 8.0,
        late_fraction: 0.01,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 30, COUNT).await;
    let (_dir, lake_dir, t, env) = lake::setup(
        &kafka,
        &registry.url,
        &id,
        &input,
        "{ max_records: 4000, flush_interval: 2s }",
    );
    if format == LakeFormat::Parquet {
        let text = std::fs::read_to_string(&t).unwrap() + "  format: parquet\n";
        std::fs::write(&t, text).unwrap();
    }
    let (t2, env2) = (t.clone(), env.clone());
    let (status, scraped) =
        tokio::task::spawn_blocking(move || wait_scraping(start_engine_with(&t2, &env2, &[])))
            .await
            .unwrap();
    assert!(status.success());
    check_metrics(&scraped);

    // Brute force from the generated ticks, as Kafka holds them.
    let (k, i) = (kafka.clone(), input.clone());
    let records = tokio::task::spawn_blocking(move || read_all(&k, &[&i], COUNT as usize + 8))
        .await
        .unwrap();
    let log = tick_log(&records, &client).await;
    let rules = Rules {
        windows: &[("1m", MINUTE, MINUTE)],
        grace: 2_000_000,
        key: |t| t.symbol.clone(),
        keep: |_| true,
        session_gap: None,
    };
    let (bars, late) = expected_with(&log, &rules);
    let mut ticks: Vec<(i32, i64, Tick)> = Vec::new();
    for (p, entries) in &log {
        for e in entries {
            if let common::golden::Entry::Tick(o, t) = e {
                ticks.push((*p, *o, t.clone()));
            }
        }
    }
    assert_eq!(ticks.len() as u64, COUNT);
    let day = ticks
        .iter()
        .map(|(_, _, t)| day_of(t.event_time))
        .max()
        .unwrap();
    let day_ticks: Vec<&(i32, i64, Tick)> = ticks
        .iter()
        .filter(|(_, _, t)| day_of(t.event_time) == day)
        .collect();
    let day_bars: Vec<&Bar> = bars
        .values()
        .filter(|b| day_of(b.window_start) == day)
        .collect();

    check_latest_bars(&t, &day_bars);
    check_top_movers(&t, &day_bars);
    check_vwap_deviation(&t, &day_ticks, format);
    check_volume_by_hour_venue(&t, &day_ticks);
    check_late_tick_rate(&t, &day_ticks, &late);
    check_partition_pruning(&t, &day_ticks, &day);
    check_chart(&t, &bars);
    check_reconcile(&t, &lake_dir, bars.len(), format);
}

/// The metric names the README's metrics list documents.
fn documented_metrics() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let list = readme
        .split("<!-- metrics -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /metrics -->").next())
        .expect("the README's metrics list");
    let names: Vec<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|code| code.split('{').next().unwrap().to_string())
        .filter(|n| n.starts_with("tickflow_") || n.starts_with("process_"))
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    names
}

/// Every documented metric is exposed; the run's counters and histograms moved.
fn check_metrics(scrape: &str) {
    for name in documented_metrics() {
        assert!(
            scrape.contains(&format!("# TYPE {name} ")),
            "{name} is documented but not exposed"
        );
    }
    for moved in [
        "tickflow_records_total",
        "tickflow_bars_total",
        "tickflow_late_ticks_total",
        "tickflow_commits_total{outcome=\"committed\"}",
        "tickflow_commit_duration_seconds_count",
        "tickflow_bar_latency_seconds_count",
        "tickflow_lake_records_total",
        "tickflow_lake_files_total",
        "tickflow_lake_upload_duration_seconds_count",
        "tickflow_lake_latency_seconds_count",
        "tickflow_catalog_calls_total{operation=\"add_partitions\",outcome=\"ok\"}",
        "tickflow_build_info{",
    ] {
        let value = if moved.ends_with('{') {
            scrape
                .lines()
                .find(|l| l.starts_with(moved))
                .map_or(0.0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
        } else {
            let sum = common::process::sum_of(scrape, moved);
            sum.unwrap_or_else(|| panic!("no series {moved}")) as f64
        };
        assert!(value > 0.0, "{moved} did not move");
    }
    for labelled in [
        "tickflow_records_total{partition=",
        "tickflow_bars_total{resolution=",
        "tickflow_late_ticks_total{resolution=",
        "tickflow_event_time_lag_seconds{",
        "tickflow_consumer_lag_records{consumer=\"engine\"",
        "tickflow_consumer_lag_records{consumer=\"lake\"",
        "tickflow_open_windows{",
        "tickflow_state_store_bytes{",
    ] {
        assert!(
            scrape.lines().any(|l| l.starts_with(labelled)),
            "no {labelled}...}} series"
        );
    }
    assert_eq!(
        series(
            scrape,
            "tickflow_dead_letters_total{reason=\"overflow\",stage=\"lake\"}"
        ),
        0.0,
        "every reason's series exists from the start"
    );
}

/// Candles drawn in an SVG chart: filled rectangles in the up or down colour.
fn candles_in(svg: &str) -> usize {
    let colours = ["fill=\"#26a69a\"", "fill=\"#ef5350\""];
    svg.to_lowercase()
        .split("<rect")
        .skip(1)
        .filter(|r| colours.iter().any(|c| r.contains(c)))
        .count()
}

/// `tickflow chart` draws one candle per bar of the symbol, within --from/--to, as SVG and
/// PNG.
fn check_chart(t: &Path, bars: &BTreeMap<common::golden::BarId, Bar>) {
    let symbol = &bars.keys().next().unwrap().0;
    let starts: Vec<i64> = bars
        .values()
        .filter(|b| &b.symbol == symbol)
        .map(|b| b.window_start)
        .collect();
    let dir = t.parent().unwrap();
    let tt = t.display().to_string();
    let svg = dir.join("chart.svg").display().to_string();
    let out = tickflow(&["chart", "-t", &tt, "-s", symbol, "-r", "1m", "-o", &svg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        candles_in(&std::fs::read_to_string(&svg).unwrap()),
        starts.len()
    );

    let (from, to) = (starts[2], starts[2] + 10 * MINUTE);
    let want = starts.iter().filter(|s| (from..to).contains(*s)).count();
    let png = dir.join("chart.png").display().to_string();
    let range = |t: i64| {
        chrono::DateTime::from_timestamp_micros(t)
            .unwrap()
            .to_rfc3339()
    };
    let (f, u) = (range(from), range(to));
    for file in [&svg, &png] {
        let args = [
            "chart", "-t", &tt, "-s", symbol, "--from", &f, "--to", &u, "-o", file,
        ];
        let out = tickflow(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("drew {want} 1m bars")),
            "{stdout}"
        );
    }
    assert_eq!(candles_in(&std::fs::read_to_string(&svg).unwrap()), want);
    let png = std::fs::read(&png).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1200, 700));
    if let Ok(keep) = std::env::var("TICKFLOW_TEST_KEEP_CHART") {
        std::fs::copy(dir.join("chart.png"), keep).unwrap();
    }
}

fn check_latest_bars(t: &Path, day_bars: &[&Bar]) {
    let mut want: BTreeMap<&str, &Bar> = BTreeMap::new();
    for b in day_bars {
        let e = want.entry(b.symbol.as_str()).or_insert(b);
        if b.window_start > e.window_start {
            *e = b;
        }
    }
    let (rows, _) = query(t, &["--file", "queries/latest_bars.sql"]);
    assert_eq!(rows.len(), want.len(), "one row per symbol");
    for (row, (symbol, b)) in rows.iter().zip(&want) {
        assert_eq!(text(row, "symbol"), *symbol, "ordered by symbol");
        assert_eq!(text(row, "window_start"), shown(b.window_start));
        for (col, v) in [
            ("open", b.open),
            ("high", b.high),
            ("low", b.low),
            ("close", b.close),
        ] {
            assert_eq!(num(row, col), v, "{symbol} {col}");
        }
        assert_eq!(num(row, "volume"), b.volume as f64);
        assert_eq!(num(row, "trade_count"), b.trade_count as f64);
        assert!(near(num(row, "vwap"), b.vwap, 1e-9), "{symbol} vwap");
    }
}

fn check_top_movers(t: &Path, day_bars: &[&Bar]) {
    let mut ends: BTreeMap<&str, (&Bar, &Bar)> = BTreeMap::new();
    for b in day_bars {
        let e = ends.entry(b.symbol.as_str()).or_insert((b, b));
        if b.window_start < e.0.window_start {
            e.0 = b;
        }
        if b.window_start > e.1.window_start {
            e.1 = b;
        }
    }
    let mut want: Vec<(&str, f64, f64, f64)> = ends
        .iter()
        .map(|(s, (first, last))| (*s, first.open, last.close, last.close / first.open - 1.0))
        .collect();
    want.sort_by(|a, b| b.3.abs().total_cmp(&a.3.abs()).then(a.0.cmp(b.0)));
    want.truncate(10);
    let (rows, _) = query(t, &["--file", "queries/top_movers.sql"]);
    assert_eq!(rows.len(), want.len());
    for (row, (symbol, open, close, change)) in rows.iter().zip(&want) {
        assert_eq!(text(row, "symbol"), *symbol);
        assert_eq!(num(row, "first_open"), *open);
        assert_eq!(num(row, "last_close"), *close);
        assert!(
            (num(row, "change_pct") - 100.0 * change).abs() <= 0.0006,
            "{row:?}"
        );
    }
}

fn check_vwap_deviation(t: &Path, day_ticks: &[&(i32, i64, Tick)], format: LakeFormat) {
    /// Turnover, volume, (event time, trade id) of the last trade, and its price.
    type Day = (f64, i64, (i64, i64), f64);
    let mut by_symbol: BTreeMap<&str, Day> = BTreeMap::new();
    for (_, _, tick) in day_ticks {
        let e = by_symbol
            .entry(tick.symbol.as_str())
            .or_insert((0.0, 0, (i64::MIN, 0), 0.0));
        e.0 += tick.price * tick.size as f64;
        e.1 += tick.size;
        // The last trade at the lake's precision: Avro files hold milliseconds.
        let time = match format {
            LakeFormat::Avro => tick.event_time.div_euclid(1_000),
            LakeFormat::Parquet => tick.event_time,
        };
        if (time, tick.trade_id) > e.2 {
            e.2 = (time, tick.trade_id);
            e.3 = tick.price;
        }
    }
    let (rows, _) = query(t, &["--file", "queries/vwap_deviation.sql"]);
    assert_eq!(rows.len(), by_symbol.len());
    let mut previous = f64::INFINITY;
    for row in &rows {
        let (turnover, volume, _, last) = by_symbol[text(row, "symbol").as_str()];
        let vwap = turnover / volume as f64;
        assert_eq!(num(row, "last_price"), last, "{row:?}");
        assert_eq!(num(row, "volume"), volume as f64);
        assert!(near(num(row, "vwap"), vwap, 1e-9), "{row:?}");
        let bps = 10_000.0 * (last / vwap - 1.0);
        assert!(
            (num(row, "deviation_bps") - bps).abs() <= 0.006,
            "{row:?} vs {bps}"
        );
        assert!(bps.abs() <= previous + 1e-6, "largest deviation first");
        previous = bps.abs();
    }
}

fn check_volume_by_hour_venue(t: &Path, day_ticks: &[&(i32, i64, Tick)]) {
    let mut want: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for (_, _, tick) in day_ticks {
        let hour = chrono::DateTime::from_timestamp_micros(tick.event_time)
            .unwrap()
            .format("%H")
            .to_string();
        let e = want.entry((hour, tick.venue.clone())).or_default();
        e.0 += tick.size;
        e.1 += 1;
    }
    let (rows, _) = query(t, &["--file", "queries/volume_by_hour_venue.sql"]);
    let got: Vec<((String, String), (i64, i64))> = rows
        .iter()
        .map(|r| {
            let key = (text(r, "hour"), text(r, "venue"));
            (key, (num(r, "volume") as i64, num(r, "trades") as i64))
        })
        .collect();
    let want: Vec<_> = want.into_iter().collect();
    assert_eq!(got, want);
}

fn check_late_tick_rate(
    t: &Path,
    day_ticks: &[&(i32, i64, Tick)],
    late: &BTreeSet<common::golden::LateTick>,
) {
    let mut want: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (p, o, tick) in day_ticks {
        let e = want.entry(tick.symbol.as_str()).or_default();
        e.0 += 1;
        if late.contains(&(*p, *o, "1m".to_string())) {
            e.1 += 1;
        }
    }
    assert!(
        want.values().any(|(_, late)| *late > 0),
        "the run has late ticks"
    );
    let (rows, _) = query(t, &["--file", "queries/late_tick_rate.sql"]);
    assert_eq!(rows.len(), want.len());
    for row in &rows {
        let (count, late) = want[text(row, "symbol").as_str()];
        assert_eq!(num(row, "ticks") as i64, count, "{row:?}");
        assert_eq!(num(row, "late_ticks") as i64, late, "{row:?}");
        let pct = 100.0 * late as f64 / count as f64;
        assert!((num(row, "late_pct") - pct).abs() <= 0.0006, "{row:?}");
    }
}

/// A filter on the partition keys reads only that hour's files. (The query filters on a
/// column too: over Parquet a bare `count(*)` is answered from the footers' statistics
/// without scanning any file.)
fn check_partition_pruning(t: &Path, day_ticks: &[&(i32, i64, Tick)], day: &str) {
    let hour_of = |t: i64| {
        chrono::DateTime::from_timestamp_micros(t)
            .unwrap()
            .format("%H")
            .to_string()
    };
    let hour = hour_of(day_ticks[0].2.event_time);
    let want = day_ticks
        .iter()
        .filter(|(_, _, t)| hour_of(t.event_time) == hour && t.size >= 100)
        .count();
    let sql = format!(
        "SELECT count(*) AS n FROM ticks WHERE dt = '{day}' AND hour = '{hour}' AND size >= 100"
    );
    let (rows, stderr) = query(t, &[&sql]);
    assert_eq!(num(&rows[0], "n") as usize, want);
    let stats = stderr
        .lines()
        .find_map(|l| l.strip_prefix("files read: "))
        .unwrap_or_else(|| panic!("no stats in {stderr}"));
    let (read, rest) = stats.split_once(" of ").unwrap();
    let present: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
    let read: usize = read.parse().unwrap();
    assert!(read > 0 && read < present, "pruning: {stats}");
}

/// `reconcile` passes on the lake as written, and (in an Avro lake) fails on a bar whose
/// close was changed.
fn check_reconcile(t: &Path, lake_dir: &Path, bars: usize, format: LakeFormat) {
    let tt = t.display().to_string();
    let out = tickflow(&["reconcile", "-t", &tt]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(&format!("bars checked: {bars} (1m {bars})")),
        "{report}"
    );
    assert!(
        report.contains("bars differing: 0, missing: 0, unexpected: 0"),
        "{report}"
    );
    let files = lake::local_files(lake_dir);
    assert!(
        files
            .iter()
            .all(|(p, _)| LakeFormat::of_path(p) == Some(format))
    );
    if format != LakeFormat::Avro {
        return;
    }

    let (path, symbol) = tamper_one_close(lake_dir);
    let out = tickflow(&["reconcile", "-t", &tt]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "a tampered lake must fail: {report}");
    assert!(
        report.contains("bars differing: 1, missing: 0, unexpected: 0"),
        "{report}"
    );
    assert!(report.contains("  close: 1 bar(s)"), "{report}");
    assert!(
        report.contains(&format!("differs: {symbol} 1m")),
        "{report} ({path})"
    );
}

/// Rewrites the first bar file with its first bar's close raised by one cent, keeping the
/// file's metadata; returns the file and the bar's symbol.
fn tamper_one_close(lake_dir: &Path) -> (String, String) {
    let (path, bytes) = lake::local_files(lake_dir)
        .into_iter()
        .filter(|(p, _)| p.starts_with("bars_1m/"))
        .min()
        .expect("a bar file");
    let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
    let schema = reader.writer_schema().clone();
    let metadata = reader.user_metadata().clone();
    let mut values: Vec<Value> = reader.map(Result::unwrap).collect();
    let Value::Record(fields) = &mut values[0] else {
        panic!("not a record")
    };
    let mut symbol = String::new();
    for (name, v) in fields.iter_mut() {
        match (name.as_str(), v) {
            ("symbol", Value::String(s)) => symbol = s.clone(),
            ("close", Value::Double(c)) => *c += 0.01,
            _ => {}
        }
    }
    let mut writer = apache_avro::Writer::new(&schema, Vec::new()).unwrap();
    for (k, v) in metadata {
        writer.add_user_metadata(k, v).unwrap();
    }
    for v in values {
        writer.append_value(v).unwrap();
    }
    std::fs::write(lake_dir.join(&path), writer.into_inner().unwrap()).unwrap();
    (path, symbol)
}
