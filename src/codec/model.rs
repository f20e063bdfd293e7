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
    /// True for the bar of a closed window; false for an `emit: update` bar of an open one.
    /// Bars written before the field existed read as final.
    #[serde(default = "final_by_default")]
    pub is_final: bool,
}

fn final_by_default() -> bool {
    true
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
    /// The key or value was longer than [`ENVELOPE_COPY_LIMIT`] and was cut to it; `offset`
    /// still names the whole record.
    #[serde(default)]
    pub truncated: bool,
}

/// Why a record went to a dead-letter (or late) topic: the envelope's `reason` and the
/// `reason` label of `tickflow_dead_letters_total`. One list for every stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not Avro in the Confluent wire format, or a datum its schema cannot read.
    Undecodable,
    /// The registry has no schema with the record's id.
    UnknownSchema,
    /// The record's schema cannot be read as the expected record.
    IncompatibleSchema,
    /// A field the stage needs is missing or empty (the symbol, a lake partition's field).
    MissingField,
    /// The price is not a positive number.
    BadPrice,
    /// The size is not positive.
    BadSize,
    /// The event time is implausibly far from the partition's stream time.
    ImplausibleEventTime,
    /// The tick would overflow a window's sums.
    Overflow,
    /// A record of a repartition topic without a valid origin envelope in front of its value.
    BadRepartitionRecord,
    /// The tick came after its windows closed (late topic, not the dead-letter topic).
    Late,
}

impl Reason {
    /// Every reason of the dead-letter topic (all but [`Reason::Late`]).
    pub const DEAD_LETTERS: [Reason; 9] = [
        Reason::Undecodable,
        Reason::UnknownSchema,
        Reason::IncompatibleSchema,
        Reason::MissingField,
        Reason::BadPrice,
        Reason::BadSize,
        Reason::ImplausibleEventTime,
        Reason::Overflow,
        Reason::BadRepartitionRecord,
    ];

    /// The machine-readable code written in envelopes and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::UnknownSchema => "unknown_schema",
            Reason::IncompatibleSchema => "incompatible_schema",
            Reason::MissingField => "missing_field",
            Reason::BadPrice => "bad_price",
            Reason::BadSize => "bad_size",
            Reason::ImplausibleEventTime => "implausible_event_time",
            Reason::Overflow => "overflow",
            Reason::BadRepartitionRecord => "bad_repartition_record",
            Reason::Late => "late",
        }
    }
}

/// Longest key or value a dead-letter or late envelope copies. A longer one is cut and the
/// envelope flagged `truncated`, so that an oversized record can never make its envelope too
/// large to produce (and the run crash on it again at every restart).
pub const ENVELOPE_COPY_LIMIT: usize = 256 * 1024;

/// The record a dead-letter or late envelope is about.
#[derive(Debug, Clone, Copy)]
pub struct SourceRecord<'a> {
    /// Topic it was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key bytes.
    pub key: Option<&'a [u8]>,
    /// Its value bytes.
    pub value: Option<&'a [u8]>,
    /// Its Kafka timestamp, UTC microseconds: an envelope's time that a replay repeats.
    pub timestamp: i64,
}

impl DeadLetter {
    /// The envelope of `source`, rejected by `application` for `reason`: the one builder of
    /// every stage's dead letters and late records.
    pub fn about(
        source: &SourceRecord<'_>,
        reason: Reason,
        detail: String,
        application: &str,
    ) -> Self {
        let (key, key_cut) = copy_limited(source.key);
        let (value, value_cut) = copy_limited(source.value);
        Self {
            topic: source.topic.to_string(),
            partition: source.partition,
            offset: source.offset,
            key,
            value,
            reason: reason.as_str().into(),
            detail,
            application: application.into(),
            error_time: source.timestamp,
            truncated: key_cut || value_cut,
        }
    }
}

/// A copy of `bytes`, cut to [`ENVELOPE_COPY_LIMIT`]; whether it was cut.
fn copy_limited(bytes: Option<&[u8]>) -> (Option<Vec<u8>>, bool) {
    match bytes {
        Some(b) if b.len() > ENVELOPE_COPY_LIMIT => (Some(b[..ENVELOPE_COPY_LIMIT].to_vec()), true),
        other => (other.map(<[u8]>::to_vec), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An oversized record's envelope keeps at most the limit of its key and of its value,
    /// flagged, with the record's place and time.
    #[test]
    fn envelopes_of_oversized_records_are_cut_and_flagged() {
        let big = vec![7u8; ENVELOPE_COPY_LIMIT + 1];
        let source = SourceRecord {
            topic: "ticks.raw",
            partition: 2,
            offset: 41,
            key: Some(b"AAPL"),
            value: Some(&big),
            timestamp: 1_000,
        };
        let d = DeadLetter::about(&source, Reason::Undecodable, "x".into(), "app");
        assert!(d.truncated);
        assert_eq!(d.value.as_ref().map(Vec::len), Some(ENVELOPE_COPY_LIMIT));
        assert_eq!(
            (d.offset, d.error_time, d.key.as_deref()),
            (41, 1_000, Some(&b"AAPL"[..]))
        );
        let small = SourceRecord {
            value: Some(b"v"),
            ..source
        };
        assert!(!DeadLetter::about(&small, Reason::Late, "y".into(), "app").truncated);
    }
}
