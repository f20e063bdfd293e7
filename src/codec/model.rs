//! The records tickflow reads and writes, as Rust types whose serde form matches the Avro
//! schemas in `schemas/` field for field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One trade print (`schemas/tick.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Ticker symbol; also the Kafka key.
    pub symbol: String,
    /// MIC of the reporting venue.
    pub venue: String,
    /// Execution price.
    pub price: f64,
    /// Shares traded.
    pub size: i64,
    /// Event time, UTC microseconds since the epoch.
    pub event_time: i64,
    /// Identifier of the trade, unique within the feed.
    pub trade_id: i64,
    /// Aggressor side: `B`, `S` or `U`.
    pub side: String,
    /// Sale condition codes.
    pub conditions: Vec<String>,
    /// ISO 4217 currency of the price.
    pub currency: String,
}

/// An OHLC/VWAP bar for one key and one event-time window (`schemas/bar.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Grouping key (the symbol by default).
    pub symbol: String,
    /// Window size as written in the topology, e.g. `1m`.
    pub resolution: String,
    /// Inclusive window start, UTC microseconds.
    pub window_start: i64,
    /// Exclusive window end, UTC microseconds.
    pub window_end: i64,
    /// Price of the earliest trade by event time.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Price of the latest trade by event time.
    pub close: f64,
    /// Sum of sizes.
    pub volume: i64,
    /// Turnover divided by volume.
    pub vwap: f64,
    /// Sum of price times size.
    pub turnover: f64,
    /// Number of trades.
    pub trade_count: i64,
    /// Event time of the earliest trade.
    pub first_tick_time: i64,
    /// Event time of the latest trade.
    pub last_tick_time: i64,
    /// Field aggregates the topology asked for (`min_price`, `mean_size`, ...), in name order.
    pub extras: BTreeMap<String, f64>,
}

/// A record that could not be processed, with why (`schemas/dead_letter.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Original key bytes.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub key: Option<Vec<u8>>,
    /// Original value bytes.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub value: Option<Vec<u8>>,
    /// Machine-readable reason code.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// Application that rejected the record.
    pub application: String,
    /// Kafka timestamp of the rejected record, UTC microseconds (the same on a replay).
    pub error_time: i64,
}
