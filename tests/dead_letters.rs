//! Bad data never stops the engine and is never lost: each kind of bad record, mixed among good
//! ticks, reaches the dead-letter topic with its reason, and the bars hold every good tick.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use apache_avro::types::{Record, Value};
use common::golden::{
    Entry, Rules, START, assert_bars_equal, bars_of, expected_with, read_all, run_until_idle,
};
use tickflow::codec::{
    DeadLetter, Decoder, Encoder, RecordKind, RegistryClient, Tick, WATERMARK_KEY, split_header,
    watermark_value,
};
use tickflow::kafka::KafkaSink;
use tickflow::kafka::ensure_topic;
use tickflow::metrics::Metrics;
use tickflow::sim::{SimConfig, TickStream, universe};

const S: i64 = 1_000_000;

/// A tick schema without `price`, registered under its own subject.
const LEGACY: &str = r#"{"type":"record","name":"Tick","namespace":"io.tickflow","fields":[{"name":"symbol","type":"string"},{"name":"venue","type":"string"},{"name":"size","type":"long"},{"name":"event_time","type":"long"},{"name":"trade_id","type":"long"},{"name":"side","type":"string"}]}"#;

async fn register_legacy(registry_url: &str) -> u32 {
    common::register_schema(registry_url, "legacy-value", LEGACY).await
}

fn legacy_record(id: u32, t: &Tick) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(LEGACY).unwrap();
    let mut r = Record::new(&schema).unwrap();
    r.put("symbol", t.symbol.clone());
    r.put("venue", t.venue.clone());
    r.put("size", t.size);
    r.put("event_time", t.event_time);
    r.put("trade_id", t.trade_id);
    r.put("side", t.side.clone());
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    out.extend(writer.write_value_to_vec(Value::from(r)).unwrap());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_record_reaches_the_dlq_with_its_reason() {
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("dlq");
    let input = format!("{id}.ticks");
    ensure_topic(&kafka, &input, 1, &[]).await.unwrap();
    let tick_id = client
        .register_value(&input, RecordKind::Tick)
        .await
        .unwrap();
    let legacy_id = register_legacy(&registry.url).await;
    let encoder = Encoder::<Tick>::new(RecordKind::Tick, tick_id);

    // 3,000 good ticks; after every 300th, one bad record of the next kind.
    let good: Vec<Tick> = TickStream::from_config(
        &SimConfig::default(),
        universe(None, 20).unwrap(),
        START,
        Some(3000),
    )
    .unwrap()
    .collect();
    let bad = |k: usize, t: &Tick| -> (&'static str, Vec<u8>) {
        let mut t = t.clone();
        match k {
            0 => ("undecodable", b"not avro at all".to_vec()),
            1 => ("unknown_schema", [&[0, 0, 0, 0, 99][..], b"xx"].concat()),
            2 => ("incompatible_schema", legacy_record(legacy_id, &t)),
            3 => {
                t.price = f64::NAN;
                ("bad_price", encoder.encode(&t).unwrap())
            }
            4 => {
                t.price = -1.0;
                ("bad_price", encoder.encode(&t).unwrap())
            }
            5 => {
                t.size = 0;
                ("bad_size", encoder.encode(&t).unwrap())
            }
            6 => {
                t.event_time += 3 * 86_400 * S;
                ("implausible_event_time", encoder.encode(&t).unwrap())
            }
            _ => unreachable!(),
        }
    };
    let mut log = Vec::new();
    let mut want_dlq = BTreeMap::new();
    let (k, topic) = (kafka.clone(), input.clone());
    let sink = KafkaSink::new(&k, &topic).unwrap();
    let mut offset = 0i64;
    for (i, t) in good.iter().enumerate() {
        sink.send(t.symbol.as_bytes(), &encoder.encode(t).unwrap())
            .unwrap();
        log.push(Entry::Tick(offset, t.clone()));
        offset += 1;
        if i % 300 == 299 && i / 300 < 7 {
            let (reason, bytes) = bad(i / 300, t);
            sink.send(t.symbol.as_bytes(), &bytes).unwrap();
            want_dlq.insert(offset, reason.to_string());
            offset += 1;
        }
    }
    let end = good.iter().map(|t| t.event_time).max().unwrap() + 86_400 * S;
    sink.send(WATERMARK_KEY, &watermark_value(end)).unwrap();
    sink.flush(Duration::from_secs(30)).unwrap();

    let topology = format!(
        "application: {id}\nsources:\n  ticks: {{ topic: {input} }}\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1s]\n      grace: 2s\n      aggregates: [open, high, low, close, volume, vwap]\nsinks:\n  - {{ input: bars, topic: \"{id}.bars.{{resolution}}\" }}\n"
    );
    let metrics = Metrics::new();
    let stats = run_until_idle(&kafka, &registry.url, &topology, metrics.clone()).await;
    assert_eq!(stats.dead_letters, 7, "{stats:?}");
    for reason in ["bad_price", "undecodable", "implausible_event_time"] {
        let n = metrics
            .dead_letters
            .with_label_values(&["engine", reason])
            .get();
        assert_eq!(n, if reason == "bad_price" { 2 } else { 1 }, "{reason}");
    }

    let (k, d) = (kafka.clone(), format!("{id}.dlq"));
    let dlq = tokio::task::spawn_blocking(move || read_all(&k, &[&d], 7))
        .await
        .unwrap();
    let mut decoder = Decoder::<DeadLetter>::new(RecordKind::DeadLetter);
    let mut got_dlq = BTreeMap::new();
    for r in dlq {
        let bytes = r.value.unwrap();
        let (schema, _) = split_header(&bytes).unwrap();
        if !decoder.knows(schema) {
            client.teach(&mut decoder, schema).await.unwrap();
        }
        let d = decoder.decode(&bytes).unwrap();
        assert_eq!((d.topic.as_str(), d.partition), (input.as_str(), 0));
        assert!(d.value.is_some() && !d.detail.is_empty(), "{d:?}");
        got_dlq.insert(d.offset, d.reason);
    }
    assert_eq!(got_dlq, want_dlq);

    let rules = Rules {
        windows: &[("1s", S, S)],
        grace: 2 * S,
        key: |t| t.symbol.clone(),
        keep: |_| true,
        session_gap: None,
    };
    let (want_bars, _) = expected_with(&BTreeMap::from([(0, log)]), &rules);
    let (k, b, n) = (kafka.clone(), format!("{id}.bars.1s"), stats.bars as usize);
    let bars = tokio::task::spawn_blocking(move || read_all(&k, &[&b], n))
        .await
        .unwrap();
    assert_bars_equal(&bars_of(&bars, &client).await, &want_bars);
}
