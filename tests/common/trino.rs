//! The column types Athena (Trino's Hive connector) reads from a lake file, written down from
//! Trino's and Hive's documented behaviour and kept apart from tickflow's own mapping
//! (`catalog::hive`), so that a Glue column that Athena cannot read from the files fails a
//! test. Types are given in Hive's names, as Glue stores them (`int` is Trino's `integer`,
//! `float` its `real`, `string` its `varchar`, `binary` its `varbinary`).
//!
//! Avro (Trino's Hive Avro reader, which follows Hive's `AvroSerDe`): the primitive types map
//! one to one (`long` is `bigint`, `bytes` and `fixed` are `binary`, `enum` is `string`); a
//! union of null and one type is that type; `array`, `map` (string keys) and `record` are
//! `array`, `map` and `struct`. Of the logical types only `decimal`, `date` and
//! `timestamp-millis` are converted: any other (`timestamp-micros`, `timestamp-nanos`,
//! `local-timestamp-*`, `time-*`, `uuid`) is read as its underlying type, so a
//! `timestamp-micros` field is a `bigint` to Athena.
//!
//! Parquet (Trino's Parquet reader): `INT64` annotated `TIMESTAMP` (any unit) is `timestamp`,
//! `INT32` annotated `DATE` is `date`, `BINARY` annotated `STRING`, `ENUM` or `JSON` is
//! `string`, a `DECIMAL` annotation is `decimal`; unannotated `INT32`, `INT64`, `FLOAT`,
//! `DOUBLE`, `BOOLEAN` and `BINARY` are `int`, `bigint`, `float`, `double`, `boolean` and
//! `binary`; groups annotated `LIST` and `MAP` are `array` and `map`, other groups `struct`.

use apache_avro::Schema;
use datafusion::parquet::basic::{LogicalType, Type as Physical};
use datafusion::parquet::schema::types::Type as ParquetType;

/// The Hive type Athena reads an Avro field of `schema` as.
pub fn avro_type(schema: &Schema) -> String {
    match schema {
        Schema::Boolean => "boolean".into(),
        Schema::Date => "date".into(),
        Schema::Int | Schema::TimeMillis => "int".into(),
        Schema::Long
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos
        | Schema::TimeMicros => "bigint".into(),
        Schema::TimestampMillis => "timestamp".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes | Schema::Fixed(_) => "binary".into(),
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => "string".into(),
        Schema::Decimal(d) => format!("decimal({},{})", d.precision, d.scale),
        Schema::Array(a) => format!("array<{}>", avro_type(&a.items)),
        Schema::Map(m) => format!("map<string,{}>", avro_type(&m.types)),
        Schema::Union(u) => {
            let branches: Vec<&Schema> = u
                .variants()
                .iter()
                .filter(|s| **s != Schema::Null)
                .collect();
            assert_eq!(branches.len(), 1, "Athena reads no union of {u:?}");
            avro_type(branches[0])
        }
        Schema::Record(r) => {
            let fields: Vec<String> = r
                .fields
                .iter()
                .map(|f| format!("{}:{}", f.name.to_lowercase(), avro_type(&f.schema)))
                .collect();
            format!("struct<{}>", fields.join(","))
        }
        other => panic!("no Athena type for Avro {other:?}"),
    }
}

/// The (column, Hive type) pairs Athena reads from the top-level fields of an Avro record
/// schema.
pub fn avro_columns(schema: &Schema) -> Vec<(String, String)> {
    let Schema::Record(r) = schema else {
        panic!("not a record schema: {schema:?}")
    };
    r.fields
        .iter()
        .map(|f| (f.name.to_lowercase(), avro_type(&f.schema)))
        .collect()
}

/// The Hive type Athena reads a Parquet column (or group) of type `t` as.
pub fn parquet_type(t: &ParquetType) -> String {
    let logical = t.get_basic_info().logical_type_ref();
    if t.is_group() {
        let fields = t.get_fields();
        return match logical {
            Some(LogicalType::List) => {
                // A LIST group holds one repeated group (`list`) of one field (`element`).
                let repeated = &fields[0];
                let element = if repeated.is_group() && repeated.get_fields().len() == 1 {
                    &repeated.get_fields()[0]
                } else {
                    repeated
                };
                format!("array<{}>", parquet_type(element))
            }
            Some(LogicalType::Map) => {
                let entry = fields[0].get_fields();
                format!(
                    "map<{},{}>",
                    parquet_type(&entry[0]),
                    parquet_type(&entry[1])
                )
            }
            _ => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{}:{}", f.name().to_lowercase(), parquet_type(f)))
                    .collect();
                format!("struct<{}>", inner.join(","))
            }
        };
    }
    match (t.get_physical_type(), logical) {
        (_, Some(LogicalType::Decimal(d))) => format!("decimal({},{})", d.precision, d.scale),
        (Physical::INT64, Some(LogicalType::Timestamp { .. })) => "timestamp".into(),
        (Physical::INT32, Some(LogicalType::Date)) => "date".into(),
        (
            Physical::BYTE_ARRAY,
            Some(LogicalType::String | LogicalType::Enum | LogicalType::Json),
        ) => "string".into(),
        (Physical::INT32, _) => "int".into(),
        (Physical::INT64, _) => "bigint".into(),
        (Physical::FLOAT, _) => "float".into(),
        (Physical::DOUBLE, _) => "double".into(),
        (Physical::BOOLEAN, _) => "boolean".into(),
        (Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY, _) => "binary".into(),
        (other, l) => panic!("no Athena type for Parquet {other:?} {l:?}"),
    }
}

/// The (column, Hive type) pairs Athena reads from a Parquet file's top-level columns.
pub fn parquet_columns(file: &[u8]) -> Vec<(String, String)> {
    let bytes = bytes::Bytes::copy_from_slice(file);
    let meta = datafusion::parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .unwrap();
    let root = meta.file_metadata().schema();
    root.get_fields()
        .iter()
        .map(|f| (f.name().to_lowercase(), parquet_type(f)))
        .collect()
}

/// The (column, Hive type) pairs Athena reads from an Avro container file (its writer schema).
pub fn avro_file_columns(file: &[u8]) -> Vec<(String, String)> {
    let reader = apache_avro::Reader::new(file).unwrap();
    avro_columns(reader.writer_schema())
}
