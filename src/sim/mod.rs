//! The tick simulator: a market that looks like one (geometric Brownian motion per symbol,
//! tick-size prices, lot sizes with a heavy tail, venues, a U-shaped trading session with
//! bursts), with injected out-of-order and late deliveries for testing the engine, and a replay
//! of historical daily bars from CSV.
//!
//! Everything is a pure function of the configuration, the seed and the start time, so a run can
//! be reproduced byte for byte.

mod driver;
mod market;
mod replay;
mod session;
mod universe;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use driver::{Pace, RunSummary, end_of_input, produce_ticks};
pub use market::{Disorder, MarketSim, TickStream};
pub use replay::{ReplayRow, replay_ticks};
pub use session::Session;
pub use universe::{BUILTIN_UNIVERSE, SymbolSpec, load_universe, parse_universe, universe};

/// Errors of the simulator: bad parameters or unreadable input files.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file could not be read.
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A CSV row could not be parsed.
    #[error("{file}:{line}: {message}")]
    Csv {
        file: String,
        line: u64,
        message: String,
    },
    /// The symbol universe has no symbols.
    #[error("{file}: no symbols")]
    EmptyUniverse { file: String },
    /// More symbols were asked for than the universe has.
    #[error("{file}: {wanted} symbols asked for, the file has {available}")]
    NotEnoughSymbols {
        file: String,
        wanted: usize,
        available: usize,
    },
    /// A symbol's parameters are unusable.
    #[error("{file}: symbol {symbol}: {reason}")]
    BadSymbol {
        file: String,
        symbol: String,
        reason: String,
    },
    /// A tick could not be encoded (a bug: generated ticks always fit the schema).
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    /// Kafka metadata could not be read.
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaError),
    /// Kafka refused or lost ticks.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// A simulator setting is out of range.
    #[error("simulator.{field}: {reason}")]
    BadSetting { field: &'static str, reason: String },
}

impl SimError {
    fn csv(file: &str, err: &csv::Error) -> Self {
        let line = err.position().map(|p| p.line()).unwrap_or(0);
        let message = match err.kind() {
            csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                Some(i) => format!("column {}: {}", i + 1, err.kind()),
                None => err.kind().to_string(),
            },
            other => format!("{other:?}"),
        };
        SimError::Csv {
            file: file.into(),
            line,
            message,
        }
    }
}

/// A trading venue and its share of trades.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueShare {
    /// Market identifier code, as printed on the tick.
    pub mic: String,
    /// Relative share of trades.
    pub share: f64,
}

/// Parameters of the simulated market. Every field has a default; `tickflow simulate` flags
/// override the most used ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Topic the ticks are produced to.
    pub topic: String,
    /// Partition count used when tickflow creates the topic.
    pub partitions: i32,
    /// CSV file with the symbol universe; unset uses the built-in copy of `config/symbols.csv`.
    pub symbols_file: Option<PathBuf>,
    /// Trade the first N symbols of the universe; 0 trades all of them.
    pub symbols: usize,
    /// Seed of the random generator.
    pub seed: u64,
    /// Mean trade arrivals per second of market time over the regular session, all symbols.
    pub trades_per_second: f64,
    /// Regular session open, exchange local time (`HH:MM`).
    pub session_open: String,
    /// Regular session close, exchange local time (`HH:MM`).
    pub session_close: String,
    /// UTC offset of the exchange's local time (`-05:00` for New York in winter).
    pub utc_offset: String,
    /// Also trade in the pre-market (04:00) and after-hours (to 20:00) sessions.
    pub extended_hours: bool,
    /// Trade intensity in extended hours, as a fraction of the regular mean.
    pub extended_intensity: f64,
    /// Trade intensity at the open and close relative to midday (the U-shape's depth).
    pub open_close_ratio: f64,
    /// Mean market time between bursts of activity.
    #[serde(with = "humantime_serde")]
    pub burst_interval: Duration,
    /// Mean length of a burst.
    #[serde(with = "humantime_serde")]
    pub burst_duration: Duration,
    /// Intensity multiplier during a burst.
    pub burst_multiplier: f64,
    /// Fraction of trades printed as odd lots (fewer shares than a round lot).
    pub odd_lot_fraction: f64,
    /// Pareto tail index of round-lot trade sizes (smaller is heavier).
    pub size_tail_index: f64,
    /// Largest trade in round lots.
    pub max_lots: i64,
    /// Fraction of ticks delivered out of order.
    pub out_of_order_fraction: f64,
    /// How far behind the newest event time an out-of-order tick may arrive.
    #[serde(with = "humantime_serde")]
    pub out_of_order_bound: Duration,
    /// Fraction of ticks delivered late (later than any reasonable grace period).
    pub late_fraction: f64,
    /// Smallest delay of a late tick.
    #[serde(with = "humantime_serde")]
    pub late_delay_min: Duration,
    /// Largest delay of a late tick.
    #[serde(with = "humantime_serde")]
    pub late_delay_max: Duration,
    /// Venues and their shares of trades.
    pub venues: Vec<VenueShare>,
}

impl Default for SimConfig {
    fn default() -> Self {
        let venue = |mic: &str, share: f64| VenueShare {
            mic: mic.into(),
            share,
        };
        Self {
            topic: "ticks.raw".into(),
            partitions: 8,
            symbols_file: None,
            symbols: 0,
            seed: 42,
            trades_per_second: 2000.0,
            session_open: "09:30".into(),
            session_close: "16:00".into(),
            utc_offset: "-05:00".into(),
            extended_hours: false,
            extended_intensity: 0.05,
            open_close_ratio: 3.0,
            burst_interval: Duration::from_secs(120),
            burst_duration: Duration::from_secs(5),
            burst_multiplier: 4.0,
            odd_lot_fraction: 0.35,
            size_tail_index: 1.5,
            max_lots: 500,
            out_of_order_fraction: 0.01,
            out_of_order_bound: Duration::from_secs(2),
            late_fraction: 0.001,
            late_delay_min: Duration::from_secs(60),
            late_delay_max: Duration::from_secs(300),
            venues: vec![
                venue("XNAS", 0.16),
                venue("XNYS", 0.12),
                venue("ARCX", 0.09),
                venue("BATS", 0.07),
                venue("EDGX", 0.07),
                venue("IEXG", 0.03),
                venue("MEMX", 0.04),
                venue("FINR", 0.42),
            ],
        }
    }
}

impl SimConfig {
    /// Checks every setting, so that a bad value fails before anything is produced.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |field: &'static str, reason: &str| {
            Err(SimError::BadSetting {
                field,
                reason: reason.into(),
            })
        };
        let fraction = |x: f64| (0.0..=1.0).contains(&x);
        if self.partitions <= 0 {
            return bad("partitions", "must be at least 1");
        }
        if !positive(self.trades_per_second) {
            return bad("trades_per_second", "must be positive");
        }
        if !at_least(self.open_close_ratio, 1.0) {
            return bad("open_close_ratio", "must be at least 1");
        }
        if !at_least(self.burst_multiplier, 1.0) {
            return bad("burst_multiplier", "must be at least 1");
        }
        if self.burst_interval.is_zero() || self.burst_duration.is_zero() {
            return bad(
                "burst_interval",
                "burst_interval and burst_duration must be positive",
            );
        }
        if !fraction(self.odd_lot_fraction) || !fraction(self.extended_intensity) {
            return bad("odd_lot_fraction", "fractions must be within [0, 1]");
        }
        if !positive(self.size_tail_index) || self.max_lots < 1 {
            return bad(
                "size_tail_index",
                "size_tail_index and max_lots must be positive",
            );
        }
        if !fraction(self.out_of_order_fraction)
            || !fraction(self.late_fraction)
            || self.out_of_order_fraction + self.late_fraction > 1.0
        {
            return bad(
                "late_fraction",
                "late and out-of-order fractions must add up to at most 1",
            );
        }
        if self.out_of_order_bound.is_zero() && self.out_of_order_fraction > 0.0 {
            return bad(
                "out_of_order_bound",
                "must be positive when out_of_order_fraction is",
            );
        }
        if self.late_delay_min <= self.out_of_order_bound
            || self.late_delay_max < self.late_delay_min
        {
            return bad(
                "late_delay_min",
                "need out_of_order_bound < late_delay_min <= late_delay_max",
            );
        }
        if self.venues.is_empty() || self.venues.iter().any(|v| !positive(v.share)) {
            return bad(
                "venues",
                "need at least one venue, each with a positive share",
            );
        }
        Session::from_config(self)?;
        Ok(())
    }
}

/// A finite number above zero (false for NaN).
pub(crate) fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// A finite number at least `min` (false for NaN).
pub(crate) fn at_least(x: f64, min: f64) -> bool {
    x.is_finite() && x >= min
}
