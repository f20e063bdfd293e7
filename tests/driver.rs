//! The engine core in memory, through `TopologyTestDriver` (no broker, no registry):
//! - the example a user would write for the flagship topology;
//! - golden comparisons (tumbling, hopping with a `group_by`, session) of every bar and late
//!   tick against the brute-force recomputation, at up to 500,000 ticks;
//! - a crash at every step of the commit protocol, with and without the local stores and
//!   with unacknowledged records kept or lost, under both guarantees: the outputs, counted
//!   record by record, equal an uninterrupted run's.

use std::collections::BTreeMap;

use crate::common;

use common::golden::{
    Entry, Rules, START, assert_bars_equal, bar_map, expected_with, flagship_rules, session_rules,
    venue_hopping_rules,
};
use common::landing::{self, LakeCrash};
use tickflow::catalog::{Catalog, LocalCatalog};
use tickflow::codec::{DeadLetter, Tick};
use tickflow::config::lake::LakeSpec;
use tickflow::config::topology::TopologySpec;
use tickflow::lake::store::LakeStore;
use tickflow::query::LocalEngine;
use tickflow::sim::{SimConfig, TickStream, universe};
use tickflow::source::RawRecord;
use tickflow::state::changelog::{SEALED_KEY, Seal};
use tickflow::topology::driver::{Restart, TopologyTestDriver};
use tickflow::topology::edge::partition_of;
use tickflow::topology::engine::CommitStep;

const S: i64 = 1_000_000;
const PARTITIONS: i32 = 4;

fn tick(symbol: &str, seconds: i64, price: f64, size: i64) -> Tick {
    Tick {
        symbol: symbol.into(),
        venue: "XNAS".into(),
        price,
        size,
        event_time: START + seconds * S,
        trade_id: seconds,
        side: "B".into(),
        conditions: vec![],
        currency: "USD".into(),
    }
}

/// The example of the README's "Testing your topology": ticks in, a one-minute bar and a
/// late tick out.
#[test]
fn flagship_topology_example() {
    let mut driver = TopologyTestDriver::from_file("topologies/ohlc_vwap.yaml".as_ref()).unwrap();
    driver
        .pipe_ticks(&[
            tick("AAPL", 1, 190.0, 100),
            tick("AAPL", 20, 192.5, 300),
            tick("AAPL", 18, 189.0, 200), // out of order, within its windows' grace
            tick("AAPL", 59, 191.0, 400),
        ])
        .unwrap();
    assert!(
        driver.bars("bars.1m").unwrap().is_empty(),
        "the minute is still open"
    );
    // Stream time reaches 09:31:05, the minute's end plus its 5 s grace: the bar closes.
    driver.pipe_ticks(&[tick("AAPL", 65, 193.0, 50)]).unwrap();
    let bars = driver.bars("bars.1m").unwrap();
    assert_eq!(bars.len(), 1, "{bars:?}");
    let bar = &bars[0];
    assert_eq!(
        (bar.open, bar.high, bar.low, bar.close),
        (190.0, 192.5, 189.0, 191.0)
    );
    assert_eq!((bar.volume, bar.trade_count), (1000, 4));
    let vwap = (190.0 * 100.0 + 192.5 * 300.0 + 189.0 * 200.0 + 191.0 * 400.0) / 1000.0;
    assert!(driver.late().unwrap().is_empty());
    assert!((bar.vwap - vwap).abs() < 1e-9);
    // A tick for the closed minute is late: it goes to the late topic, once per resolution
    // whose window closed (1s and 1m; its 5m and 1h windows are open).
    driver.pipe_ticks(&[tick("AAPL", 30, 500.0, 1)]).unwrap();
    let late: Vec<String> = driver
        .late()
        .unwrap()
        .iter()
        .map(|d| d.detail.clone())
        .collect();
    assert_eq!(late.len(), 2, "{late:?}");
    assert_eq!(
        driver.bars("bars.1m").unwrap().len(),
        1,
        "the late tick changed no bar"
    );
}

/// Bad data goes to the dead-letter topic with its reason and the run goes on: bytes that
/// are not Avro, and a tick with a negative price.
#[test]
fn bad_records_go_to_the_dead_letter_topic() {
    let mut driver = TopologyTestDriver::from_file("topologies/ohlc_vwap.yaml".as_ref()).unwrap();
    driver.pipe_record(0, b"AAPL", b"not avro").unwrap();
    driver
        .pipe_ticks(&[
            tick("AAPL", 1, 190.0, 100),
            tick("AAPL", 2, -1.0, 100),
            tick("AAPL", 70, 191.0, 1),
        ])
        .unwrap();
    let dead = driver.dead_letters().unwrap();
    let reasons: Vec<(&str, i64)> = dead.iter().map(|d| (d.reason.as_str(), d.offset)).collect();
    assert_eq!(reasons, [("undecodable", 0), ("bad_price", 2)]);
    assert_eq!(
        dead[0].value.as_deref(),
        Some(&b"not avro"[..]),
        "the record itself"
    );
    let bars = driver.bars("bars.1m").unwrap();
    assert_eq!(
        (bars.len(), bars[0].volume),
        (1, 100),
        "the bad tick is not counted"
    );
    assert_eq!(driver.stats().dead_letters, 2);
}

/// Nothing from the future moves stream time: a watermark in nanoseconds, and a first tick
/// a day ahead of when it was produced, go to the dead-letter topic, and the good ticks
/// after them close their windows as if neither had come. A gap of a weekend is no verdict.
#[test]
fn stream_time_cannot_be_poisoned() {
    let mut driver = TopologyTestDriver::from_file("topologies/ohlc_vwap.yaml".as_ref()).unwrap();
    // A producer whose clock says 09:30:00 sends a tick of 09:30 the next day, first.
    driver.set_record_timestamp(Some(START));
    driver
        .pipe_ticks(&[tick("AAPL", 86_400, 190.0, 100)])
        .unwrap();
    // A watermark in nanoseconds instead of microseconds.
    driver.pipe_watermark(START * 1000).unwrap();
    // Then good ticks, sent as they happen (within the 5 minutes allowed ahead).
    for (seconds, price) in [(1, 190.0), (30, 191.0), (65, 192.0)] {
        driver.set_record_timestamp(Some(START + seconds * S - 2 * S));
        driver
            .pipe_ticks(&[tick("AAPL", seconds, price, 100)])
            .unwrap();
    }
    let dead = driver.dead_letters().unwrap();
    let reasons: Vec<(&str, i64)> = dead.iter().map(|d| (d.reason.as_str(), d.offset)).collect();
    assert_eq!(
        reasons,
        [("implausible_event_time", 0), ("implausible_event_time", 1)],
        "{dead:#?}"
    );
    assert!(
        dead[1].detail.starts_with("watermark "),
        "{}",
        dead[1].detail
    );
    let bars = driver.bars("bars.1m").unwrap();
    assert_eq!(bars.len(), 1, "only 09:30 closed: {bars:?}");
    assert_eq!((bars[0].volume, bars[0].close), (200, 191.0));
    assert!(driver.late().unwrap().is_empty(), "no good tick is late");

    // Monday's first tick, 65 hours after Friday's last: accepted, it closes Friday's bars.
    let monday = 65 * 3600;
    driver.set_record_timestamp(Some(START + monday * S));
    driver
        .pipe_ticks(&[tick("AAPL", monday, 193.0, 10)])
        .unwrap();
    assert_eq!(driver.dead_letters().unwrap().len(), 2);
    assert_eq!(driver.bars("bars.1h").unwrap().len(), 1);
    // Two days behind stream time is implausible, not late.
    driver.pipe_ticks(&[tick("AAPL", 3600, 191.0, 10)]).unwrap();
    let last = driver.dead_letters().unwrap().pop().unwrap();
    assert_eq!(last.reason.as_str(), "implausible_event_time");
    assert!(
        last.detail.contains("behind stream time"),
        "{}",
        last.detail
    );
}

/// `count` seeded ticks of `symbols` symbols, 1 % out of order and `late` of them 10-60 s
/// late.
fn simulated(count: u64, symbols: usize, late: f64, trades_per_second: f64) -> Vec<Tick> {
    let cfg = SimConfig {
        out_of_order_fraction: 0.01,
        late_fraction: late,
        late_delay_min: std::time::Duration::from_secs(10),
        late_delay_max: std::time::Duration::from_secs(60),
        trades_per_second,
        ..SimConfig::default()
    };
    let universe = universe(None, symbols).unwrap();
    TickStream::from_config(&cfg, universe, START, Some(count))
        .unwrap()
        .collect()
}

/// The partitioned log the driver builds from `ticks` and one watermark per partition
/// after them, for the brute-force recomputation.
fn log_of(ticks: &[Tick], watermark: i64) -> BTreeMap<i32, Vec<Entry>> {
    let mut log: BTreeMap<i32, Vec<Entry>> = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    for t in ticks {
        let entries = log
            .get_mut(&partition_of(t.symbol.as_bytes(), PARTITIONS))
            .unwrap();
        entries.push(Entry::Tick(entries.len() as i64, t.clone()));
    }
    for entries in log.values_mut() {
        entries.push(Entry::Watermark(watermark));
    }
    log
}

/// Pipes `ticks` in batches, then the end-of-input watermark.
fn drive(driver: &mut TopologyTestDriver, ticks: &[Tick], end: i64) {
    for batch in ticks.chunks(10_000) {
        driver.pipe_ticks(batch).unwrap();
    }
    driver.pipe_watermark(end).unwrap();
}

fn spec(yaml: &str) -> TopologySpec {
    TopologySpec::parse("test.yaml", yaml).unwrap()
}

/// Runs `yaml` over `ticks` and compares every bar of `topics` and every late tick with the
/// recomputation under `rules`.
fn golden(yaml: &str, topics: &[&str], ticks: &[Tick], rules: &Rules<'_>) {
    let mut driver = TopologyTestDriver::new(&spec(yaml), PARTITIONS).unwrap();
    let end = ticks.iter().map(|t| t.event_time).max().unwrap() + 86_400 * S;
    drive(&mut driver, ticks, end);
    let (want_bars, want_late) = expected_with(&log_of(ticks, end), rules);
    assert!(want_late.len() > 100, "late ticks: {}", want_late.len());
    let mut bars = Vec::new();
    for topic in topics {
        bars.extend(driver.bars(topic).unwrap());
    }
    let count = bars.len();
    let got = bar_map(bars);
    assert_eq!(got.len(), count, "each bar once");
    assert_bars_equal(&got, &want_bars);
    let late: Vec<DeadLetter> = driver.late().unwrap();
    let got_late: std::collections::BTreeSet<_> = late
        .iter()
        .map(|d| (d.partition, d.offset, resolution_of(d)))
        .collect();
    assert_eq!(
        got_late.len(),
        late.len(),
        "each late (tick, resolution) once"
    );
    assert_eq!(got_late, want_late);
}

/// The resolution a late envelope names: the first word of its detail.
fn resolution_of(d: &DeadLetter) -> String {
    let first = d.detail.split_whitespace().next();
    first.expect("a resolution").to_string()
}

#[test]
fn tumbling_bars_equal_brute_force_at_half_a_million_ticks() {
    let ticks = simulated(common::scaled(500_000), 200, 0.005, 2000.0);
    let yaml = "application: g\nsources:\n  ticks: { topic: ticks }\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m, 5m, 1h]\n      grace: 5s\n      aggregates: [open, high, low, close, volume, vwap, trade_count, turnover]\n      late_topic: late\nsinks:\n  - { input: bars, topic: \"bars.{resolution}\" }\n";
    let rules = flagship_rules();
    golden(
        yaml,
        &["bars.1s", "bars.1m", "bars.5m", "bars.1h"],
        &ticks,
        &rules,
    );
}

#[test]
fn hopping_bars_by_venue_equal_brute_force() {
    // Over three minutes of market time, for hopping windows to close before late ticks.
    let ticks = simulated(common::scaled(200_000), 100, 0.01, 200.0);
    let yaml = "application: v\nsources:\n  ticks: { topic: ticks }\noperators:\n  - filter: { id: round_lots, input: ticks, where: [{ field: size, op: ge, value: 100 }] }\n  - group_by: { id: by_venue, input: round_lots, field: venue }\n  - window:\n      id: venue_bars\n      input: by_venue\n      hopping: [{ size: 1m, advance: 30s }, { size: 5m, advance: 1m }]\n      grace: 5s\n      aggregates: [open, high, low, close, volume, vwap, trade_count]\n      late_topic: late\nsinks:\n  - { input: venue_bars, topic: \"bars.{resolution}\" }\n";
    let rules = venue_hopping_rules();
    golden(
        yaml,
        &["bars.1m-every-30s", "bars.5m-every-1m"],
        &ticks,
        &rules,
    );
}

#[test]
fn session_bars_equal_brute_force() {
    let ticks = simulated(common::scaled(100_000), 100, 0.01, 200.0);
    let yaml = "application: s\nsources:\n  ticks: { topic: ticks }\noperators:\n  - window:\n      id: sessions\n      input: ticks\n      session: { gap: 500ms }\n      grace: 3s\n      aggregates: [open, high, low, close, volume, vwap, trade_count]\n      late_topic: late\nsinks:\n  - { input: sessions, topic: \"bars.{resolution}\" }\n";
    let rules = session_rules();
    golden(yaml, &["bars.session"], &ticks, &rules);
}

/// Every output record (topic, key, value bytes) of a run, counted.
type Outputs = BTreeMap<(String, Vec<u8>, Vec<u8>), usize>;

fn outputs(driver: &TopologyTestDriver, topics: &[String]) -> Outputs {
    let mut all = Outputs::new();
    for topic in topics {
        for (_, _, r) in driver.records(topic).unwrap() {
            let key = (
                topic.clone(),
                r.key.unwrap_or_default(),
                r.value.unwrap_or_default(),
            );
            *all.entry(key).or_default() += 1;
        }
    }
    all
}

/// A crash: the number of the commit (from 0), its step, and how the engine restarts.
type Crash = (usize, CommitStep, Restart);

/// Runs `yaml` over `ticks` committing every `every` ticks; the commits named in `crashes`
/// crash at their step and the engine restarts as they say. Returns the driver at the end.
fn run_crashing(
    yaml: &str,
    (ticks, every): (&[Tick], usize),
    crashes: &[Crash],
) -> TopologyTestDriver {
    let mut driver = TopologyTestDriver::new(&spec(yaml), PARTITIONS).unwrap();
    driver.set_auto_commit(false);
    let end = ticks.iter().map(|t| t.event_time).max().unwrap() + 86_400 * S;
    for (i, batch) in ticks.chunks(every).enumerate() {
        driver.pipe_ticks(batch).unwrap();
        match crashes.iter().find(|c| c.0 == i) {
            Some((_, step, how)) => {
                driver.crash_in_next_commit(*step).unwrap();
                let err = driver.commit().unwrap_err();
                assert!(err.to_string().contains("crashed on purpose"), "{err}");
                driver.restart(*how).unwrap();
            }
            _ => driver.commit().unwrap(),
        }
    }
    driver.pipe_watermark(end).unwrap();
    driver.commit().unwrap();
    driver
}

/// A crash at each step of the first commit (no task has committed yet) and of the third,
/// every way, gives the uninterrupted run's outputs exactly.
fn crash_anywhere(yaml: &str, topics: &[&str], ticks: &[Tick]) {
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let want = outputs(&run_crashing(yaml, (ticks, 2_000), &[]), &topics);
    let records: usize = want.values().sum();
    assert!(records > 500, "{records} outputs");
    for (at, step) in [0, 2]
        .into_iter()
        .flat_map(|at| CommitStep::ALL.map(|s| (at, s)))
    {
        for keep_local_state in [true, false] {
            for keep_unacknowledged in [true, false] {
                let how = Restart {
                    keep_local_state,
                    keep_unacknowledged,
                };
                let got = run_crashing(yaml, (ticks, 2_000), &[(at, step, how)]);
                let got = outputs(&got, &topics);
                assert_same(
                    &got,
                    &want,
                    &format!("crash at {step:?} of commit {at}, {how:?}"),
                );
            }
        }
    }
}

/// Fails unless `got` holds each record of `want` as many times, and nothing else.
fn assert_same(got: &Outputs, want: &Outputs, what: &str) {
    let differing: Vec<_> = got
        .iter()
        .filter(|(k, n)| want.get(*k) != Some(n))
        .map(|((t, _, _), n)| (t.clone(), *n))
        .take(5)
        .collect();
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    assert!(
        differing.is_empty() && missing == 0,
        "{what}: {} records against {}; differing (topic, copies): {differing:?}, missing: {missing}",
        got.values().sum::<usize>(),
        want.values().sum::<usize>()
    );
}

/// `n` crashes at distinct commits below `commits`, each at a random step with a random
/// restart (seeded; `TICKFLOW_CRASH_SEED` picks another run).
fn random_crashes(seed: u64, n: usize, commits: usize, keep_unacknowledged: bool) -> Vec<Crash> {
    let mut at: Vec<usize> = common::kill_points(seed, 4 * n, 0, commits as u64)
        .into_iter()
        .map(|c| c as usize)
        .collect();
    at.sort_unstable();
    at.dedup();
    let picks = common::kill_points(seed ^ 0x9e37, at.len(), 0, 20);
    at.into_iter()
        .zip(picks)
        .take(n)
        .map(|(commit, pick)| {
            let how = Restart {
                keep_local_state: pick % 2 == 0,
                keep_unacknowledged: keep_unacknowledged || pick % 4 < 2,
            };
            (commit, CommitStep::ALL[pick as usize % 5], how)
        })
        .collect()
}

/// Issue 14's long run, in memory: a million ticks (40 % unless `TICKFLOW_TEST_FULL=1`) over
/// more than an hour of market time, 24 crashes at random commit steps, each restart with or
/// without the local stores and keeping or losing unacknowledged records: the 1s to 1h bars
/// and the late envelopes equal an uninterrupted run's, record by record; landed by a lake
/// sink that crashes 20 times (some right after an hour boundary), the lake's tables hold
/// each of them once and sum to the uninterrupted run's bars.
#[test]
fn twenty_four_crashes_over_a_million_ticks_change_no_output() {
    let ticks = simulated(common::scaled(1_000_000), 100, 0.002, 50.0);
    let span = ticks.last().unwrap().event_time - ticks[0].event_time;
    assert!(
        span > 3600 * S,
        "the run crosses an hour boundary: {span} us"
    );
    let yaml = "application: soak\nsources:\n  ticks: { topic: ticks }\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m, 5m, 1h]\n      grace: 5s\n      aggregates: [open, high, low, close, volume, vwap, trade_count, turnover]\n      late_topic: late\nsinks:\n  - { input: bars, topic: \"bars.{resolution}\" }\n";
    let tables = [
        ("bars.1s", "bars_1s", "window_start"),
        ("bars.1m", "bars_1m", "window_start"),
        ("bars.5m", "bars_5m", "window_start"),
        ("bars.1h", "bars_1h", "window_start"),
        ("late", "late", "error_time"),
    ];
    let crashes = random_crashes(14, 24, 100, false);
    assert_eq!(crashes.len(), 24);
    let landing = soak(yaml, (&ticks, 100), &crashes, &tables, 14);
    assert!(landing.at_hour_boundaries > 0, "{landing:?}");
}

/// The same for a `group_by` with hopping windows that emit updates: 20 engine crashes and
/// 20 lake-sink crashes. Restarts keep unacknowledged records here: a lost repartition record
/// is re-sent in a later place among the forwarded stream-time marks, which moves where an
/// update is emitted (a valid run, but not the uninterrupted one; see docs/delivery.md).
#[test]
fn twenty_crashes_of_a_group_by_with_updates_change_no_output() {
    let ticks = simulated(common::scaled(300_000), 60, 0.002, 50.0);
    let yaml = "application: soak-venue\nsources:\n  ticks: { topic: ticks }\noperators:\n  - group_by: { id: by_venue, input: ticks, field: venue }\n  - window:\n      id: bars\n      input: by_venue\n      hopping: [{ size: 5m, advance: 1m }]\n      grace: 10s\n      aggregates: [vwap, volume, trade_count]\n      emit: { update: 1s }\n      late_topic: late\nsinks:\n  - { input: bars, topic: \"bars.{resolution}\" }\n";
    let tables = [
        ("bars.5m-every-1m", "bars_5m", "window_start"),
        ("late", "late", "error_time"),
    ];
    let crashes = random_crashes(7, 20, 60, true);
    assert_eq!(crashes.len(), 20);
    soak(yaml, (&ticks, 60), &crashes, &tables, 7);
}

/// Fencing a zombie under `at_least_once` (issue 14). Instance A commits, processes more
/// without committing, and its partitions move to B (A is not told). A goes on: it emits the
/// outputs of new ticks and tries to commit, and finds B's claim: it stops and writes nothing
/// to the changelogs. Then a zombie's commit that landed after B's claim (one that checked the
/// end just before the claim) is planted in a changelog: B finds it at its next commit and
/// stops; its restart restores around it. C takes over from B and closes every window. The
/// outputs equal an uninterrupted run's plus exactly the zombie's outputs after B's claim
/// (no broker transaction can take those back; the documented limit), and every state,
/// restored by B and rebuilt by C from the changelogs, is the uninterrupted one.
#[test]
fn a_zombie_cannot_commit_after_its_partitions_moved() {
    let yaml = "application: zombie\nsources:\n  ticks: { topic: ticks }\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m, 5m]\n      grace: 5s\n      aggregates: [open, high, low, close, volume, vwap, trade_count]\n      late_topic: late\nsinks:\n  - { input: bars, topic: \"bars.{resolution}\" }\n";
    let topics: Vec<String> = ["bars.1s", "bars.1m", "bars.5m", "late"]
        .map(String::from)
        .into();
    let ticks = simulated(common::scaled(100_000), 40, 0.002, 50.0);
    let end = ticks.last().unwrap().event_time + 86_400 * S;
    let parts: Vec<&[Tick]> = ticks.chunks(ticks.len().div_ceil(4)).collect();
    let mut want = TopologyTestDriver::new(&spec(yaml), PARTITIONS).unwrap();
    for part in &parts {
        want.pipe_ticks(part).unwrap();
    }
    want.pipe_watermark(end).unwrap();
    let want = outputs(&want, &topics);

    let mut a = TopologyTestDriver::new(&spec(yaml), PARTITIONS).unwrap();
    a.pipe_ticks(parts[0]).unwrap();
    a.set_auto_commit(false);
    a.pipe_ticks(parts[1]).unwrap();
    let mut b = a.another_instance().unwrap();
    // The zombie goes on.
    let before = outputs(&a, &topics);
    a.pipe_ticks(parts[2]).unwrap();
    let zombie = difference(&outputs(&a, &topics), &before);
    assert!(zombie.values().sum::<usize>() > 100, "{zombie:?}");
    let log = a.log();
    let changelog = &a.changelog_topics()[0];
    let ends = |log: &tickflow::topology::memory::MemoryLog| {
        (0..PARTITIONS)
            .map(|p| log.end(changelog, p))
            .collect::<Vec<_>>()
    };
    let claimed = ends(&log);
    let err = a.commit().unwrap_err().to_string();
    assert!(err.contains("written by another instance"), "{err}");
    assert_eq!(
        ends(&log),
        claimed,
        "the zombie wrote nothing to the changelogs"
    );

    // B goes on, and a zombie's commit lands after B's: stale copies of A's first commit.
    b.set_auto_commit(true);
    b.run().unwrap();
    let records = log.read(changelog, 0, 0);
    let first_commit = records
        .split(|r| r.key.as_deref() == Some(SEALED_KEY))
        .find(|commit| commit.len() > 10)
        .expect("a commit of A with windows");
    for r in first_commit {
        log.append(changelog, 0, r.key.as_deref(), r.value.as_deref(), 0);
    }
    let seal = Seal {
        next_offset: 1,
        release: false,
        writer: "zombie".into(),
        at: Some(first_commit.len() as i64),
    };
    log.append(changelog, 0, Some(SEALED_KEY), Some(&seal.encode()), 0);
    let err = b.pipe_ticks(parts[3]).unwrap_err().to_string();
    assert!(err.contains("written by another instance"), "{err}");
    b.restart(Restart::default()).unwrap();

    // C takes over from B (B, idle, never commits again) and rebuilds from the changelogs.
    let mut c = b.another_instance().unwrap();
    c.pipe_watermark(end).unwrap();
    let got = outputs(&c, &topics);
    let mut expected = want.clone();
    for (k, n) in zombie {
        *expected.entry(k).or_default() += n;
    }
    assert_same(&got, &expected, "zombie, fenced");
}

/// The records of `after` that `before` does not hold (as many copies as it holds more).
fn difference(after: &Outputs, before: &Outputs) -> Outputs {
    after
        .iter()
        .filter_map(|(k, n)| {
            let extra = n - before.get(k).copied().unwrap_or(0);
            (extra > 0).then(|| (k.clone(), extra))
        })
        .collect()
}

/// Runs `yaml` over `ticks` in `commits` commits, uninterrupted and with `crashes`, and
/// compares every output record of the `tables`' topics; then lands the crashed run's
/// outputs through a lake writer that crashes 20 times (seeded by `seed`) and checks the lake
/// against the uninterrupted run.
fn soak(
    yaml: &str,
    (ticks, commits): (&[Tick], usize),
    crashes: &[Crash],
    tables: &[(&str, &str, &str)],
    seed: u64,
) -> landing::Landing {
    let topics: Vec<String> = tables.iter().map(|t| t.0.to_string()).collect();
    let every = ticks.len() / commits;
    let want = run_crashing(yaml, (ticks, every), &[]);
    let got = run_crashing(yaml, (ticks, every), crashes);
    assert_same(
        &outputs(&got, &topics),
        &outputs(&want, &topics),
        &format!("{crashes:?}"),
    );
    land_crashing_and_check(&got, &want, tables, seed, 20)
}

/// The records of `topics` in `driver`'s log, as a consumer reads them.
fn raw_records(driver: &TopologyTestDriver, topics: &[&str]) -> Vec<RawRecord> {
    let mut out = Vec::new();
    for topic in topics {
        for (partition, offset, r) in driver.records(topic).unwrap() {
            out.push(RawRecord {
                topic: topic.to_string(),
                partition,
                offset,
                key: r.key,
                value: r.value,
                timestamp_ms: Some(r.timestamp.div_euclid(1000)),
            });
        }
    }
    out
}

/// Issue 14's lake half, in memory: lands the outputs of the crashed run `got` (each topic
/// into its table, partitioned by its time field) through a lake writer that crashes `n`
/// times at seeded points, every kind of crash in turn, and checks the lake: each record of
/// the log exactly once, in its hour's partition, equal to its Kafka value; and through the
/// query engine, each bar table's `COUNT(*)`, `SUM(volume)` and `SUM(trade_count)` equal the
/// uninterrupted run's bars (`want`).
fn land_crashing_and_check(
    got: &TopologyTestDriver,
    want: &TopologyTestDriver,
    tables: &[(&str, &str, &str)],
    seed: u64,
    n: usize,
) -> landing::Landing {
    let topics: Vec<&str> = tables.iter().map(|t| t.0).collect();
    let records = raw_records(got, &topics);
    let total = records.len() as u64;
    let dir = tempfile::tempdir().unwrap();
    let spec = landing::lake_spec(dir.path(), tables, &["bars_1h"], 1_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = runtime.block_on(common::TestRegistry::start());
    landing::register_driver_schemas(&runtime, &registry.url);
    let mut at = common::kill_points(seed, n, 1, total * 3 / 5);
    at.sort_unstable();
    let crashes: Vec<(u64, LakeCrash)> = at
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, LakeCrash::ALL[i % LakeCrash::ALL.len()]))
        .collect();
    let landing = landing::land_crashing(
        &runtime,
        (&spec, &registry.url),
        &records,
        (200, total / 25),
        &crashes,
    );
    assert_eq!(landing.restarts, n);
    assert!(
        landing.skipped > 0,
        "no restart found records landed before"
    );
    eprintln!("lake: {} records landed, {landing:?}", records.len());
    let files = common::lake::local_files(dir.path());
    let landed = common::lake::landed(&files);
    let client = tickflow::codec::RegistryClient::new(&registry.url).unwrap();
    runtime.block_on(common::lake::check_records(
        &landed, &records, tables, &client,
    ));
    runtime.block_on(check_sums(&spec, tables, want));
    landing
}

/// `COUNT(*)`, `SUM(volume)` and `SUM(trade_count)` of each bar table, through the query
/// engine over the local catalog, equal those of `want`'s bars.
async fn check_sums(spec: &LakeSpec, tables: &[(&str, &str, &str)], want: &TopologyTestDriver) {
    let store = LakeStore::open(&spec.url, &Default::default())
        .await
        .unwrap();
    let catalog = Catalog::Local(LocalCatalog::new(store.clone()));
    let bar_tables: Vec<(&str, &str)> = tables
        .iter()
        .filter(|t| t.0 != "late")
        .map(|t| (t.0, t.1))
        .collect();
    let names: Vec<String> = bar_tables.iter().map(|t| t.1.to_string()).collect();
    let engine = LocalEngine::open(&store, &catalog, &spec.database, &names)
        .await
        .unwrap();
    for (topic, table) in bar_tables {
        let bars = want.bars(topic).unwrap();
        let expected = vec![
            Some(bars.len().to_string()),
            Some(bars.iter().map(|b| b.volume).sum::<i64>().to_string()),
            Some(bars.iter().map(|b| b.trade_count).sum::<i64>().to_string()),
        ];
        let sql = format!("SELECT COUNT(*), SUM(volume), SUM(trade_count) FROM {table}");
        let got = engine.query(&sql).await.unwrap();
        assert_eq!(got.rows, vec![expected], "{table}");
    }
}

const CRASH_TOPOLOGY: &str = "application: c\n{guarantee}sources:\n  ticks: { topic: ticks }\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m]\n      grace: 2s\n      aggregates: [open, high, low, close, volume, vwap]\n      late_topic: late\nsinks:\n  - { input: bars, topic: \"bars.{resolution}\" }\n";

#[test]
fn a_crash_at_any_commit_step_changes_no_output() {
    let ticks = simulated(20_000, 30, 0.01, 200.0);
    let yaml = CRASH_TOPOLOGY.replace("{guarantee}", "");
    crash_anywhere(&yaml, &["bars.1s", "bars.1m", "late"], &ticks);
}

#[test]
fn a_crash_at_any_commit_step_changes_no_output_under_transactions() {
    let ticks = simulated(20_000, 30, 0.01, 200.0);
    let yaml = CRASH_TOPOLOGY.replace("{guarantee}", "processing_guarantee: exactly_once_v2\n");
    crash_anywhere(&yaml, &["bars.1s", "bars.1m", "late"], &ticks);
}

const GROUP_BY_TOPOLOGY: &str = "application: r\nsources:\n  ticks: { topic: ticks }\noperators:\n  - group_by: { id: by_venue, input: ticks, field: venue }\n  - window:\n      id: bars\n      input: by_venue\n      hopping: [{ size: 2s, advance: 1s }]\n      grace: 2s\n      aggregates: [open, high, low, close, volume, vwap]\n      late_topic: late\nsinks:\n  - { input: bars, topic: \"bars.{resolution}\" }\n";

#[test]
fn a_crash_at_any_commit_step_changes_no_output_of_a_group_by() {
    let ticks = simulated(20_000, 30, 0.01, 200.0);
    crash_anywhere(GROUP_BY_TOPOLOGY, &["bars.2s-every-1s", "late"], &ticks);
}

/// Runs `yaml` over `ticks`, then resets it and runs it again, twice. Each run after a reset
/// starts over from the beginning of the input with empty state (the first run's outputs
/// stay in their topics) and writes every output once more: the same records as the run
/// before it (`same_as_first`: as the first run too, which processed the input in batches;
/// a `group_by`'s floating-point sums depend on the order its repartition topic interleaves
/// the sources, so there only the counts are compared with it).
fn reset_and_run_again(yaml: &str, topics: &[&str], ticks: &[Tick], same_as_first: bool) {
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let mut driver = TopologyTestDriver::new(&spec(yaml), PARTITIONS).unwrap();
    drive(
        &mut driver,
        ticks,
        ticks.last().unwrap().event_time + 86_400 * S,
    );
    let first = outputs(&driver, &topics);
    let mut records = vec![driver.stats().records];
    let mut runs = vec![first.clone()];
    for _ in 0..2 {
        let total = driver.stats().records;
        let before = outputs(&driver, &topics);
        let resets = driver.reset().unwrap();
        assert!(resets.iter().any(|r| r.deleted() > 0));
        for r in resets.iter().filter(|r| r.input != "ticks") {
            let end = driver.log().end(&r.input, r.partition);
            assert!(
                end > 0 && r.commit.seal.next_offset == end,
                "{} resumes at its end",
                r.input
            );
        }
        driver.run().unwrap();
        runs.push(difference(&outputs(&driver, &topics), &before));
        records.push(driver.stats().records - total);
    }
    // Records read, the repartition topic's included (whose progress broadcasts depend on
    // how often the first run committed).
    let again = records[1] > ticks.len() as u64 && records[2] == records[1];
    assert!(again, "the whole input again after each reset: {records:?}");
    assert_same(&runs[2], &runs[1], "the second reset");
    let count = |o: &Outputs| o.values().sum::<usize>();
    assert!(count(&first) > 500, "{} outputs", count(&first));
    match same_as_first {
        true => {
            assert_eq!(records[1], records[0], "{records:?}");
            assert_same(&runs[1], &first, "the first reset")
        }
        false => assert_eq!(count(&runs[1]), count(&first), "the first reset"),
    }
}

#[test]
fn a_reset_application_starts_over_and_writes_the_same_outputs() {
    let ticks = simulated(20_000, 30, 0.01, 200.0);
    let topics = ["bars.1s", "bars.1m", "late"];
    let yaml = CRASH_TOPOLOGY.replace("{guarantee}", "");
    reset_and_run_again(&yaml, &topics, &ticks, true);
    let yaml = CRASH_TOPOLOGY.replace("{guarantee}", "processing_guarantee: exactly_once_v2\n");
    reset_and_run_again(&yaml, &topics, &ticks, true);
}

#[test]
fn a_reset_group_by_skips_what_it_repartitioned_before() {
    let ticks = simulated(20_000, 30, 0.01, 200.0);
    reset_and_run_again(
        GROUP_BY_TOPOLOGY,
        &["bars.2s-every-1s", "late"],
        &ticks,
        false,
    );
}

fn tickflow_test(cases: &str) -> (bool, String) {
    tickflow_test_of("topologies/ohlc_vwap.yaml", cases)
}

fn tickflow_test_of(topology: &str, cases: &str) -> (bool, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["test", topology, cases])
        .current_dir(root)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `tickflow test` passes the shipped cases of the flagship topology.
#[test]
fn tickflow_test_passes_the_flagship_cases() {
    let (ok, text) = tickflow_test("topologies/ohlc_vwap.cases.yaml");
    assert!(ok, "{text}");
    assert!(text.contains("2 passed, 0 failed"), "{text}");
}

/// The shipped cases of the venue topology, which emits updates: an expectation that names
/// `is_final` matches the final bar or an update of its window, not whichever comes first.
#[test]
fn tickflow_test_tells_updates_from_final_bars() {
    let (ok, text) = tickflow_test_of(
        "topologies/venue_vwap.yaml",
        "topologies/venue_vwap.cases.yaml",
    );
    assert!(ok, "{text}");
    assert!(text.contains("1 passed, 0 failed"), "{text}");
}

/// `tickflow test` fails a wrong case and prints each difference.
#[test]
fn tickflow_test_prints_the_differing_bar() {
    let (ok, text) = tickflow_test("tests/cases/ohlc_vwap_wrong.cases.yaml");
    assert!(!ok, "{text}");
    for line in [
        "FAILED  wrong expectations",
        "bars.1m AAPL at 2026-11-26T14:30:00.000000Z: volume: expected 400, got 500",
        "bars.1m: missing bar AAPL at 2026-11-26T14:31:00.000000Z",
        "0 passed, 1 failed",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}
