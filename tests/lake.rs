//! The lake sink lands every record of every landed topic in exactly one file, in the right
//! partition, registered in the catalog. `tests/soak.rs` does it with the sink (and the
//! engine) SIGKILLed again and again.

use crate::common;

use common::golden::{read_all, read_everything, simulate_into};
use common::lake;
use common::process::start_engine_with;
use tickflow::codec::RegistryClient;
use tickflow::sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_lands_once_in_its_partition_and_is_registered() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("lake");
    let input = format!("{id}.ticks");
    const COUNT: u64 = 100_000;
    // Three hours of market time, so ticks and bars span several partitions.
    let cfg = SimConfig {
        trades_per_second: 10.0,
        late_fraction: 0.01,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 50, COUNT).await;
    // Two records the sink cannot land: they go to the dead-letter topic, with the reason.
    const BAD: [&[u8]; 2] = [b"not avro at all", &[0, 0, 0, 0x7f, 0x7f, 1, 2, 3]];
    let (k, i) = (kafka.clone(), input.clone());
    tokio::task::spawn_blocking(move || {
        let sink = tickflow::kafka::KafkaSink::new(&k, &i).unwrap();
        for bad in BAD {
            sink.send_to(&i, b"BAD", bad).unwrap();
        }
        sink.flush(std::time::Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
    let (_dir, lake, t, env) = lake::setup(
        &kafka,
        &registry.url,
        &id,
        &input,
        "{ max_records: 5000, flush_interval: 2s }",
    );
    let (t2, env2) = (t.clone(), env.clone());
    let status = tokio::task::spawn_blocking(move || {
        start_engine_with(&t2, &env2, &[]).child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());

    let (k, i, b) = (kafka.clone(), input.clone(), format!("{id}.bars.1m"));
    let (d, dlq) = (format!("{id}.dlq"), Vec::new());
    let (mut records, dlq) = tokio::task::spawn_blocking(move || {
        let mut r = read_all(&k, &[&i], COUNT as usize + 8 + BAD.len());
        r.extend(read_everything(&k, &[&b]));
        let mut dlq = dlq;
        dlq.extend(read_everything(&k, &[&d]));
        (r, dlq)
    })
    .await
    .unwrap();
    // The dead letters name their reason; the engine's own (it reads the same topic) go to
    // the same topic, so look for the lake sink's.
    let lake_letters: Vec<String> = dlq
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).to_string())
        .filter(|l| l.contains(&format!("{id}-lake")))
        .collect();
    assert_eq!(lake_letters.len(), BAD.len(), "{lake_letters:?}");
    assert!(
        lake_letters.iter().any(|l| l.contains("undecodable")),
        "{lake_letters:?}"
    );
    assert!(
        lake_letters.iter().any(|l| l.contains("unknown_schema")),
        "{lake_letters:?}"
    );
    records.retain(|r| r.key.as_deref() != Some(b"BAD"));
    let bars = format!("{id}.bars.1m");
    let tables = [
        (input.as_str(), "ticks", "event_time"),
        (bars.as_str(), "bars_1m", "window_start"),
    ];
    lake::check_local(&lake, &records, &tables, &client).await;

    // A lost catalog is rebuilt from the files by `tickflow catalog sync`.
    std::fs::remove_dir_all(lake.join("_catalog")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["catalog", "sync", "--topology"])
        .arg(&t)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tickflow.ticks: "), "{stdout}");
    lake::check_local(&lake, &records, &tables, &client).await;
}
