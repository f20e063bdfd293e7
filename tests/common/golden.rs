//! Brute-force recomputation of bars from a partitioned tick log, written independently of the
//! engine's operators, and readers for what the engine produced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tickflow::codec::{
    Bar, DeadLetter, Decoder, Encoder, RecordKind, RegistryClient, Tick, split_header, watermark_of,
};
use tickflow::config::{AppConfig, KafkaConfig, TopologySpec};
use tickflow::kafka::KafkaSink;
use tickflow::kafka::ensure_topic;
use tickflow::metrics::Metrics;
use tickflow::sim::{
    Pace, RunSummary, SimConfig, TickStream, end_of_input, produce_ticks, universe,
};
use tickflow::topology::runtime::{RunOptions, RunStats, run};

/// Runs the topology in `yaml` in process, with a fresh state directory and 500 ms commits,
/// until its input has been idle for 30 s; `metrics` sees what it counts.
pub async fn run_until_idle(
    kafka: &KafkaConfig,
    registry_url: &str,
    yaml: &str,
    metrics: Metrics,
) -> RunStats {
    let spec = TopologySpec::parse("test.yaml", yaml).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut app = AppConfig {
        kafka: kafka.clone(),
        ..AppConfig::default()
    };
    app.registry.url = registry_url.to_string();
    app.state.dir = state.path().to_path_buf();
    let options = RunOptions {
        commit_interval: Duration::from_millis(500),
        stop_when_idle: Some(Duration::from_secs(30)),
        instance_id: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    run(&spec, &app, options, metrics, stop).await.unwrap()
}

/// One second, in microseconds.
const SECOND: i64 = 1_000_000;

/// The topology most process tests run, as YAML: 1-second and 1-minute bars per symbol of
/// `input` with 2 s grace, to `{id}.bars.1s` and `{id}.bars.1m`, late ticks to `{id}.late`.
/// `header` goes right after the application line (a processing guarantee, say).
pub fn symbol_bars_topology(id: &str, input: &str, header: &str) -> String {
    format!(
        "application: {id}\n{header}sources:\n  ticks: {{ topic: {input} }}\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s, 1m]\n      grace: 2s\n      aggregates: [open, high, low, close, volume, vwap]\n      late_topic: {id}.late\nsinks:\n  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
    )
}

/// The rules of [`symbol_bars_topology`].
pub fn symbol_bars_rules() -> Rules<'static> {
    Rules {
        windows: &[("1s", SECOND, SECOND), ("1m", 60 * SECOND, 60 * SECOND)],
        grace: 2 * SECOND,
        key: |t| t.symbol.clone(),
        keep: |_| true,
        session_gap: None,
    }
}

/// The rules of the golden tests' flagship topology: 1s, 1m, 5m and 1h bars per symbol,
/// 5 s grace.
pub fn flagship_rules() -> Rules<'static> {
    Rules {
        windows: &[
            ("1s", SECOND, SECOND),
            ("1m", 60 * SECOND, 60 * SECOND),
            ("5m", 300 * SECOND, 300 * SECOND),
            ("1h", 3600 * SECOND, 3600 * SECOND),
        ],
        grace: 5 * SECOND,
        key: |t| t.symbol.clone(),
        keep: |_| true,
        session_gap: None,
    }
}

/// The rules of the golden tests' re-keyed topology: round lots (size >= 100) by venue in
/// 1m-every-30s and 5m-every-1m hopping windows, 5 s grace.
pub fn venue_hopping_rules() -> Rules<'static> {
    Rules {
        windows: &[
            ("1m-every-30s", 60 * SECOND, 30 * SECOND),
            ("5m-every-1m", 300 * SECOND, 60 * SECOND),
        ],
        grace: 5 * SECOND,
        key: |t| t.venue.clone(),
        keep: |t| t.size >= 100,
        session_gap: None,
    }
}

/// The rules of the golden tests' session topology: per symbol, 500 ms gap, 3 s grace.
pub fn session_rules() -> Rules<'static> {
    Rules {
        windows: &[],
        grace: 3 * SECOND,
        key: |t| t.symbol.clone(),
        keep: |_| true,
        session_gap: Some(SECOND / 2),
    }
}

/// Market start of every simulation in the tests: Thursday 2026-11-26 09:30 New York.
pub const START: i64 = 1_795_703_400_000_000;
use tickflow::source::{RawRecord, ReadUntil};

/// A tick or a watermark at its position in the log.
pub enum Entry {
    Tick(i64, Tick),
    Watermark(i64),
}

/// Bar identity: (symbol, resolution, window start).
pub type BarId = (String, String, i64);

/// A late (partition, offset, resolution) triple.
pub type LateTick = (i32, i64, String);

/// Creates `topic` with 8 partitions and produces a seeded simulation of `count` ticks of the
/// first `symbols` symbols to it, then the end-of-input watermarks.
pub async fn simulate_into(
    kafka: &KafkaConfig,
    registry: &RegistryClient,
    topic: &str,
    cfg: SimConfig,
    symbols: usize,
    count: u64,
) {
    simulate(kafka, registry, topic, cfg, (symbols, count), true).await
}

/// Like [`simulate_into`], without the end-of-input watermarks: the input just goes quiet.
pub async fn simulate_open_ended(
    kafka: &KafkaConfig,
    registry: &RegistryClient,
    topic: &str,
    cfg: SimConfig,
    symbols: usize,
    count: u64,
) {
    simulate(kafka, registry, topic, cfg, (symbols, count), false).await
}

async fn simulate(
    kafka: &KafkaConfig,
    registry: &RegistryClient,
    topic: &str,
    cfg: SimConfig,
    (symbols, count): (usize, u64),
    end_watermarks: bool,
) {
    let mut feed = Feed::new(kafka, registry, topic, cfg, symbols, count).await;
    tokio::task::spawn_blocking(move || {
        if end_watermarks {
            feed.finish();
        } else {
            feed.send(count);
            assert_eq!(feed.produced(), count);
        }
    })
    .await
    .unwrap();
}

/// `count` simulated ticks of `symbols` symbols, produced into `topic` (8 partitions) in
/// parts when the test says so: a test can let its engines run dry between parts, so that
/// what it does to them happens mid-stream however fast the machine is. Its methods block.
pub struct Feed {
    ticks: TickStream,
    sink: KafkaSink,
    encoder: Encoder<Tick>,
    kafka: KafkaConfig,
    topic: String,
    /// Ticks in the whole feed.
    count: u64,
    /// Ticks produced so far, and the range of their event times.
    produced: RunSummary,
}

impl Feed {
    /// Creates `topic` and registers its schema; produces nothing yet.
    pub async fn new(
        kafka: &KafkaConfig,
        registry: &RegistryClient,
        topic: &str,
        cfg: SimConfig,
        symbols: usize,
        count: u64,
    ) -> Self {
        ensure_topic(kafka, topic, 8, &[]).await.unwrap();
        let universe = universe(None, symbols).unwrap();
        let ticks = TickStream::from_config(&cfg, universe, START, Some(count)).unwrap();
        let schema_id = registry
            .register_value(topic, RecordKind::Tick)
            .await
            .unwrap();
        Self {
            ticks,
            sink: KafkaSink::new(kafka, topic).unwrap(),
            encoder: Encoder::<Tick>::new(RecordKind::Tick, schema_id),
            kafka: kafka.clone(),
            topic: topic.to_string(),
            count,
            produced: RunSummary::default(),
        }
    }

    /// Produces the next `n` ticks (fewer at the end of the stream) and waits for their
    /// acknowledgements.
    pub fn send(&mut self, n: u64) {
        let ticks = self.ticks.by_ref().take(n as usize);
        let part =
            produce_ticks(ticks, &self.encoder, &self.sink, Pace::default(), |_| {}).unwrap();
        self.produced.ticks += part.ticks;
        self.produced.event_time_range =
            match (self.produced.event_time_range, part.event_time_range) {
                (Some((lo, hi)), Some((l, h))) => Some((lo.min(l), hi.max(h))),
                (a, b) => a.or(b),
            };
    }

    /// Produces the rest of the ticks, then the end-of-input watermark on every partition.
    pub fn finish(mut self) {
        self.send(u64::MAX);
        assert_eq!(self.produced.ticks, self.count, "ticks in {}", self.topic);
        end_of_input(&self.kafka, &self.topic, &self.produced).unwrap();
    }

    /// Ticks produced so far.
    pub fn produced(&self) -> u64 {
        self.produced.ticks
    }
}

/// Reads `count` records of `topics` from the beginning with a fresh group (giving up when
/// nothing arrives for 60 s: Tansu's SQLite storage can pause fetches for seconds on a busy
/// machine), then whatever follows within 2 s.
fn read_from_start(kafka: &KafkaConfig, topics: &[&str], count: usize) -> Vec<RawRecord> {
    let group = super::unique("golden-reader");
    let until = ReadUntil {
        count,
        idle: Duration::from_secs(60),
        linger: Duration::from_secs(2),
    };
    tickflow::source::read(kafka, &group, topics, until).unwrap()
}

/// Reads exactly `count` records of `topics`: none missing, none extra.
pub fn read_all(kafka: &KafkaConfig, topics: &[&str], count: usize) -> Vec<RawRecord> {
    let records = read_from_start(kafka, topics, count);
    assert_eq!(records.len(), count, "records in {topics:?}");
    records
}

/// Reads every record `topics` hold now, none missing: the count is the sum of their
/// partitions' ends (topics written without transactions, from offset 0), so a reader that
/// a busy broker pauses does not stop early.
pub fn read_everything(kafka: &KafkaConfig, topics: &[&str]) -> Vec<RawRecord> {
    read_all(kafka, topics, records_in(kafka, topics) as usize)
}

/// The records `topics` hold now: the sum of their partitions' ends (topics written without
/// transactions, from offset 0).
pub fn records_in(kafka: &KafkaConfig, topics: &[&str]) -> i64 {
    let mut partitions = Vec::new();
    for t in topics {
        let n = tickflow::kafka::partition_count(kafka, t).unwrap();
        partitions.extend((0..n).map(|p| (t.to_string(), p)));
    }
    let ends = tickflow::kafka::high_watermarks(kafka, &partitions).unwrap();
    ends.iter().map(|(_, end)| end).sum()
}

/// Reads at least `count` records of `topics` (replays after a crash may add identical
/// duplicates).
pub fn read_at_least(kafka: &KafkaConfig, topics: &[&str], count: usize) -> Vec<RawRecord> {
    let records = read_from_start(kafka, topics, count);
    assert!(
        records.len() >= count,
        "{} records in {topics:?}, expected at least {count}",
        records.len()
    );
    records
}

/// Decodes a tick topic into per-partition logs in offset order.
pub async fn tick_log(
    records: &[RawRecord],
    registry: &RegistryClient,
) -> BTreeMap<i32, Vec<Entry>> {
    let mut decoder = Decoder::<Tick>::new(RecordKind::Tick);
    let mut log: BTreeMap<i32, Vec<(i64, Entry)>> = BTreeMap::new();
    for r in records {
        let entry = match watermark_of(r.key.as_deref(), r.value.as_deref()) {
            Some(t) => Entry::Watermark(t),
            None => {
                let bytes = r.value.as_deref().unwrap();
                let (id, _) = split_header(bytes).unwrap();
                if !decoder.knows(id) {
                    registry.teach(&mut decoder, id).await.unwrap();
                }
                Entry::Tick(r.offset, decoder.decode(bytes).unwrap())
            }
        };
        log.entry(r.partition).or_default().push((r.offset, entry));
    }
    log.into_iter()
        .map(|(p, mut v)| {
            v.sort_by_key(|(o, _)| *o);
            (p, v.into_iter().map(|(_, e)| e).collect())
        })
        .collect()
}

/// A tick counted in a window: ((event time, tie-break ordinal), price, size).
type Counted = ((i64, i64), f64, i64);

/// The windowing rules a brute-force recomputation applies.
pub struct Rules<'a> {
    /// Resolutions as (name, size, advance), microseconds.
    pub windows: &'a [(&'a str, i64, i64)],
    /// Grace period, microseconds.
    pub grace: i64,
    /// The key a tick's bars are under.
    pub key: fn(&Tick) -> String,
    /// Whether a tick passes the topology's filters (dropped ticks do not move stream time).
    pub keep: fn(&Tick) -> bool,
    /// Session windows with this gap (resolution `session`) instead of `windows`.
    pub session_gap: Option<i64>,
}

/// Expected bars and late triples under `rules`. Lateness is judged by the stream time of the
/// partition a tick was read from; a tick late for one of its (hopping) windows is reported
/// once for that resolution and still counts in its open windows. OHLC ties between equal
/// event times go to the lower (partition, offset).
pub fn expected_with(
    log: &BTreeMap<i32, Vec<Entry>>,
    rules: &Rules<'_>,
) -> (BTreeMap<BarId, Bar>, BTreeSet<LateTick>) {
    let mut windows: BTreeMap<BarId, Vec<Counted>> = BTreeMap::new();
    let mut sessions: BTreeMap<String, Vec<Counted>> = BTreeMap::new();
    let mut late = BTreeSet::new();
    for (p, entries) in log {
        let mut stream_time = i64::MIN;
        for e in entries {
            match e {
                Entry::Watermark(t) => stream_time = stream_time.max(*t),
                Entry::Tick(_, t) if !(rules.keep)(t) => {}
                Entry::Tick(offset, t) => {
                    stream_time = stream_time.max(t.event_time);
                    let order = (t.event_time, (i64::from(*p) << 40) | offset);
                    if rules.session_gap.is_some() {
                        if t.event_time + rules.grace < stream_time {
                            late.insert((*p, *offset, "session".to_string()));
                        } else {
                            let ticks = sessions.entry((rules.key)(t)).or_default();
                            ticks.push((order, t.price, t.size));
                        }
                    }
                    for (name, size, advance) in rules.windows {
                        let mut start = t.event_time.div_euclid(*advance) * advance;
                        while start + size > t.event_time {
                            if start + size + rules.grace <= stream_time {
                                late.insert((*p, *offset, name.to_string()));
                            } else {
                                windows
                                    .entry(((rules.key)(t), name.to_string(), start))
                                    .or_default()
                                    .push((order, t.price, t.size));
                            }
                            start -= advance;
                        }
                    }
                }
            }
        }
    }
    // Sessions: a key's on-time ticks in event-time order, split where they are `gap` apart.
    for (key, mut ticks) in sessions {
        let gap = rules.session_gap.expect("sessions only with a gap");
        ticks.sort_by_key(|t| t.0);
        let mut run: Vec<Counted> = Vec::new();
        for t in ticks {
            if run.last().is_some_and(|l| t.0.0 - l.0.0 >= gap) {
                let start = run[0].0.0;
                windows.insert(
                    (key.clone(), "session".into(), start),
                    std::mem::take(&mut run),
                );
            }
            run.push(t);
        }
        windows.insert((key, "session".into(), run[0].0.0), run);
    }
    let end_of =
        |name: &str, start: i64, last: i64| match rules.windows.iter().find(|w| w.0 == name) {
            Some(w) => start + w.1,
            None => last,
        };
    let bars = windows
        .into_iter()
        .map(|((key, res, start), ticks)| {
            let first = ticks.iter().min_by_key(|t| t.0).unwrap();
            let last = ticks.iter().max_by_key(|t| t.0).unwrap();
            let volume: i64 = ticks.iter().map(|t| t.2).sum();
            let turnover: f64 = ticks.iter().map(|t| t.1 * t.2 as f64).sum();
            let bar = Bar {
                symbol: key.clone(),
                resolution: res.clone(),
                window_start: start,
                window_end: end_of(&res, start, last.0.0),
                open: first.1,
                high: ticks.iter().map(|t| t.1).fold(f64::MIN, f64::max),
                low: ticks.iter().map(|t| t.1).fold(f64::MAX, f64::min),
                close: last.1,
                volume,
                vwap: turnover / volume as f64,
                turnover,
                trade_count: ticks.len() as i64,
                first_tick_time: first.0.0,
                last_tick_time: last.0.0,
                extras: Default::default(),
                is_final: true,
            };
            ((key, res, start), bar)
        })
        .collect();
    (bars, late)
}

/// Decodes bar topics; identical duplicates (a replay after a crash) collapse, different ones
/// fail the test.
pub async fn bars_of(records: &[RawRecord], registry: &RegistryClient) -> BTreeMap<BarId, Bar> {
    bar_map(bars_each(records, registry).await)
}

/// Bars by identity; copies must be equal.
pub fn bar_map(bars: Vec<Bar>) -> BTreeMap<BarId, Bar> {
    let mut out: BTreeMap<BarId, Bar> = BTreeMap::new();
    for bar in bars {
        let id = bar_id(&bar);
        if let Some(previous) = out.insert(id.clone(), bar.clone()) {
            assert_eq!(previous, bar, "two different bars for {id:?}");
        }
    }
    out
}

/// Decodes each bar record (checking its key is the symbol), in `records`' order.
pub async fn bars_each(records: &[RawRecord], registry: &RegistryClient) -> Vec<Bar> {
    let mut decoder = Decoder::<Bar>::new(RecordKind::Bar);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let bytes = r.value.as_deref().unwrap();
        let (id, _) = split_header(bytes).unwrap();
        if !decoder.knows(id) {
            registry.teach(&mut decoder, id).await.unwrap();
        }
        let bar = decoder.decode(bytes).unwrap();
        assert_eq!(r.key.as_deref(), Some(bar.symbol.as_bytes()));
        out.push(bar);
    }
    out
}

/// A bar's identity: (symbol, resolution, window start).
pub fn bar_id(b: &Bar) -> BarId {
    (b.symbol.clone(), b.resolution.clone(), b.window_start)
}

/// The identity of each bar.
pub fn bar_ids(bars: &[Bar]) -> Vec<BarId> {
    bars.iter().map(bar_id).collect()
}

/// Decodes a late topic into (partition, offset, resolution) triples.
pub async fn late_of(
    records: &[RawRecord],
    registry: &RegistryClient,
) -> BTreeSet<(i32, i64, String)> {
    late_each(records, registry).await.into_iter().collect()
}

/// The (partition, offset, resolution) each late record is about, in `records`' order.
pub async fn late_each(
    records: &[RawRecord],
    registry: &RegistryClient,
) -> Vec<(i32, i64, String)> {
    let mut decoder = Decoder::<DeadLetter>::new(RecordKind::DeadLetter);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let bytes = r.value.as_deref().unwrap();
        let (id, _) = split_header(bytes).unwrap();
        if !decoder.knows(id) {
            registry.teach(&mut decoder, id).await.unwrap();
        }
        let d = decoder.decode(bytes).unwrap();
        assert_eq!(d.reason, "late");
        let res = d.detail.split_whitespace().next().unwrap().to_string();
        out.push((d.partition, d.offset, res));
    }
    out
}

/// What [`assert_outputs_once`] counted: final bars, `emit: update` bars and late ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputCounts {
    pub finals: usize,
    pub updates: usize,
    pub late: usize,
}

/// Checks a run's outputs strictly: the bar topics of `rules` (`{id}.bars.<resolution>`) and
/// `{id}.late` hold each final bar and late tick exactly once (every record counted), equal
/// to the brute-force recomputation over the `input` topic's `count` records; each
/// `emit: update` bar is there once too, and never counts more trades than its final bar.
pub async fn assert_outputs_once(
    kafka: &KafkaConfig,
    client: &RegistryClient,
    id: &str,
    (input, count): (&str, usize),
    rules: &Rules<'_>,
) -> OutputCounts {
    let (k, i) = (kafka.clone(), input.to_string());
    let records = tokio::task::spawn_blocking(move || read_all(&k, &[&i], count))
        .await
        .unwrap();
    let (want_bars, want_late) = expected_with(&tick_log(&records, client).await, rules);
    let bar_topics: Vec<String> = rules
        .windows
        .iter()
        .map(|(r, _, _)| format!("{id}.bars.{r}"))
        .collect();
    let k = kafka.clone();
    let bar_records = tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = bar_topics.iter().map(String::as_str).collect();
        read_everything(&k, &topics)
    })
    .await
    .unwrap();
    let bars = bars_each(&bar_records, client).await;
    let ((final_records, finals), (update_records, updates)) = by_finality(&bar_records, bars);
    assert_each_once("bars", &final_records, &bar_ids(&finals));
    let update_ids: Vec<(BarId, i64)> =
        updates.iter().map(|b| (bar_id(b), b.trade_count)).collect();
    assert_each_once("updates", &update_records, &update_ids);
    for (id, trades) in &update_ids {
        let final_bar = want_bars.get(id);
        assert!(
            final_bar.is_some_and(|f| f.trade_count >= *trades),
            "an update of {id:?} counts {trades} trades, its final bar {final_bar:?}"
        );
    }
    let counted = OutputCounts {
        finals: finals.len(),
        updates: updates.len(),
        late: 0,
    };
    assert_bars_equal(&bar_map(finals), &want_bars);
    let (k, l) = (kafka.clone(), format!("{id}.late"));
    let late_records = tokio::task::spawn_blocking(move || read_everything(&k, &[&l]))
        .await
        .unwrap();
    let late = late_each(&late_records, client).await;
    assert_each_once("late ticks", &late_records, &late);
    assert_eq!(late.into_iter().collect::<BTreeSet<_>>(), want_late);
    OutputCounts {
        late: late_records.len(),
        ..counted
    }
}

/// Final bars and `emit: update` bars apart, each with its records: ((records, bars) of the
/// finals, (records, bars) of the updates).
type ByFinality = ((Vec<RawRecord>, Vec<Bar>), (Vec<RawRecord>, Vec<Bar>));

fn by_finality(records: &[RawRecord], bars: Vec<Bar>) -> ByFinality {
    let mut out: ByFinality = Default::default();
    for (r, b) in records.iter().zip(bars) {
        let side = if b.is_final { &mut out.0 } else { &mut out.1 };
        side.0.push(r.clone());
        side.1.push(b);
    }
    out
}

/// Fails if two of `records` have the same identity (`ids[i]` is that of `records[i]`),
/// naming the first few: where each copy is, and whether the copies are byte for byte equal
/// (a replay that was not suppressed) or differ (an output that is not deterministic).
pub fn assert_each_once<K: Ord + std::fmt::Debug>(what: &str, records: &[RawRecord], ids: &[K]) {
    let mut seen: BTreeMap<&K, &RawRecord> = BTreeMap::new();
    let mut copies = Vec::new();
    for (r, id) in records.iter().zip(ids) {
        if let Some(first) = seen.insert(id, r) {
            let same = first.key == r.key && first.value == r.value;
            copies.push(format!(
                "{id:?} at {}-{}@{} and {}-{}@{} ({})",
                first.topic,
                first.partition,
                first.offset,
                r.topic,
                r.partition,
                r.offset,
                if same { "identical" } else { "different bytes" }
            ));
        }
    }
    assert!(
        copies.is_empty(),
        "{} {what} written more than once, e.g. {:#?}",
        copies.len(),
        &copies[..copies.len().min(5)]
    );
}

/// Compares engine bars with expected ones field by field (VWAP and turnover within 1e-9
/// relative).
pub fn assert_bars_equal(got: &BTreeMap<BarId, Bar>, want: &BTreeMap<BarId, Bar>) {
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?} (of {} / {})",
        want.len(),
        got.len()
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for (id, w) in want {
        let g = &got[id];
        let same = g.open == w.open
            && g.high == w.high
            && g.low == w.low
            && g.close == w.close
            && g.volume == w.volume
            && g.trade_count == w.trade_count
            && g.window_end == w.window_end
            && g.first_tick_time == w.first_tick_time
            && g.last_tick_time == w.last_tick_time
            && g.extras == w.extras
            && g.is_final == w.is_final
            && close(g.vwap, w.vwap)
            && close(g.turnover, w.turnover);
        assert!(same, "bar {id:?} differs:\n got  {g:?}\n want {w:?}");
    }
}
