//! The shipped schemas and fast encoders/decoders for them.
//!
//! Encoding writes a Rust value straight into Avro binary with apache-avro's schema-aware serde
//! serializer (no intermediate `Value`). Decoding reads straight into the Rust type when the
//! writer schema is the one tickflow ships, and resolves through apache-avro's schema
//! resolution (writer schema to reader schema) when a producer used another registered
//! version, so that compatible schema evolution just works.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CodecError;

/// Confluent wire format: magic byte.
const MAGIC: u8 = 0;

/// The record types tickflow ships schemas for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// `schemas/tick.avsc`
    Tick,
    /// `schemas/bar.avsc`
    Bar,
    /// `schemas/dead_letter.avsc`
    DeadLetter,
}

static TICK: LazyLock<Schema> = LazyLock::new(|| parse(RecordKind::Tick));
static BAR: LazyLock<Schema> = LazyLock::new(|| parse(RecordKind::Bar));
static DEAD_LETTER: LazyLock<Schema> = LazyLock::new(|| parse(RecordKind::DeadLetter));

fn parse(kind: RecordKind) -> Schema {
    Schema::parse_str(kind.schema_text()).expect("shipped schema parses")
}

impl RecordKind {
    /// The schema as shipped in `schemas/`.
    pub fn schema_text(self) -> &'static str {
        match self {
            RecordKind::Tick => include_str!("../../schemas/tick.avsc"),
            RecordKind::Bar => include_str!("../../schemas/bar.avsc"),
            RecordKind::DeadLetter => include_str!("../../schemas/dead_letter.avsc"),
        }
    }

    /// The parsed schema.
    pub fn schema(self) -> &'static Schema {
        match self {
            RecordKind::Tick => &TICK,
            RecordKind::Bar => &BAR,
            RecordKind::DeadLetter => &DEAD_LETTER,
        }
    }

    /// Fully qualified record name, e.g. `io.tickflow.Tick`.
    pub fn full_name(self) -> &'static str {
        match self {
            RecordKind::Tick => "io.tickflow.Tick",
            RecordKind::Bar => "io.tickflow.Bar",
            RecordKind::DeadLetter => "io.tickflow.DeadLetter",
        }
    }
}

/// Splits a Confluent-framed message into schema id and Avro body.
pub fn split_header(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match bytes {
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [] => Err(CodecError::NotFramed("empty message".into())),
        [m, ..] if *m != MAGIC => Err(CodecError::NotFramed(format!("magic byte is {m}, not 0"))),
        _ => Err(CodecError::NotFramed(format!("only {} bytes", bytes.len()))),
    }
}

/// Encodes values of type `T` with a shipped schema registered under `id`.
pub struct Encoder<T> {
    id: u32,
    writer: GenericDatumWriter<'static>,
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize> Encoder<T> {
    /// An encoder for `kind`'s shipped schema, registered under schema id `id`.
    pub fn new(kind: RecordKind, id: u32) -> Self {
        let writer = GenericDatumWriter::builder(kind.schema())
            .human_readable(false)
            .build()
            .expect("shipped schema resolves");
        Self {
            id,
            writer,
            _record: PhantomData,
        }
    }

    /// The schema id written into every message.
    pub fn schema_id(&self) -> u32 {
        self.id
    }

    /// Replaces `buf` with the framed encoding of `value`.
    pub fn encode_into(&self, value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
        buf.clear();
        buf.push(MAGIC);
        buf.extend_from_slice(&self.id.to_be_bytes());
        self.writer.write_ser(buf, value)?;
        Ok(())
    }

    /// The framed encoding of `value` in a new buffer.
    pub fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut buf = Vec::with_capacity(64);
        self.encode_into(value, &mut buf)?;
        Ok(buf)
    }
}

/// How to read data written with one schema id.
enum WriterPlan {
    /// The writer schema is the shipped one: deserialize directly.
    Direct(GenericDatumReader<'static>),
    /// Another (compatible) version: resolve to the shipped schema, then convert.
    Resolve(GenericDatumReader<'static>),
}

/// Decodes framed messages into `T`, the shipped record type of `kind`. Writer schemas are
/// learned per schema id (see [`Decoder::learn`]); decoding itself never does IO.
pub struct Decoder<T> {
    kind: RecordKind,
    plans: HashMap<u32, WriterPlan>,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Decoder<T> {
    /// A decoder that knows no schema ids yet.
    pub fn new(kind: RecordKind) -> Self {
        Self {
            kind,
            plans: HashMap::new(),
            _record: PhantomData,
        }
    }

    /// Whether `id` has been learned.
    pub fn knows(&self, id: u32) -> bool {
        self.plans.contains_key(&id)
    }

    /// Learns the writer schema of `id` from its JSON text. Fails when the shipped schema
    /// cannot read data written with it.
    pub fn learn(&mut self, id: u32, writer_schema: &str) -> Result<(), CodecError> {
        let reader = self.kind.schema();
        let writer = Schema::parse_str(writer_schema)?;
        let incompatible = |message: String| CodecError::Incompatible {
            id,
            record: self.kind.full_name(),
            message,
        };
        let plan = if writer.canonical_form() == reader.canonical_form() {
            WriterPlan::Direct(
                GenericDatumReader::builder(reader)
                    .human_readable(false)
                    .build()?,
            )
        } else {
            match SchemaCompatibility::can_read(&writer, reader) {
                Ok(Compatibility::Full) => {}
                Ok(other) => return Err(incompatible(format!("only {other:?} compatibility"))),
                Err(e) => return Err(incompatible(e.to_string())),
            }
            // Schemas are few and live as long as the process: leaking one per learned id
            // lets the reader borrow it for 'static.
            let writer: &'static Schema = Box::leak(Box::new(writer));
            WriterPlan::Resolve(
                GenericDatumReader::builder(writer)
                    .reader_schema(reader)
                    .human_readable(false)
                    .build()?,
            )
        };
        self.plans.insert(id, plan);
        Ok(())
    }

    /// Decodes one framed message.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let (id, mut body) = split_header(bytes)?;
        match self.plans.get(&id) {
            None => Err(CodecError::UnknownSchemaId(id)),
            Some(WriterPlan::Direct(reader)) => Ok(reader.read_deser(&mut body)?),
            Some(WriterPlan::Resolve(reader)) => {
                let value = reader.read_value(&mut body)?;
                Ok(apache_avro::from_value(&value)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Bar, DeadLetter, Tick};

    pub(crate) fn tick() -> Tick {
        Tick {
            symbol: "AAPL".into(),
            venue: "XNAS".into(),
            price: 228.51,
            size: 300,
            event_time: 1_795_703_400_000_123,
            trade_id: 7,
            side: "B".into(),
            conditions: vec!["@".into(), "F".into()],
            currency: "USD".into(),
        }
    }

    #[test]
    fn shipped_schemas_parse_with_logical_timestamps() {
        for kind in [RecordKind::Tick, RecordKind::Bar, RecordKind::DeadLetter] {
            let parsed = format!("{:?}", kind.schema());
            assert!(parsed.contains(kind.full_name().rsplit('.').next().unwrap()));
            assert!(parsed.contains("TimestampMicros"), "{kind:?}");
        }
    }

    #[test]
    fn tick_round_trip_and_wire_format() {
        let enc = Encoder::<Tick>::new(RecordKind::Tick, 0x01020304);
        let bytes = enc.encode(&tick()).unwrap();
        assert_eq!(&bytes[..5], &[0, 1, 2, 3, 4]);
        let mut dec = Decoder::<Tick>::new(RecordKind::Tick);
        assert!(matches!(
            dec.decode(&bytes),
            Err(CodecError::UnknownSchemaId(0x01020304))
        ));
        dec.learn(0x01020304, RecordKind::Tick.schema_text())
            .unwrap();
        assert_eq!(dec.decode(&bytes).unwrap(), tick());
    }

    fn bar() -> Bar {
        Bar {
            symbol: "MSFT".into(),
            resolution: "1m".into(),
            window_start: 60_000_000,
            window_end: 120_000_000,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 10,
            vwap: 1.2,
            turnover: 12.0,
            trade_count: 3,
            first_tick_time: 60_000_001,
            last_tick_time: 119_000_000,
            extras: [("max_price".to_string(), 2.0)].into_iter().collect(),
            is_final: false,
        }
    }

    #[test]
    fn bar_and_dead_letter_round_trip() {
        let bar = bar();
        let enc = Encoder::<Bar>::new(RecordKind::Bar, 2);
        let mut dec = Decoder::<Bar>::new(RecordKind::Bar);
        dec.learn(2, RecordKind::Bar.schema_text()).unwrap();
        assert_eq!(dec.decode(&enc.encode(&bar).unwrap()).unwrap(), bar);
        let dl = DeadLetter {
            topic: "ticks.raw".into(),
            partition: 3,
            offset: 99,
            key: Some(b"AAPL".to_vec()),
            value: None,
            reason: "undecodable".into(),
            detail: "magic byte is 7".into(),
            application: "app".into(),
            error_time: 5,
            truncated: false,
        };
        let enc = Encoder::<DeadLetter>::new(RecordKind::DeadLetter, 3);
        let mut dec = Decoder::<DeadLetter>::new(RecordKind::DeadLetter);
        dec.learn(3, RecordKind::DeadLetter.schema_text()).unwrap();
        assert_eq!(dec.decode(&enc.encode(&dl).unwrap()).unwrap(), dl);
    }

    /// Data written by an older producer, without the optional `currency` field, is read with
    /// the field's default.
    #[test]
    fn older_writer_schema_is_resolved() {
        let old = RecordKind::Tick
            .schema_text()
            .replace(
                r#",
    {"name": "currency", "type": "string", "default": "USD", "doc": "ISO 4217 currency of the price."}"#,
                "",
            );
        assert_ne!(old, RecordKind::Tick.schema_text());
        let old_schema = Schema::parse_str(&old).unwrap();
        let mut value = apache_avro::to_value(tick()).unwrap();
        if let apache_avro::types::Value::Record(fields) = &mut value {
            fields.retain(|(name, _)| name != "currency");
        }
        let mut bytes = vec![0, 0, 0, 0, 9];
        GenericDatumWriter::builder(&old_schema)
            .build()
            .unwrap()
            .write_value(&mut bytes, value)
            .unwrap();
        let mut dec = Decoder::<Tick>::new(RecordKind::Tick);
        dec.learn(9, &old).unwrap();
        let mut want = tick();
        want.currency = "USD".into();
        assert_eq!(dec.decode(&bytes).unwrap(), want);
    }

    /// A bar written with the schema from before `is_final` reads as final (the default).
    #[test]
    fn a_bar_without_is_final_reads_as_final() {
        let text = RecordKind::Bar.schema_text();
        let at = text.find(",\n    {\"name\": \"is_final\"").unwrap();
        let old = format!("{}\n  ]\n}}\n", &text[..at]);
        let old_schema = Schema::parse_str(&old).unwrap();
        let mut value = apache_avro::to_value(bar()).unwrap();
        if let apache_avro::types::Value::Record(fields) = &mut value {
            fields.retain(|(name, _)| name != "is_final");
        }
        let mut bytes = vec![0, 0, 0, 0, 4];
        GenericDatumWriter::builder(&old_schema)
            .build()
            .unwrap()
            .write_value(&mut bytes, value)
            .unwrap();
        let mut dec = Decoder::<Bar>::new(RecordKind::Bar);
        dec.learn(4, &old).unwrap();
        let got = dec.decode(&bytes).unwrap();
        assert!(got.is_final);
        assert_eq!(
            got,
            Bar {
                is_final: true,
                ..bar()
            }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut dec = Decoder::<Tick>::new(RecordKind::Tick);
        dec.learn(1, RecordKind::Tick.schema_text()).unwrap();
        assert!(matches!(dec.decode(b""), Err(CodecError::NotFramed(_))));
        assert!(matches!(
            dec.decode(b"\x07abcdef"),
            Err(CodecError::NotFramed(_))
        ));
        assert!(matches!(
            dec.decode(b"\x00\x00"),
            Err(CodecError::NotFramed(_))
        ));
        assert!(matches!(
            dec.decode(b"\x00\x00\x00\x00\x01\xff\xff"),
            Err(CodecError::Avro(_))
        ));
    }

    #[test]
    fn incompatible_writer_is_refused() {
        let mut dec = Decoder::<Tick>::new(RecordKind::Tick);
        let other = r#"{"type":"record","name":"Tick","namespace":"io.tickflow","fields":[{"name":"x","type":"int"}]}"#;
        assert!(matches!(
            dec.learn(4, other),
            Err(CodecError::Incompatible { .. })
        ));
    }
}
