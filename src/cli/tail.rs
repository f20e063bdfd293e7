//! `tickflow tail`: print records of a topic as JSON lines, decoded through the registry.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use schema_registry_converter::async_impl::avro::AvroDecoder;

use crate::codec::RegistryClient;
use crate::config::AppConfig;
use crate::kafka;
use crate::source::{self, ReadUntil};

/// Flags of `tickflow tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Topic to read.
    #[arg(long, default_value = "ticks.raw")]
    pub topic: String,
    /// Stop after this many records.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub count: usize,
    /// Stop when nothing arrives for this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
}

/// Runs `tickflow tail`: reads from the beginning with a throw-away consumer group.
pub async fn run(args: TailArgs, app: AppConfig) -> anyhow::Result<()> {
    let k = app.kafka.clone();
    tokio::task::spawn_blocking(move || kafka::check_reachable(&k)).await??;
    let group = format!("tickflow-tail-{}", uuid::Uuid::new_v4());
    let (kcfg, topic) = (app.kafka.clone(), args.topic.clone());
    let records = tokio::task::spawn_blocking(move || {
        source::read(
            &kcfg,
            &group,
            &[&topic],
            ReadUntil::count(args.count, args.idle),
        )
    })
    .await??;
    let registry = RegistryClient::from_config(&app.registry)?;
    let decoder = AvroDecoder::new(registry.settings().clone());
    for r in records {
        let value = match decoder.decode(r.value.as_deref()).await {
            Ok(d) => serde_json::Value::try_from(d.value).context("converting to JSON")?,
            Err(e) => serde_json::json!({"undecodable": e.to_string()}),
        };
        let key = r.key.as_deref().map(String::from_utf8_lossy);
        let line = serde_json::json!({
            "partition": r.partition, "offset": r.offset, "key": key, "value": value,
        });
        println!("{line}");
    }
    Ok(())
}
