//! `tickflow reconcile`: recomputes the bars from the raw tick table and compares them with
//! the bar tables, field by field, so a user can prove the pipeline to an auditor.
//!
//! The recomputation is independent of the engine's window code: it reads the tick table's
//! files, puts each Kafka partition's ticks back in offset order (every lake file lists the
//! offsets it holds), and applies the topology's rules by brute force. A tick goes through the
//! source's sanity checks and the filters; stream time is the largest event time of the
//! partition's accepted ticks so far; a tick is late for a window whose end plus grace is at
//! or before stream time; OHLC ties between equal event times go to the lower offset. A bar
//! is expected once its window has closed by the same rule (a bar the lake holds for a window
//! that the landed ticks have not closed, for example one an end-of-input watermark closed,
//! is compared too).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::QueryError;
use crate::codec::{Bar, Tick};
use crate::config::TopologySpec;
use crate::config::lake::LakeFormat;
use crate::lake::file_records as lake_file_records;
use crate::lake::millis::to_micros_value;
use crate::lake::store::LakeStore;
use crate::operators::{Filter, Sanity, WindowDef};
use crate::topology::plan::Plan;

/// A bar's identity: (key, resolution, window start).
pub type BarId = (String, String, i64);

/// Which bars to check.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Only windows starting at or after this (UTC microseconds).
    pub from: Option<i64>,
    /// Only windows starting before this (UTC microseconds).
    pub to: Option<i64>,
    /// Only these resolutions (all of the topology's when empty).
    pub resolutions: Vec<String>,
}

/// What reconcile found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Ticks read from the tick table.
    pub ticks: u64,
    /// (tick, resolution) pairs that were late, so counted in no bar.
    pub late: u64,
    /// Ticks refused by the sanity checks (they went to the dead-letter topic).
    pub rejected: u64,
    /// Bars compared, per resolution.
    pub checked: BTreeMap<String, u64>,
    /// `emit: update` bars (`is_final` false) in the bar tables, left out: each window's
    /// final bar is what is checked.
    pub updates: u64,
    /// Expected bars of closed windows that the bar tables lack.
    pub missing: Vec<BarId>,
    /// Bars in the tables that the ticks do not produce.
    pub unexpected: Vec<BarId>,
    /// Bars present in both that differ, with the names of the fields that differ.
    pub differing: Vec<(BarId, Vec<&'static str>)>,
    /// Bars landed twice with different values.
    pub duplicates: Vec<BarId>,
    /// Bars landed more than once with identical values, with the number of extra copies:
    /// `SUM(volume)` in SQL counts each copy.
    pub identical_duplicates: Vec<(BarId, u64)>,
    /// Per symbol and resolution, the sums of every landed row against the sums of the raw
    /// ticks' bars, where they differ.
    pub sums: Vec<SumMismatch>,
}

/// Sums of one symbol and resolution that differ: landed (every row of the bar table, as
/// `SUM()` in SQL counts them) against expected (the bars of the raw ticks, each once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumMismatch {
    /// The symbol (bar key).
    pub symbol: String,
    /// The resolution.
    pub resolution: String,
    /// (volume, trade count) summed over the landed rows.
    pub landed: (i64, i64),
    /// (volume, trade count) summed over the expected bars.
    pub expected: (i64, i64),
}

impl Report {
    /// Number of problems found (0 means the bar tables are proven).
    pub fn differences(&self) -> usize {
        self.missing.len()
            + self.unexpected.len()
            + self.differing.len()
            + self.duplicates.len()
            + self.identical_duplicates.len()
            + self.sums.len()
    }

    /// Differing bars counted by field.
    pub fn by_field(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for (_, fields) in &self.differing {
            for f in fields {
                *out.entry(*f).or_default() += 1;
            }
        }
        out
    }
}

/// Reconciles the bar tables of `spec`'s lake (in `store`) with its tick table.
pub async fn reconcile(
    spec: &TopologySpec,
    store: &LakeStore,
    options: &ReconcileOptions,
) -> Result<Report, QueryError> {
    let plan = Plan::of(spec).map_err(|e| QueryError::Unsupported(e.to_string()))?;
    let lake = spec
        .lake
        .as_ref()
        .ok_or_else(|| QueryError::Unsupported("the topology has no `lake:` section".into()))?;
    let rules = Rules::of(&plan, options)?;
    let tick_table = lake.table_for(&plan.input_topic).ok_or_else(|| {
        QueryError::Unsupported(format!(
            "topic {} is not landed in the lake",
            plan.input_topic
        ))
    })?;
    let mut report = Report::default();
    let log = read_table::<Tick>(store, &tick_table).await?;
    let (expected, ties) = rules.expected_with_ties(log, &mut report);
    let mut landed: Vec<Bar> = Vec::new();
    let mut tables = vec![tick_table.clone()];
    for def in &rules.windows {
        let table = super::bar_table(&plan, lake, &def.name)?;
        tables.push(table.clone());
        for (_, records) in read_table::<Bar>(store, &table).await? {
            landed.extend(
                records
                    .into_iter()
                    .map(|(_, bar)| bar)
                    .filter(|bar| bar.resolution == def.name && options.covers(bar.window_start)),
            );
        }
    }
    let landed = finals(landed, &mut report);
    let actual = distinct(&landed, &mut report);
    compare(&expected, &actual, &mut report);
    if any_avro(store, &tables).await? {
        forgive_millis(&expected, &ties, &actual, &mut report);
    }
    report.sums = compare_sums(&expected, &landed);
    Ok(report)
}

/// Whether any file of `tables` is an Avro file (its times are milliseconds).
async fn any_avro(store: &LakeStore, tables: &[String]) -> Result<bool, QueryError> {
    for table in tables {
        let files = store.list_all(table).await?;
        if files
            .iter()
            .any(|p| LakeFormat::of_path(p) == Some(LakeFormat::Avro))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Where the lake holds millisecond times (Avro files), takes back the differences that
/// are only that precision: a first or last tick time equal to the millisecond, and an
/// `open` or `close` that is the price of one of the window's ticks at its first (last)
/// event time, whose order within that millisecond the tick table no longer holds.
fn forgive_millis(
    expected: &BTreeMap<BarId, (Bar, bool)>,
    ties: &BTreeMap<BarId, Ties>,
    actual: &BTreeMap<BarId, Bar>,
    report: &mut Report,
) {
    let ms = |t: i64| t.div_euclid(1_000);
    for (id, fields) in &mut report.differing {
        let (Some(t), Some(got), Some((want, _))) =
            (ties.get(id), actual.get(id), expected.get(id))
        else {
            continue;
        };
        fields.retain(|f| match *f {
            "open" => !t.open.contains(&got.open),
            "close" => !t.close.contains(&got.close),
            "first_tick_time" => ms(got.first_tick_time) != ms(want.first_tick_time),
            "last_tick_time" => ms(got.last_tick_time) != ms(want.last_tick_time),
            _ => true,
        });
    }
    report.differing.retain(|(_, fields)| !fields.is_empty());
}

/// The final bars of `landed`; the updates are counted in the report and left out.
fn finals(landed: Vec<Bar>, report: &mut Report) -> Vec<Bar> {
    let (finals, updates): (Vec<Bar>, Vec<Bar>) = landed.into_iter().partition(|b| b.is_final);
    report.updates += updates.len() as u64;
    finals
}

/// The landed bars by identity; a bar landed twice is reported as a duplicate, with
/// different values or identical.
fn distinct(landed: &[Bar], report: &mut Report) -> BTreeMap<BarId, Bar> {
    let mut actual: BTreeMap<BarId, Bar> = BTreeMap::new();
    let mut copies: BTreeMap<BarId, u64> = BTreeMap::new();
    for bar in landed {
        let id = (bar.symbol.clone(), bar.resolution.clone(), bar.window_start);
        match actual.get(&id) {
            None => {
                actual.insert(id, bar.clone());
            }
            Some(first) if first == bar => *copies.entry(id).or_default() += 1,
            Some(_) => {
                if !report.duplicates.contains(&id) {
                    report.duplicates.push(id);
                }
            }
        }
    }
    report.identical_duplicates = copies.into_iter().collect();
    actual
}

/// Per symbol and resolution: volume and trade count summed over every landed row against
/// the same sums over the expected bars (closed ones, and open ones that landed).
fn compare_sums(expected: &BTreeMap<BarId, (Bar, bool)>, landed: &[Bar]) -> Vec<SumMismatch> {
    type Sums = BTreeMap<(String, String), (i64, i64)>;
    let mut got: Sums = BTreeMap::new();
    for bar in landed {
        let s = got
            .entry((bar.symbol.clone(), bar.resolution.clone()))
            .or_default();
        *s = (s.0 + bar.volume, s.1 + bar.trade_count);
    }
    let landed_ids: std::collections::BTreeSet<(&str, &str, i64)> = landed
        .iter()
        .map(|b| (b.symbol.as_str(), b.resolution.as_str(), b.window_start))
        .collect();
    let mut want: Sums = BTreeMap::new();
    for ((symbol, resolution, start), (bar, closed)) in expected {
        if *closed || landed_ids.contains(&(symbol.as_str(), resolution.as_str(), *start)) {
            let s = want
                .entry((symbol.clone(), resolution.clone()))
                .or_default();
            *s = (s.0 + bar.volume, s.1 + bar.trade_count);
        }
    }
    let keys: std::collections::BTreeSet<&(String, String)> =
        got.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (l, e) = (
                got.get(key).copied().unwrap_or_default(),
                want.get(key).copied().unwrap_or_default(),
            );
            (l != e).then(|| SumMismatch {
                symbol: key.0.clone(),
                resolution: key.1.clone(),
                landed: l,
                expected: e,
            })
        })
        .collect()
}

impl ReconcileOptions {
    fn covers(&self, window_start: i64) -> bool {
        self.from.is_none_or(|f| window_start >= f) && self.to.is_none_or(|t| window_start < t)
    }
}

/// The records of a table, per Kafka partition, in offset order: (offset, record).
async fn read_table<T: DeserializeOwned>(
    store: &LakeStore,
    table: &str,
) -> Result<BTreeMap<i32, Vec<(i64, T)>>, QueryError> {
    let mut out: BTreeMap<i32, Vec<(i64, T)>> = BTreeMap::new();
    for path in store.list_all(table).await? {
        if LakeFormat::of_path(&path).is_none() {
            continue;
        }
        let bytes = store.get(&path).await?;
        let (partition, records) = file_records::<T>(&path, &bytes)?;
        out.entry(partition).or_default().extend(records);
    }
    for records in out.values_mut() {
        records.sort_by_key(|(o, _)| *o);
    }
    Ok(out)
}

/// The Kafka partition of a lake file (from its name, `<topic>+<partition>+<offset>.<ext>`)
/// and its records with their offsets (from its metadata).
fn file_records<T: DeserializeOwned>(
    path: &str,
    bytes: &bytes::Bytes,
) -> Result<(i32, Vec<(i64, T)>), QueryError> {
    let bad = |message: String| QueryError::File {
        path: path.to_string(),
        message,
        source: None,
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let partition = name
        .rsplit('+')
        .nth(1)
        .and_then(|p| p.parse::<i32>().ok())
        .ok_or_else(|| bad("the name is not <topic>+<partition>+<offset>.<ext>".into()))?;
    // The lake's error names the file.
    let (info, values) = lake_file_records(path, bytes)?;
    let records = info
        .offsets
        .iter()
        .zip(values)
        .map(|(offset, value)| {
            // Avro lake files hold milliseconds; ticks and bars count in microseconds.
            let value = to_micros_value(value);
            let record = apache_avro::from_value::<T>(&value)
                .map_err(|e| QueryError::unreadable_file(path.to_string(), e))?;
            Ok((offset, record))
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    Ok((partition, records))
}

/// The topology's rules, as reconcile applies them.
struct Rules {
    sanity: Sanity,
    filters: Vec<Filter>,
    windows: Vec<WindowDef>,
    grace: i64,
    options: ReconcileOptions,
}

/// Prices of a window's ticks at its first and at its last event time.
#[derive(Debug, Clone, Default)]
struct Ties {
    open: Vec<f64>,
    close: Vec<f64>,
}

/// A window's ticks, folded: ((event time, offset) of first and last, with prices), high,
/// low, volume, turnover, count.
#[derive(Debug, Clone)]
struct Fold {
    first: ((i64, i64), f64),
    last: ((i64, i64), f64),
    high: f64,
    low: f64,
    volume: i64,
    turnover: f64,
    count: i64,
    /// Kafka partitions the window's ticks came from.
    partitions: Vec<i32>,
    ties: Ties,
}

impl Rules {
    fn of(plan: &Plan, options: &ReconcileOptions) -> Result<Self, QueryError> {
        if plan.group_by.is_some() || plan.defs.iter().any(|d| d.gap.is_some()) {
            return Err(QueryError::Unsupported(
                "reconcile supports tumbling and hopping windows keyed by the source key".into(),
            ));
        }
        let windows: Vec<WindowDef> = plan
            .defs
            .iter()
            .filter(|d| options.resolutions.is_empty() || options.resolutions.contains(&d.name))
            .cloned()
            .collect();
        if windows.is_empty() {
            let names: Vec<&str> = plan.defs.iter().map(|d| d.name.as_str()).collect();
            return Err(QueryError::Unsupported(format!(
                "no such resolution; the topology has {}",
                names.join(", ")
            )));
        }
        Ok(Self {
            sanity: plan.sanity,
            filters: plan.filters.clone(),
            windows,
            grace: plan.window.grace.value.as_micros() as i64,
            options: options.clone(),
        })
    }

    /// Bars of closed windows, and the folds of windows still open, by brute force.
    #[cfg(test)]
    fn expected(
        &self,
        log: BTreeMap<i32, Vec<(i64, Tick)>>,
        report: &mut Report,
    ) -> BTreeMap<BarId, (Bar, bool)> {
        self.expected_with_ties(log, report).0
    }

    /// [`Rules::expected`], with each window's [`Ties`].
    fn expected_with_ties(
        &self,
        log: BTreeMap<i32, Vec<(i64, Tick)>>,
        report: &mut Report,
    ) -> (BTreeMap<BarId, (Bar, bool)>, BTreeMap<BarId, Ties>) {
        let mut folds: BTreeMap<BarId, Fold> = BTreeMap::new();
        let mut final_time: BTreeMap<i32, i64> = BTreeMap::new();
        for (partition, ticks) in log {
            let mut stream_time = i64::MIN;
            for (offset, tick) in ticks {
                report.ticks += 1;
                if self.sanity.check(&tick, stream_time, 0).is_err() {
                    report.rejected += 1;
                    continue;
                }
                if !self.filters.iter().all(|f| f.keeps(&tick)) {
                    continue;
                }
                stream_time = stream_time.max(tick.event_time);
                let order = (tick.event_time, (i64::from(partition) << 40) | offset);
                for w in &self.windows {
                    let mut start = tick.event_time.div_euclid(w.advance) * w.advance;
                    while start + w.size > tick.event_time {
                        if start + w.size + self.grace <= stream_time {
                            report.late += 1;
                        } else if self.options.covers(start) {
                            let id = (tick.symbol.clone(), w.name.clone(), start);
                            fold(folds.entry(id), order, &tick, partition);
                        }
                        start -= w.advance;
                    }
                }
            }
            final_time.insert(partition, stream_time);
        }
        let ties = folds
            .iter()
            .map(|(id, f)| (id.clone(), f.ties.clone()))
            .collect();
        let bars = folds
            .into_iter()
            .map(|(id, f)| {
                let size = self
                    .windows
                    .iter()
                    .find(|w| w.name == id.1)
                    .map_or(0, |w| w.size);
                let closes_at = f.partitions.iter().map(|p| final_time[p]).max();
                let closed = closes_at.is_some_and(|t| id.2 + size + self.grace <= t);
                let bar = Bar {
                    symbol: id.0.clone(),
                    resolution: id.1.clone(),
                    window_start: id.2,
                    window_end: id.2 + size,
                    open: f.first.1,
                    high: f.high,
                    low: f.low,
                    close: f.last.1,
                    volume: f.volume,
                    vwap: f.turnover / f.volume as f64,
                    turnover: f.turnover,
                    trade_count: f.count,
                    first_tick_time: f.first.0.0,
                    last_tick_time: f.last.0.0,
                    extras: Default::default(),
                    is_final: true,
                };
                (id, (bar, closed))
            })
            .collect();
        (bars, ties)
    }
}

fn fold(
    entry: std::collections::btree_map::Entry<'_, BarId, Fold>,
    order: (i64, i64),
    t: &Tick,
    partition: i32,
) {
    let f = entry.or_insert(Fold {
        first: (order, t.price),
        last: (order, t.price),
        high: t.price,
        low: t.price,
        volume: 0,
        turnover: 0.0,
        count: 0,
        partitions: Vec::new(),
        ties: Ties::default(),
    });
    if !f.partitions.contains(&partition) {
        f.partitions.push(partition);
    }
    let time = order.0;
    if time < f.first.0.0 {
        f.ties.open.clear();
    }
    if time > f.last.0.0 {
        f.ties.close.clear();
    }
    if order < f.first.0 {
        f.first = (order, t.price);
    }
    if order > f.last.0 {
        f.last = (order, t.price);
    }
    if time == f.first.0.0 {
        f.ties.open.push(t.price);
    }
    if time == f.last.0.0 {
        f.ties.close.push(t.price);
    }
    f.high = f.high.max(t.price);
    f.low = f.low.min(t.price);
    f.volume += t.size;
    f.turnover += t.price * t.size as f64;
    f.count += 1;
}

/// Compares expected and landed bars; VWAP and turnover agree within 1e-9 relative (the
/// same sums added in the same order agree exactly; the tolerance only forgives another
/// summation order).
fn compare(
    expected: &BTreeMap<BarId, (Bar, bool)>,
    actual: &BTreeMap<BarId, Bar>,
    report: &mut Report,
) {
    for (id, (want, closed)) in expected {
        match actual.get(id) {
            Some(got) => {
                *report.checked.entry(id.1.clone()).or_default() += 1;
                let fields = differing_fields(got, want);
                if !fields.is_empty() {
                    report.differing.push((id.clone(), fields));
                }
            }
            None if *closed => report.missing.push(id.clone()),
            None => {}
        }
    }
    report.unexpected = actual
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .cloned()
        .collect();
}

/// Names of the fields in which `got` differs from `want` (extras are not recomputed).
pub fn differing_fields(got: &Bar, want: &Bar) -> Vec<&'static str> {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    let checks: [(&'static str, bool); 11] = [
        ("window_end", got.window_end == want.window_end),
        ("open", got.open == want.open),
        ("high", got.high == want.high),
        ("low", got.low == want.low),
        ("close", got.close == want.close),
        ("volume", got.volume == want.volume),
        ("vwap", close(got.vwap, want.vwap)),
        ("turnover", close(got.turnover, want.turnover)),
        ("trade_count", got.trade_count == want.trade_count),
        (
            "first_tick_time",
            got.first_tick_time == want.first_tick_time,
        ),
        ("last_tick_time", got.last_tick_time == want.last_tick_time),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, price: f64, size: i64, t: i64) -> Tick {
        Tick {
            symbol: symbol.into(),
            venue: "XNAS".into(),
            price,
            size,
            event_time: t,
            trade_id: 1,
            side: "B".into(),
            conditions: vec![],
            currency: "USD".into(),
        }
    }

    fn rules() -> Rules {
        Rules {
            sanity: Sanity {
                max_skew: i64::MAX,
                max_ahead: i64::MAX,
            },
            filters: vec![],
            windows: vec![WindowDef {
                name: "1m".into(),
                size: 60_000_000,
                advance: 60_000_000,
                gap: None,
            }],
            grace: 5_000_000,
            options: ReconcileOptions::default(),
        }
    }

    #[test]
    fn late_ticks_are_left_out_and_open_windows_are_not_required() {
        let s = 1_000_000;
        let log = BTreeMap::from([(
            0,
            vec![
                (0, tick("A", 10.0, 100, 10 * s)),
                (1, tick("A", 12.0, 50, 10 * s)), // tie: the lower offset opens
                (2, tick("A", 11.0, 10, 70 * s)),
                (3, tick("A", 9.0, 10, 20 * s)), // 70 s > 60 + 5: late for the first minute
                (4, tick("A", 13.0, 10, 61 * s)),
            ],
        )]);
        let mut report = Report::default();
        let bars = rules().expected(log, &mut report);
        assert_eq!(report.late, 1);
        let (first, closed) = &bars[&("A".into(), "1m".into(), 0)];
        assert!(closed);
        assert_eq!(
            (first.open, first.close, first.high, first.low),
            (10.0, 12.0, 12.0, 10.0)
        );
        assert_eq!((first.volume, first.trade_count), (150, 2));
        assert!((first.vwap - (10.0 * 100.0 + 12.0 * 50.0) / 150.0).abs() < 1e-12);
        let (second, closed) = &bars[&("A".into(), "1m".into(), 60 * s)];
        assert!(!closed, "stream time 70 s does not close [60 s, 120 s)");
        assert_eq!((second.open, second.close), (13.0, 11.0), "by event time");
    }

    /// An identical copy of a bar is a duplicate (SQL's SUM counts it twice), and the sums
    /// of its symbol no longer match the raw ticks.
    #[test]
    fn identical_duplicates_and_their_sums_are_reported() {
        let log = BTreeMap::from([(
            0,
            vec![
                (0, tick("A", 10.0, 7, 0)),
                (1, tick("B", 20.0, 3, 0)),
                (2, tick("A", 10.0, 1, 120_000_000)),
                (3, tick("B", 10.0, 1, 120_000_000)),
            ],
        )]);
        let mut report = Report::default();
        let expected = rules().expected(log, &mut report);
        let mut landed: Vec<Bar> = expected
            .values()
            .filter(|(_, closed)| *closed)
            .map(|(b, _)| b.clone())
            .collect();
        let once = landed.clone();
        let actual = distinct(&once, &mut report);
        compare(&expected, &actual, &mut report);
        report.sums = compare_sums(&expected, &once);
        assert_eq!(report.differences(), 0, "{report:?}");

        landed.push(landed[0].clone());
        let mut report = Report::default();
        let actual = distinct(&landed, &mut report);
        compare(&expected, &actual, &mut report);
        report.sums = compare_sums(&expected, &landed);
        assert_eq!(
            report.identical_duplicates,
            vec![(("A".into(), "1m".into(), 0), 1)]
        );
        assert!(report.duplicates.is_empty() && report.differing.is_empty());
        assert_eq!(report.updates, 0);
        assert_eq!(
            report.sums,
            vec![SumMismatch {
                symbol: "A".into(),
                resolution: "1m".into(),
                landed: (14, 2),
                expected: (7, 1),
            }]
        );
        assert_eq!(report.differences(), 2);
    }

    /// The `emit: update` bars of a window are neither duplicates nor counted in the sums:
    /// its final bar is checked, once.
    #[test]
    fn update_bars_are_left_out() {
        let log = BTreeMap::from([(
            0,
            vec![
                (0, tick("A", 10.0, 7, 0)),
                (1, tick("A", 11.0, 2, 1_000_000)),
                (2, tick("A", 10.0, 1, 120_000_000)),
            ],
        )]);
        let mut report = Report::default();
        let expected = rules().expected(log, &mut report);
        let final_bar = expected[&("A".into(), "1m".into(), 0)].0.clone();
        let update = Bar {
            volume: 7,
            trade_count: 1,
            is_final: false,
            ..final_bar.clone()
        };
        let landed = finals(vec![update.clone(), update, final_bar], &mut report);
        let actual = distinct(&landed, &mut report);
        compare(&expected, &actual, &mut report);
        report.sums = compare_sums(&expected, &landed);
        assert_eq!(report.updates, 2);
        assert_eq!(report.differences(), 0, "{report:?}");
    }

    #[test]
    fn a_changed_bar_is_reported_by_field_and_a_missing_one_as_missing() {
        let log = BTreeMap::from([(
            0,
            vec![
                (0, tick("A", 10.0, 1, 0)),
                (1, tick("B", 20.0, 1, 0)),
                (2, tick("A", 10.0, 1, 120_000_000)),
            ],
        )]);
        let mut report = Report::default();
        let expected = rules().expected(log, &mut report);
        let mut actual: BTreeMap<BarId, Bar> = expected
            .iter()
            .filter(|(_, (_, closed))| *closed)
            .map(|(id, (b, _))| (id.clone(), b.clone()))
            .collect();
        actual.remove(&("B".into(), "1m".into(), 0));
        actual.get_mut(&("A".into(), "1m".into(), 0)).unwrap().close = 10.5;
        compare(&expected, &actual, &mut report);
        assert_eq!(report.missing, vec![("B".into(), "1m".into(), 0)]);
        assert_eq!(report.differing.len(), 1);
        assert_eq!(report.differing[0].1, vec!["close"]);
        assert!(report.unexpected.is_empty());
        assert_eq!(report.differences(), 2);
    }

    /// With millisecond times, a bar may open or close with any tick of its first or last
    /// millisecond, and its tick times agree to the millisecond; any other price or time is
    /// still a difference.
    #[test]
    fn ties_within_a_millisecond_are_forgiven_only_for_their_prices() {
        let log = BTreeMap::from([(
            0,
            vec![
                (0, tick("A", 10.0, 1, 5_000)),
                (1, tick("A", 11.0, 1, 5_000)),
                (2, tick("A", 12.0, 1, 9_000)),
                (3, tick("A", 13.0, 1, 9_000)),
                (4, tick("A", 14.0, 1, 7_000)),
                (5, tick("A", 1.0, 1, 120_000_000)),
            ],
        )]);
        let mut report = Report::default();
        let (expected, ties) = rules().expected_with_ties(log, &mut report);
        let id: BarId = ("A".into(), "1m".into(), 0);
        assert_eq!(
            (ties[&id].open.clone(), ties[&id].close.clone()),
            (vec![10.0, 11.0], vec![12.0, 13.0])
        );
        let mut actual: BTreeMap<BarId, Bar> = BTreeMap::new();
        let mut bar = expected[&id].0.clone();
        (bar.open, bar.close) = (11.0, 12.0);
        bar.first_tick_time += 999; // the same millisecond
        actual.insert(id.clone(), bar.clone());
        compare(&expected, &actual, &mut report);
        let all = vec!["open", "close", "first_tick_time"];
        assert_eq!(report.differing, vec![(id.clone(), all)]);
        forgive_millis(&expected, &ties, &actual, &mut report);
        assert!(report.differing.is_empty(), "{report:?}");

        bar.open = 14.0;
        bar.last_tick_time += 1_000; // the next millisecond
        actual.insert(id.clone(), bar);
        let mut report = Report::default();
        compare(&expected, &actual, &mut report);
        forgive_millis(&expected, &ties, &actual, &mut report);
        assert_eq!(
            report.differing,
            vec![(id, vec!["open", "last_tick_time"])],
            "14 is not a first price"
        );
    }
}
