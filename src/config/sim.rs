//! The `simulator` section of the config file: the parameters of the simulated market. The
//! simulator (the `sim` module) checks them (`SimConfig::validate`) and runs them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
