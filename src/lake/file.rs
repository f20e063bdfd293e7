//! One lake file being built: an Avro object container file whose records are the Avro
//! datums of Kafka records, copied as they are (the Confluent wire format's payload is the
//! binary datum; only timestamps are rewritten, see [`super::millis`]), so landing a record
//! costs no re-encoding.

use std::collections::HashMap;

use apache_avro::types::Value;
use apache_avro::{Codec, Schema, Writer};

use super::LakeError;
use super::millis::write_long;

/// Uncompressed bytes per Avro block.
const BLOCK_BYTES: usize = 256 << 10;

/// An Avro object container file under construction, held in memory.
pub struct AvroFile {
    codec: Codec,
    marker: [u8; 16],
    /// Finished blocks: count, size, compressed data, sync marker.
    blocks: Vec<u8>,
    /// Datums of the block being filled.
    block: Vec<u8>,
    block_records: i64,
    /// Records in the file.
    pub records: u64,
    /// Uncompressed datum bytes in the file.
    pub raw_bytes: u64,
    /// When the file was started (its first record was consumed).
    pub started: std::time::Instant,
}

impl AvroFile {
    /// An empty file; `marker` is the sync marker (derive it from the file's identity so
    /// that the same records always make the same bytes).
    pub fn new(codec: Codec, marker: [u8; 16]) -> Self {
        Self {
            codec,
            marker,
            blocks: Vec::new(),
            block: Vec::with_capacity(BLOCK_BYTES),
            block_records: 0,
            records: 0,
            raw_bytes: 0,
            started: std::time::Instant::now(),
        }
    }

    /// Bytes the file holds in memory: its finished (compressed) blocks and the block being
    /// filled.
    pub fn buffered_bytes(&self) -> usize {
        self.blocks.len() + self.block.len()
    }

    /// Appends one binary-encoded datum of the file's schema.
    pub fn append(&mut self, datum: &[u8]) -> Result<(), LakeError> {
        self.block.extend_from_slice(datum);
        self.block_records += 1;
        self.records += 1;
        self.raw_bytes += datum.len() as u64;
        if self.block.len() >= BLOCK_BYTES {
            self.seal_block()?;
        }
        Ok(())
    }

    fn seal_block(&mut self) -> Result<(), LakeError> {
        if self.block_records == 0 {
            return Ok(());
        }
        let mut data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES));
        self.codec.compress(&mut data).map_err(LakeError::Avro)?;
        write_long(self.block_records, &mut self.blocks);
        write_long(data.len() as i64, &mut self.blocks);
        self.blocks.extend_from_slice(&data);
        self.blocks.extend_from_slice(&self.marker);
        self.block_records = 0;
        Ok(())
    }

    /// The complete file: a header (schema, codec, `metadata`) and the blocks.
    pub fn finish(
        mut self,
        schema: &Schema,
        metadata: &[(&str, String)],
    ) -> Result<Vec<u8>, LakeError> {
        self.seal_block()?;
        let user_metadata: HashMap<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), Value::Bytes(v.as_bytes().to_vec())))
            .collect();
        let header = Writer::builder()
            .schema(schema)
            .writer(Vec::new())
            .codec(self.codec)
            .marker(self.marker)
            .user_metadata(user_metadata)
            .build()
            .and_then(Writer::into_inner)
            .map_err(LakeError::Avro)?;
        let mut out = header;
        out.extend_from_slice(&self.blocks);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Reader;

    #[test]
    fn copied_datums_read_back_with_any_codec() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"T","fields":[{"name":"s","type":"string"},{"name":"n","type":"long"}]}"#,
        )
        .unwrap();
        let datums: Vec<(String, i64)> = (0..20_000)
            .map(|i| (format!("s{i}"), i * 7 - 500))
            .collect();
        for codec in [
            Codec::Null,
            Codec::Deflate(Default::default()),
            Codec::Snappy,
            Codec::Zstandard(Default::default()),
        ] {
            let mut f = AvroFile::new(codec, [7; 16]);
            for (s, n) in &datums {
                let v = Value::Record(vec![
                    ("s".into(), Value::String(s.clone())),
                    ("n".into(), Value::Long(*n)),
                ]);
                let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
                    .build()
                    .unwrap()
                    .write_value_to_vec(v)
                    .unwrap();
                f.append(&bytes).unwrap();
            }
            assert_eq!(f.records, 20_000);
            let bytes = f
                .finish(&schema, &[("tickflow.offsets", "0-19999".into())])
                .unwrap();
            let reader = Reader::new(&bytes[..]).unwrap();
            assert_eq!(reader.user_metadata()["tickflow.offsets"], b"0-19999");
            let back: Vec<(String, i64)> = reader
                .map(|v| match v.unwrap() {
                    Value::Record(f) => match (&f[0].1, &f[1].1) {
                        (Value::String(s), Value::Long(n)) => (s.clone(), *n),
                        other => panic!("{other:?}"),
                    },
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(back, datums, "{codec:?}");
        }
    }
}
