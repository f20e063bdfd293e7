//! Simulated ticks survive the trip through a real Kafka-protocol broker: produce 200,000
//! ticks over 8 partitions, consume them with a consumer group, decode through the registry,
//! and compare with the generator's sequence.

use crate::common;

use std::collections::{BTreeMap, HashMap};

use tickflow::codec::{Decoder, Encoder, RecordKind, RegistryClient, Tick, split_header};
use tickflow::kafka::KafkaSink;
use tickflow::kafka::{TopicSpec, ensure_topic, ensure_topics};
use tickflow::sim::{Pace, SimConfig, TickStream, produce_ticks, universe};

const START: i64 = 1_795_703_400_000_000;
const COUNT: u64 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_ticks_round_trip() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let topic = common::unique("ticks-roundtrip");
    assert_eq!(ensure_topic(&kafka, &topic, 8, &[]).await.unwrap(), 8);
    // Several at once: an existing topic keeps its partitions, new ones (one named twice)
    // are created in one request.
    let (a, b) = (format!("{topic}-a"), format!("{topic}-b"));
    let spec = |name, partitions| TopicSpec {
        name,
        partitions,
        configs: &[("cleanup.policy", "compact")],
    };
    let specs = [spec(&topic, 2), spec(&a, 3), spec(&b, 1), spec(&a, 3)];
    let counts = ensure_topics(&kafka, &specs).await.unwrap();
    assert_eq!(counts, [8, 3, 1, 3]);

    let cfg = SimConfig::default();
    let expected: Vec<Tick> =
        TickStream::from_config(&cfg, universe(None, 200).unwrap(), START, Some(COUNT))
            .unwrap()
            .collect();
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = client
        .register_value(&topic, RecordKind::Tick)
        .await
        .unwrap();

    let (k, t, ticks) = (kafka.clone(), topic.clone(), expected.clone());
    let summary = tokio::task::spawn_blocking(move || {
        let sink = KafkaSink::new(&k, &t).unwrap();
        let encoder = Encoder::<Tick>::new(RecordKind::Tick, id);
        produce_ticks(ticks.into_iter(), &encoder, &sink, Pace::default(), |_| {}).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(summary.ticks, COUNT);

    let (k, t) = (kafka.clone(), topic.clone());
    let records =
        tokio::task::spawn_blocking(move || common::golden::read_all(&k, &[&t], COUNT as usize))
            .await
            .unwrap();

    let mut decoder = Decoder::<Tick>::new(RecordKind::Tick);
    let mut by_partition: BTreeMap<i32, Vec<(i64, Tick)>> = BTreeMap::new();
    for r in &records {
        let bytes = r.value.as_deref().unwrap();
        let (schema_id, _) = split_header(bytes).unwrap();
        if !decoder.knows(schema_id) {
            client.teach(&mut decoder, schema_id).await.unwrap();
        }
        let tick = decoder.decode(bytes).unwrap();
        assert_eq!(
            r.key.as_deref(),
            Some(tick.symbol.as_bytes()),
            "keyed by symbol"
        );
        by_partition
            .entry(r.partition)
            .or_default()
            .push((r.offset, tick));
    }
    assert_eq!(
        records.len() as u64,
        COUNT,
        "nothing missing, nothing extra"
    );
    assert_eq!(by_partition.len(), 8, "all partitions used");

    // Every symbol lives in exactly one partition, and its ticks arrive in generation order.
    let mut got_per_symbol: HashMap<String, Vec<i64>> = HashMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let mut got: HashMap<i64, Tick> = HashMap::new();
    for (p, mut rows) in by_partition {
        rows.sort_by_key(|(offset, _)| *offset);
        for (_, tick) in rows {
            assert_eq!(
                *partition_of.entry(tick.symbol.clone()).or_insert(p),
                p,
                "{}",
                tick.symbol
            );
            got_per_symbol
                .entry(tick.symbol.clone())
                .or_default()
                .push(tick.trade_id);
            assert!(
                got.insert(tick.trade_id, tick).is_none(),
                "duplicate trade id"
            );
        }
    }
    let mut want_per_symbol: HashMap<String, Vec<i64>> = HashMap::new();
    for tick in &expected {
        want_per_symbol
            .entry(tick.symbol.clone())
            .or_default()
            .push(tick.trade_id);
        assert_eq!(
            got.get(&tick.trade_id),
            Some(tick),
            "tick {} differs",
            tick.trade_id
        );
    }
    assert_eq!(
        got_per_symbol, want_per_symbol,
        "per-symbol order preserved"
    );
}
