//! Parquet lake files. A file is built as an Avro container file (the Kafka records' datums,
//! copied), then converted through Arrow by arrow-avro's reader (the conversion the
//! embedded query engine applies to Avro files, so both formats give a query the same
//! columns) and written by the parquet crate. tickflow's metadata, and the Avro writer
//! schema under `avro.schema`, go into the file's key-value metadata. Readers that want Avro
//! records get them back through arrow-avro's writer.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::Schema as ArrowSchema;
use datafusion::arrow_avro::reader::ReaderBuilder;
use datafusion::arrow_avro::schema::SCHEMA_METADATA_KEY;
use datafusion::arrow_avro::writer::AvroWriter;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, GzipLevel, ZstdLevel};
use datafusion::parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use datafusion::parquet::file::properties::WriterProperties;

use super::LakeError;
use crate::config::lake::LakeCodec;

/// Rows per Arrow batch while converting.
const BATCH_ROWS: usize = 8192;

fn err(e: impl std::error::Error + Send + Sync + 'static) -> LakeError {
    LakeError::Parquet(Box::new(e))
}

/// The Parquet file of the records of the Avro container file `avro`, its pages compressed
/// with `codec`, carrying `metadata` and the Avro schema (`avro.schema`).
pub fn encode(
    avro: Vec<u8>,
    codec: LakeCodec,
    metadata: &[(&str, String)],
) -> Result<Vec<u8>, LakeError> {
    let reader = ReaderBuilder::new()
        .with_batch_size(BATCH_ROWS)
        .build(Cursor::new(avro))
        .map_err(err)?;
    let avro_schema = reader
        .avro_header()
        .get(SCHEMA_METADATA_KEY.as_bytes())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .ok_or_else(|| LakeError::Parquet("the container file has no schema".into()))?;
    let key_values = metadata
        .iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
        .chain([KeyValue::new(SCHEMA_METADATA_KEY.to_string(), avro_schema)])
        .collect();
    let props = WriterProperties::builder()
        .set_compression(compression(codec))
        .set_key_value_metadata(Some(key_values))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, reader.schema(), Some(props)).map_err(err)?;
    for batch in reader {
        writer.write(&batch.map_err(err)?).map_err(err)?;
    }
    writer.close().map_err(err)?;
    Ok(out)
}

fn compression(codec: LakeCodec) -> Compression {
    match codec {
        LakeCodec::Null => Compression::UNCOMPRESSED,
        LakeCodec::Deflate => Compression::GZIP(GzipLevel::default()),
        LakeCodec::Snappy => Compression::SNAPPY,
        LakeCodec::Zstandard => Compression::ZSTD(ZstdLevel::default()),
    }
}

/// The key-value metadata of a Parquet file (read from its footer only).
pub fn metadata(bytes: &Bytes) -> Result<HashMap<String, String>, LakeError> {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .map_err(err)?;
    let pairs = meta.file_metadata().key_value_metadata();
    Ok(pairs
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect())
}

/// The records of a Parquet file as an Avro container file of `avro_schema` (the schema the
/// file carries), for readers of Avro records.
pub fn to_avro(bytes: Bytes, avro_schema: &str) -> Result<Vec<u8>, LakeError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(err)?
        .with_batch_size(BATCH_ROWS);
    let arrow = builder.schema();
    let mut md = arrow.metadata().clone();
    md.insert(SCHEMA_METADATA_KEY.to_string(), avro_schema.to_string());
    let schema = ArrowSchema::new_with_metadata(arrow.fields().clone(), md);
    let mut writer = AvroWriter::new(Vec::new(), schema).map_err(err)?;
    for batch in builder.build().map_err(err)? {
        writer.write(&batch.map_err(err)?).map_err(err)?;
    }
    writer.finish().map_err(err)?;
    Ok(writer.into_inner())
}

/// The Arrow schema Parquet files of `avro_schema` have (what `encode` writes).
pub fn arrow_schema(avro_schema: &apache_avro::Schema) -> Result<Arc<ArrowSchema>, LakeError> {
    let mut writer = apache_avro::Writer::new(avro_schema, Vec::new()).map_err(LakeError::Avro)?;
    writer.flush().map_err(LakeError::Avro)?;
    let bytes = writer.into_inner().map_err(LakeError::Avro)?;
    let reader = ReaderBuilder::new()
        .build(Cursor::new(bytes))
        .map_err(err)?;
    Ok(reader.schema())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::file::AvroFile;
    use crate::lake::{OFFSETS_KEY, SCHEMA_ID_KEY, file_info, file_records};
    use apache_avro::types::Value;
    use apache_avro::{Codec, Schema};

    const SCHEMA: &str = r#"{"type":"record","name":"Tick","namespace":"io.tickflow","fields":[
     {"name":"symbol","type":"string"},{"name":"price","type":"double"},{"name":"size","type":"long"},
     {"name":"event_time","type":{"type":"long","logicalType":"timestamp-micros"}},
     {"name":"conditions","type":{"type":"array","items":"string"},"default":[]},
     {"name":"seq","type":["null","long"],"default":null}]}"#;

    fn tick(i: i64) -> Value {
        let seq = if i % 3 == 0 {
            Value::Union(0, Box::new(Value::Null))
        } else {
            Value::Union(1, Box::new(Value::Long(i * 10)))
        };
        Value::Record(vec![
            ("symbol".into(), Value::String(format!("S{}", i % 7))),
            ("price".into(), Value::Double(100.0 + i as f64 / 8.0)),
            ("size".into(), Value::Long(i % 500 + 1)),
            (
                "event_time".into(),
                Value::TimestampMicros(1_772_000_000_000_000 + i),
            ),
            (
                "conditions".into(),
                Value::Array((0..i % 3).map(|c| Value::String(format!("c{c}"))).collect()),
            ),
            ("seq".into(), seq),
        ])
    }

    fn parquet_of(values: &[Value], schema: &Schema, codec: LakeCodec) -> Vec<u8> {
        let mut file = AvroFile::new(Codec::Null, [3; 16]);
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap();
        for v in values {
            file.append(&writer.write_value_to_vec(v.clone()).unwrap())
                .unwrap();
        }
        let metadata = [
            (OFFSETS_KEY, format!("100-{}", 99 + values.len())),
            (SCHEMA_ID_KEY, "7".to_string()),
        ];
        let avro = file.finish(schema, &metadata).unwrap();
        encode(avro, codec, &metadata).unwrap()
    }

    #[test]
    fn parquet_files_keep_records_metadata_and_schema() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let values: Vec<Value> = (0..20_000).map(tick).collect();
        for codec in [
            LakeCodec::Null,
            LakeCodec::Deflate,
            LakeCodec::Snappy,
            LakeCodec::Zstandard,
        ] {
            let bytes = Bytes::from(parquet_of(&values, &schema, codec));
            assert_eq!(&bytes[..4], b"PAR1", "{codec:?}");
            let path = "ticks/dt=2026-02-25/hour=06/t+0+0000000100.parquet";
            let info = file_info(path, &bytes).unwrap();
            assert_eq!(info.schema_id, 7);
            assert_eq!(info.offsets.to_string(), "100-20099");
            assert_eq!(info.schema, schema);
            let (_, back) = file_records(path, &bytes).unwrap();
            assert!(back == values, "{codec:?}: records differ");
        }
    }

    #[test]
    fn the_same_records_make_the_same_parquet_bytes() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let values: Vec<Value> = (0..5_000).map(tick).collect();
        let a = parquet_of(&values, &schema, LakeCodec::Snappy);
        let b = parquet_of(&values, &schema, LakeCodec::Snappy);
        assert!(a == b, "a replay must rewrite identical files");
        let arrow = arrow_schema(&schema).unwrap();
        let names: Vec<&str> = arrow.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["symbol", "price", "size", "event_time", "conditions", "seq"]
        );
    }
}
