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

pub use crate::config::sim::{SimConfig, VenueShare};
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
    Sink(#[from] crate::kafka::SinkError),
    /// A simulator setting is out of range.
    #[error("simulator.{field}: {reason}")]
    BadSetting { field: &'static str, reason: String },
    /// A simulator setting cannot make its random distribution (the library's reason).
    #[error("simulator.{field}: {source}")]
    Distribution {
        field: &'static str,
        source: crate::error::BoxError,
    },
}

impl crate::error::Classified for SimError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            SimError::Codec(e) => e.class(),
            SimError::Kafka(e) => e.class(),
            SimError::Sink(e) => e.class(),
            // Settings and input files.
            _ => crate::error::ErrorClass::User,
        }
    }
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
