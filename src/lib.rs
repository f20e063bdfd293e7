//! tickflow: a Kafka-Streams-style stateful stream processor. Stock ticks flow through Kafka;
//! tickflow turns them into event-time OHLC/VWAP bars with crash-proof state, and lands ticks
//! and bars in an S3 lake registered in the Glue Data Catalog.
//!
//! Modules follow the data: `config` → `source` → `codec` → (operators, state) → `sink`, with
//! `sim` producing test data, `metrics` holding every metric, and `cli` the only module that
//! prints.

#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod catalog;
pub mod cli;
pub mod codec;
pub mod config;
pub mod kafka;
pub mod metrics;
pub mod operators;
pub mod query;
pub mod sim;
pub mod sink;
pub mod source;
pub mod state;
pub mod topology;
