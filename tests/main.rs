//! The integration tests, one module per suite, in one binary (one link instead of one per
//! suite). They need the broker and moto that `scripts/test.sh` starts, which runs the suites
//! one after another; `scripts/test.sh --test integration lake::` runs one.

mod common;

mod athena;
mod broker_restart;
mod changelog;
mod cli;
mod dead_letters;
mod driver;
mod exactly_once;
mod failover;
mod kafka_roundtrip;
mod kafka_tls;
mod lake;
mod lake_s3;
mod ops;
mod prometheus;
mod query;
mod registry_api;
mod soak;
mod topology_golden;
mod topology_idle;
mod topology_restart;
