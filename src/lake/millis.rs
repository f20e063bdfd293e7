//! Timestamps in Avro lake files are milliseconds. Athena reads Avro through Trino's Hive
//! connector, which (like Hive's AvroSerDe) converts the `timestamp-millis` logical type only:
//! a `timestamp-micros` field is read as a plain long, which a table column declared
//! `timestamp` cannot hold. So an Avro lake file declares every timestamp field of the
//! registry schema (`timestamp-micros`, `timestamp-nanos` and the `local-` ones) as
//! `timestamp-millis`, and its datums carry the value floored to the millisecond. Parquet
//! files keep microseconds (Athena reads them as `timestamp`).
//!
//! The datums are rewritten byte by byte, walking the schema, so that landing a record still
//! costs no decoding into values.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{
    ArraySchema, InnerDecimalSchema, MapSchema, Name, RecordSchema, UnionSchema, UuidSchema,
};
use apache_avro::types::Value;

/// Rewrites the datums of one registry schema into the datums of its lake schema.
pub struct Millis {
    /// The registry schema.
    schema: Schema,
    /// Its named types, for references.
    names: HashMap<Name, Schema>,
    /// The schema that the lake file declares.
    pub lake_schema: Schema,
}

/// A datum that does not match its schema.
#[derive(Debug, thiserror::Error)]
#[error("datum does not match its schema: {0}")]
pub struct BadDatum(&'static str);

impl Millis {
    /// The rewriter for `schema`, or `None` when it has no timestamp finer than milliseconds
    /// (its datums are landed as they are).
    pub fn of(schema: &Schema) -> Result<Option<Self>, apache_avro::Error> {
        let lake_schema = to_millis_schema(schema);
        // Compared as JSON: `Schema`'s equality is about parsing, not logical types.
        if serde_json::to_string(&lake_schema).ok() == serde_json::to_string(schema).ok() {
            return Ok(None);
        }
        let resolved = apache_avro::schema::ResolvedSchema::try_from(schema)?;
        let names = resolved
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        Ok(Some(Self {
            schema: schema.clone(),
            names,
            lake_schema,
        }))
    }

    /// The lake datum of one binary-encoded registry datum.
    pub fn rewrite(&self, mut datum: &[u8]) -> Result<Vec<u8>, BadDatum> {
        let mut out = Vec::with_capacity(datum.len());
        self.copy(&self.schema, &mut datum, &mut out)?;
        if !datum.is_empty() {
            return Err(BadDatum("bytes after the datum"));
        }
        Ok(out)
    }

    fn copy(&self, schema: &Schema, inp: &mut &[u8], out: &mut Vec<u8>) -> Result<(), BadDatum> {
        match schema {
            Schema::Null => {}
            Schema::Boolean => take(inp, 1, out)?,
            Schema::Float => take(inp, 4, out)?,
            Schema::Double => take(inp, 8, out)?,
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::LocalTimestampMillis
            | Schema::Enum(_) => write_long(read_long(inp)?, out),
            Schema::TimestampMicros | Schema::LocalTimestampMicros => {
                write_long(read_long(inp)?.div_euclid(1_000), out)
            }
            Schema::TimestampNanos | Schema::LocalTimestampNanos => {
                write_long(read_long(inp)?.div_euclid(1_000_000), out)
            }
            Schema::Bytes | Schema::String | Schema::BigDecimal => sized(inp, out)?,
            Schema::Uuid(UuidSchema::String | UuidSchema::Bytes) => sized(inp, out)?,
            Schema::Uuid(UuidSchema::Fixed(f)) | Schema::Fixed(f) | Schema::Duration(f) => {
                take(inp, f.size, out)?
            }
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => sized(inp, out)?,
                InnerDecimalSchema::Fixed(f) => take(inp, f.size, out)?,
            },
            Schema::Array(a) => self.blocks(inp, out, |s, inp, out| s.copy(&a.items, inp, out))?,
            Schema::Map(m) => self.blocks(inp, out, |s, inp, out| {
                sized(inp, out)?;
                s.copy(&m.types, inp, out)
            })?,
            Schema::Union(u) => {
                let branch = read_long(inp)?;
                let variant = usize::try_from(branch)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or(BadDatum("union branch out of range"))?;
                write_long(branch, out);
                self.copy(variant, inp, out)?;
            }
            Schema::Record(r) => {
                for f in &r.fields {
                    self.copy(&f.schema, inp, out)?;
                }
            }
            Schema::Ref { name } => {
                let named = self.names.get(name).ok_or(BadDatum("unknown named type"))?;
                self.copy(named, inp, out)?;
            }
        }
        Ok(())
    }

    /// Copies the blocks of an array or map, each item with `item`. Blocks are written with
    /// their item count only: a block's byte size would change with its timestamps.
    fn blocks(
        &self,
        inp: &mut &[u8],
        out: &mut Vec<u8>,
        item: impl Fn(&Self, &mut &[u8], &mut Vec<u8>) -> Result<(), BadDatum>,
    ) -> Result<(), BadDatum> {
        loop {
            let mut count = read_long(inp)?;
            if count == 0 {
                write_long(0, out);
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or(BadDatum("block count"))?;
                read_long(inp)?;
            }
            write_long(count, out);
            for _ in 0..count {
                item(self, inp, out)?;
            }
        }
    }
}

/// `schema` with every timestamp finer than milliseconds declared `timestamp-millis`.
pub fn to_millis_schema(schema: &Schema) -> Schema {
    match schema {
        Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Schema::TimestampMillis,
        Schema::LocalTimestampMillis => Schema::TimestampMillis,
        Schema::Array(a) => Schema::Array(ArraySchema {
            items: Box::new(to_millis_schema(&a.items)),
            attributes: a.attributes.clone(),
        }),
        Schema::Map(m) => Schema::Map(MapSchema {
            types: Box::new(to_millis_schema(&m.types)),
            attributes: m.attributes.clone(),
        }),
        Schema::Union(u) => {
            let variants = u.variants().iter().map(to_millis_schema).collect();
            UnionSchema::new(variants).map_or_else(|_| schema.clone(), Schema::Union)
        }
        Schema::Record(r) => {
            let fields = r
                .fields
                .iter()
                .map(|f| {
                    let mut lake = f.clone();
                    lake.schema = to_millis_schema(&f.schema);
                    let per_ms = divisor(&f.schema);
                    if let (true, Some(serde_json::Value::Number(n))) = (per_ms > 1, &f.default)
                        && let Some(v) = n.as_i64()
                    {
                        lake.default = Some(v.div_euclid(per_ms).into());
                    }
                    lake
                })
                .collect();
            Schema::Record(RecordSchema {
                fields,
                ..r.clone()
            })
        }
        other => other.clone(),
    }
}

/// Units per millisecond of a timestamp schema.
fn divisor(schema: &Schema) -> i64 {
    match schema {
        Schema::TimestampMicros | Schema::LocalTimestampMicros => 1_000,
        Schema::TimestampNanos | Schema::LocalTimestampNanos => 1_000_000,
        _ => 1,
    }
}

/// A decoded registry value as its lake file holds it: every timestamp a
/// `timestamp-millis`, floored to the millisecond.
pub fn to_millis_value(value: Value) -> Value {
    match value {
        Value::TimestampMicros(t) | Value::LocalTimestampMicros(t) => {
            Value::TimestampMillis(t.div_euclid(1_000))
        }
        Value::TimestampNanos(t) | Value::LocalTimestampNanos(t) => {
            Value::TimestampMillis(t.div_euclid(1_000_000))
        }
        Value::LocalTimestampMillis(t) => Value::TimestampMillis(t),
        other => map_children(other, to_millis_value),
    }
}

/// A value read from a lake file with every timestamp in microseconds, as the registry
/// schemas of ticks and bars declare them (a millisecond value gains three zeros).
pub fn to_micros_value(value: Value) -> Value {
    match value {
        Value::TimestampMillis(t) | Value::LocalTimestampMillis(t) => {
            Value::TimestampMicros(t.saturating_mul(1_000))
        }
        Value::TimestampNanos(t) | Value::LocalTimestampNanos(t) => {
            Value::TimestampMicros(t.div_euclid(1_000))
        }
        Value::LocalTimestampMicros(t) => Value::TimestampMicros(t),
        other => map_children(other, to_micros_value),
    }
}

fn map_children(value: Value, f: fn(Value) -> Value) -> Value {
    match value {
        Value::Record(fields) => {
            Value::Record(fields.into_iter().map(|(n, v)| (n, f(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(f).collect()),
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, f(v))).collect()),
        Value::Union(i, v) => Value::Union(i, Box::new(f(*v))),
        other => other,
    }
}

fn take(inp: &mut &[u8], n: usize, out: &mut Vec<u8>) -> Result<(), BadDatum> {
    if inp.len() < n {
        return Err(BadDatum("datum ends early"));
    }
    let (head, rest) = inp.split_at(n);
    out.extend_from_slice(head);
    *inp = rest;
    Ok(())
}

/// Copies a length-prefixed value (bytes, string).
fn sized(inp: &mut &[u8], out: &mut Vec<u8>) -> Result<(), BadDatum> {
    let n = read_long(inp)?;
    let len = usize::try_from(n).map_err(|_| BadDatum("negative length"))?;
    write_long(n, out);
    take(inp, len, out)
}

/// Reads Avro's zig-zag variable-length long.
fn read_long(inp: &mut &[u8]) -> Result<i64, BadDatum> {
    let mut z = 0u64;
    for (i, b) in inp.iter().enumerate().take(10) {
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *inp = &inp[i + 1..];
            return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    Err(BadDatum("bad variable-length integer"))
}

/// Writes Avro's zig-zag variable-length long.
pub fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RecordKind;
    use apache_avro::writer::datum::GenericDatumWriter;

    fn encode(schema: &Schema, v: Value) -> Vec<u8> {
        GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(v)
            .unwrap()
    }

    fn decode(schema: &Schema, bytes: &[u8]) -> Value {
        crate::lake::decode_datum(schema, bytes).unwrap()
    }

    /// Every kind of field, timestamps nested in unions, arrays, maps and a named type
    /// used twice; negative and pre-1970 times floor, not truncate.
    const SCHEMA: &str = r#"{"type":"record","name":"R","namespace":"t","fields":[
      {"name":"s","type":"string"},
      {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
      {"name":"b","type":"boolean"},{"name":"f","type":"float"},{"name":"d","type":"double"},
      {"name":"maybe","type":["null",{"type":"long","logicalType":"timestamp-micros"}],"default":null},
      {"name":"ns","type":{"type":"long","logicalType":"timestamp-nanos"}},
      {"name":"ms","type":{"type":"long","logicalType":"timestamp-millis"}},
      {"name":"times","type":{"type":"array","items":{"type":"long","logicalType":"timestamp-micros"}}},
      {"name":"named","type":{"type":"map","values":{"type":"record","name":"P","fields":[
        {"name":"x","type":"int"},{"name":"when","type":{"type":"long","logicalType":"timestamp-micros"}}]}}},
      {"name":"again","type":"P"},
      {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
      {"name":"fx","type":{"type":"fixed","name":"F","size":3}},
      {"name":"raw","type":"bytes"}]}"#;

    fn sample(i: i64) -> Value {
        let p = |x: i32, when: i64| {
            Value::Record(vec![
                ("x".into(), Value::Int(x)),
                ("when".into(), Value::TimestampMicros(when)),
            ])
        };
        Value::Record(vec![
            ("s".into(), Value::String(format!("s{i}"))),
            (
                "at".into(),
                Value::TimestampMicros(1_772_000_000_123_456 + i * 997),
            ),
            ("b".into(), Value::Boolean(i % 2 == 0)),
            ("f".into(), Value::Float(1.5)),
            ("d".into(), Value::Double(-2.25)),
            (
                "maybe".into(),
                if i % 3 == 0 {
                    Value::Union(0, Box::new(Value::Null))
                } else {
                    Value::Union(1, Box::new(Value::TimestampMicros(-1_500 - i)))
                },
            ),
            (
                "ns".into(),
                Value::TimestampNanos(1_772_000_000_123_456_789),
            ),
            ("ms".into(), Value::TimestampMillis(1_772_000_000_123)),
            (
                "times".into(),
                Value::Array(
                    (0..i % 4)
                        .map(|k| Value::TimestampMicros(k * 1_999))
                        .collect(),
                ),
            ),
            (
                "named".into(),
                Value::Map(
                    (0..i % 3)
                        .map(|k| (format!("k{k}"), p(k as i32, 5_001 * k)))
                        .collect(),
                ),
            ),
            ("again".into(), p(7, -1)),
            ("e".into(), Value::Enum(1, "B".into())),
            ("fx".into(), Value::Fixed(3, vec![1, 2, 3])),
            ("raw".into(), Value::Bytes(vec![0, 255, 7])),
        ])
    }

    #[test]
    fn rewritten_datums_read_as_the_floored_millisecond_values() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let m = Millis::of(&schema).unwrap().expect("has micros");
        let text = serde_json::to_string(&m.lake_schema).unwrap();
        assert!(
            !text.contains("micros") && !text.contains("nanos"),
            "{text}"
        );
        let lake = Schema::parse_str(&text).unwrap();
        for i in 0..40 {
            let bytes = m.rewrite(&encode(&schema, sample(i))).unwrap();
            assert_eq!(decode(&lake, &bytes), to_millis_value(sample(i)), "{i}");
        }
        let Value::Record(fields) = to_millis_value(sample(1)) else {
            unreachable!()
        };
        assert_eq!(fields[1].1, Value::TimestampMillis(1_772_000_000_124));
        let maybe = Value::Union(1, Box::new(Value::TimestampMillis(-2)));
        assert_eq!(
            fields[5].1, maybe,
            "floored: -1.501 ms is in millisecond -2"
        );
    }

    #[test]
    fn size_prefixed_blocks_and_bad_datums() {
        let schema = Schema::parse_str(
            r#"{"type":"array","items":{"type":"long","logicalType":"timestamp-micros"}}"#,
        )
        .unwrap();
        let m = Millis::of(&schema).unwrap().unwrap();
        // One block of two items written with its byte size (count -2, 6 bytes), then the end.
        let mut datum = Vec::new();
        for n in [-2, 6, 2_000_000, 3_000_000, 0] {
            write_long(n, &mut datum);
        }
        let back = decode(&m.lake_schema, &m.rewrite(&datum).unwrap());
        let want = Value::Array(vec![
            Value::TimestampMillis(2_000),
            Value::TimestampMillis(3_000),
        ]);
        assert_eq!(back, want);
        assert!(m.rewrite(&datum[..datum.len() - 1]).is_err(), "ends early");
        let mut longer = datum.clone();
        longer.push(0);
        assert!(m.rewrite(&longer).is_err(), "trailing bytes");
    }

    #[test]
    fn tick_and_bar_schemas_change_and_others_do_not() {
        for kind in [RecordKind::Tick, RecordKind::Bar] {
            let m = Millis::of(kind.schema()).unwrap().expect("timestamps");
            let text = serde_json::to_string(&m.lake_schema).unwrap();
            assert!(text.contains("timestamp-millis"), "{kind:?}: {text}");
            assert!(!text.contains("timestamp-micros"), "{kind:?}: {text}");
        }
        let plain = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
        )
        .unwrap();
        assert!(Millis::of(&plain).unwrap().is_none());
    }

    /// Timestamps of every precision, alone, in a union and in an array.
    const TIMES: &str = r#"{"type":"record","name":"T","fields":[
      {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
      {"name":"maybe","type":["null",{"type":"long","logicalType":"timestamp-micros"}]},
      {"name":"ns","type":{"type":"long","logicalType":"local-timestamp-nanos"}},
      {"name":"times","type":{"type":"array","items":{"type":"long","logicalType":"timestamp-micros"}}}]}"#;

    proptest::proptest! {
        /// Any bytes from a topic are rewritten or refused, never a panic (the lake sink
        /// sends refused ones to the dead-letter topic).
        #[test]
        fn any_bytes_are_rewritten_or_refused(bytes: Vec<u8>) {
            let m = Millis::of(&Schema::parse_str(SCHEMA).unwrap()).unwrap().unwrap();
            let _ = m.rewrite(&bytes);
        }

        /// Any times read back from the lake datum as the values floored to the millisecond.
        #[test]
        fn any_times_floor_to_the_millisecond(at: i64, maybe: Option<i64>, ns: i64, times: Vec<i64>) {
            let schema = Schema::parse_str(TIMES).unwrap();
            let m = Millis::of(&schema).unwrap().unwrap();
            let maybe = match maybe {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(t) => Value::Union(1, Box::new(Value::TimestampMicros(t))),
            };
            let value = Value::Record(vec![
                ("at".into(), Value::TimestampMicros(at)),
                ("maybe".into(), maybe),
                ("ns".into(), Value::LocalTimestampNanos(ns)),
                ("times".into(), Value::Array(times.iter().map(|t| Value::TimestampMicros(*t)).collect())),
            ]);
            let bytes = m.rewrite(&encode(&schema, value.clone())).unwrap();
            let Value::Record(fields) = decode(&m.lake_schema, &bytes) else { unreachable!() };
            let ms = |t: i64, per: i64| t.div_euclid(per);
            proptest::prop_assert_eq!(&fields[0].1, &Value::TimestampMillis(ms(at, 1_000)));
            proptest::prop_assert_eq!(&fields[2].1, &Value::TimestampMillis(ms(ns, 1_000_000)));
            let want: Vec<Value> = times.iter().map(|t| Value::TimestampMillis(ms(*t, 1_000))).collect();
            proptest::prop_assert_eq!(&fields[3].1, &Value::Array(want));
            proptest::prop_assert_eq!(Value::Record(fields), to_millis_value(value));
        }
    }

    #[test]
    fn micros_values_come_back_from_millis() {
        let v = Value::Record(vec![("t".into(), Value::TimestampMillis(12))]);
        let want = Value::Record(vec![("t".into(), Value::TimestampMicros(12_000))]);
        assert_eq!(to_micros_value(v), want);
    }
}
