//! A user's test cases for a topology (`tickflow test TOPOLOGY CASES.yaml`): ticks in,
//! expected records out, each case run on a fresh [`TopologyTestDriver`].
//!
//! ```yaml
//! cases:
//!   - name: one-minute bar
//!     input:
//!       - { symbol: AAPL, price: 190.0, size: 100, time: "2026-11-26T14:30:01Z" }
//!       - { symbol: AAPL, price: 192.5, size: 300, time: "2026-11-26T14:30:20Z" }
//!     watermark: "2026-11-26T14:32:00Z"   # stream time to reach: closes the minute
//!     expect:
//!       bars.1m:                           # exactly these bars, compared field by field
//!         - { symbol: AAPL, window_start: "2026-11-26T14:30:00Z", open: 190.0, volume: 400 }
//!       ticks.late: { count: 0 }           # or only a record count
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::driver::{DriverError, TopologyTestDriver};
use crate::codec::{Bar, Tick};
use crate::config::topology::TopologySpec;
use crate::config::{ConfigError, parse_yaml};

/// Errors of reading or running test cases (not failed expectations: see [`CaseReport`]).
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// The cases file is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// A time is neither RFC 3339 nor microseconds.
    #[error("case {case:?}: {value:?} is not a time (RFC 3339, or UTC microseconds)")]
    Time {
        /// The case.
        case: String,
        /// The text.
        value: String,
    },
}

impl crate::error::Classified for CasesError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            CasesError::Config(e) => e.class(),
            CasesError::Driver(e) => e.class(),
            _ => crate::error::ErrorClass::User,
        }
    }
}

/// A cases file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The cases, run in order, each on a fresh driver.
    pub cases: Vec<Case>,
}

/// One case: input ticks, then the records each listed topic must hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows.
    pub name: String,
    /// Ticks piped into the source topic, in order.
    pub input: Vec<InputTick>,
    /// Stream time to reach after the input (a watermark), so that windows close.
    #[serde(default)]
    pub watermark: Option<Time>,
    /// What each topic must hold after the case; topics not listed are not checked.
    pub expect: BTreeMap<String, Expected>,
}

/// A tick of a case; fields other than symbol, price, size and time have defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputTick {
    /// Ticker symbol (the record key).
    pub symbol: String,
    /// Execution price.
    pub price: f64,
    /// Shares traded.
    pub size: i64,
    /// Event time.
    pub time: Time,
    /// Venue (default `XNAS`).
    #[serde(default = "default_venue")]
    pub venue: String,
    /// Aggressor side (default `B`).
    #[serde(default = "default_side")]
    pub side: String,
    /// Sale conditions (default none).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// Currency (default `USD`).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Trade id (default: the tick's position in the case, from 1).
    #[serde(default)]
    pub trade_id: Option<i64>,
}

fn default_venue() -> String {
    "XNAS".into()
}

fn default_side() -> String {
    "B".into()
}

fn default_currency() -> String {
    "USD".into()
}

/// A time: RFC 3339 text or UTC microseconds since the epoch.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Time {
    /// UTC microseconds.
    Micros(i64),
    /// RFC 3339, e.g. `2026-11-26T14:30:00Z`.
    Text(String),
}

/// What a topic must hold.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Expected {
    /// Exactly these bars, each found by symbol and window start (and resolution, if
    /// given); the fields listed are compared (numbers to 1e-9 relative).
    Bars(Vec<BTreeMap<String, Value>>),
    /// This many records.
    Count {
        /// The number of records.
        count: usize,
    },
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// One line per difference; empty when the case passed.
    pub failures: Vec<String>,
}

/// Reads `cases` and runs each against the topology `spec`.
pub fn run_file(spec: &TopologySpec, cases: &Path) -> Result<Vec<CaseReport>, CasesError> {
    let text = std::fs::read_to_string(cases).map_err(|source| ConfigError::Read {
        file: cases.display().to_string(),
        source,
    })?;
    let file: CaseFile = parse_yaml(&cases.display().to_string(), &text)?;
    file.cases.iter().map(|c| run_case(spec, c)).collect()
}

/// Runs one case on a fresh driver (one input partition: stream time is the case's).
pub fn run_case(spec: &TopologySpec, case: &Case) -> Result<CaseReport, CasesError> {
    let mut driver = TopologyTestDriver::new(spec, 1)?;
    let ticks = (case.input.iter().enumerate())
        .map(|(i, t)| tick_of(case, i, t))
        .collect::<Result<Vec<Tick>, CasesError>>()?;
    driver.pipe_ticks(&ticks)?;
    if let Some(t) = &case.watermark {
        driver.pipe_watermark(micros(case, t)?)?;
    }
    let mut failures = Vec::new();
    for (topic, expected) in &case.expect {
        match expected {
            Expected::Count { count } => {
                let got = driver.records(topic)?.len();
                if got != *count {
                    failures.push(format!("{topic}: expected {count} records, got {got}"));
                }
            }
            Expected::Bars(bars) => {
                let got = driver.bars(topic)?;
                compare_bars(case, topic, bars, got, &mut failures)?;
            }
        }
    }
    Ok(CaseReport {
        name: case.name.clone(),
        failures,
    })
}

fn tick_of(case: &Case, i: usize, t: &InputTick) -> Result<Tick, CasesError> {
    Ok(Tick {
        symbol: t.symbol.clone(),
        venue: t.venue.clone(),
        price: t.price,
        size: t.size,
        event_time: micros(case, &t.time)?,
        trade_id: t.trade_id.unwrap_or(i as i64 + 1),
        side: t.side.clone(),
        conditions: t.conditions.clone(),
        currency: t.currency.clone(),
    })
}

fn micros(case: &Case, t: &Time) -> Result<i64, CasesError> {
    match t {
        Time::Micros(m) => Ok(*m),
        Time::Text(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_micros())
            .map_err(|_| CasesError::Time {
                case: case.name.clone(),
                value: s.clone(),
            }),
    }
}

/// Bar fields that hold times: an expectation may write them as RFC 3339.
const TIME_FIELDS: [&str; 4] = [
    "window_start",
    "window_end",
    "first_tick_time",
    "last_tick_time",
];

/// Matches each expected bar with a produced one, and reports differing fields, missing
/// bars and unexpected ones.
fn compare_bars(
    case: &Case,
    topic: &str,
    expected: &[BTreeMap<String, Value>],
    got: Vec<Bar>,
    failures: &mut Vec<String>,
) -> Result<(), CasesError> {
    let mut left: Vec<Value> = got
        .iter()
        .map(|b| serde_json::to_value(b).expect("a bar serializes"))
        .collect();
    for want in expected {
        let want = with_micros(case, want)?;
        let name = describe(&want);
        let found = left.iter().position(|b| same_bar(&want, b));
        let Some(i) = found else {
            failures.push(format!("{topic}: missing bar {name}"));
            continue;
        };
        let bar = left.remove(i);
        for (field, value) in &want {
            match bar.get(field) {
                None => failures.push(format!("{topic} {name}: a bar has no field {field}")),
                Some(v) if !equal(value, v) => failures.push(format!(
                    "{topic} {name}: {field}: expected {value}, got {v}"
                )),
                Some(_) => {}
            }
        }
    }
    for extra in left {
        failures.push(format!("{topic}: unexpected bar {extra}"));
    }
    Ok(())
}

/// `want` with its time fields in microseconds.
fn with_micros(
    case: &Case,
    want: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, CasesError> {
    let mut out = want.clone();
    for field in TIME_FIELDS {
        if let Some(Value::String(s)) = want.get(field) {
            let t = micros(case, &Time::Text(s.clone()))?;
            out.insert(field.into(), Value::from(t));
        }
    }
    Ok(out)
}

/// Whether a produced bar is the expected one: same symbol, window start and (if given)
/// resolution and `is_final`, which picks the final bar or an update of an `emit: update`
/// window.
fn same_bar(want: &BTreeMap<String, Value>, bar: &Value) -> bool {
    ["symbol", "window_start", "resolution", "is_final"]
        .iter()
        .all(|f| {
            want.get(*f)
                .is_none_or(|w| bar.get(*f).is_some_and(|b| equal(w, b)))
        })
}

fn equal(want: &Value, got: &Value) -> bool {
    match (want.as_f64(), got.as_f64()) {
        (Some(w), Some(g)) => (w - g).abs() <= 1e-9 * w.abs().max(g.abs()).max(1.0),
        _ => want == got,
    }
}

/// `SYMBOL at <window start>` of an expected bar.
fn describe(want: &BTreeMap<String, Value>) -> String {
    let symbol = want.get("symbol").and_then(Value::as_str).unwrap_or("?");
    match want.get("window_start").and_then(Value::as_i64) {
        Some(t) => match chrono::DateTime::from_timestamp_micros(t) {
            Some(d) => format!("{symbol} at {}", d.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            None => format!("{symbol} at {t}"),
        },
        None => symbol.to_string(),
    }
}
