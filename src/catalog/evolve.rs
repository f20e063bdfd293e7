//! Schema evolution that keeps a table's column positions.
//!
//! Athena matches the columns of an Avro partition to the table's by position, and each
//! registered partition keeps the columns it was registered with. A field inserted in the
//! middle of a record would shift every later column of the new schema against the old
//! partitions' (HIVE_PARTITION_SCHEMA_MISMATCH, or worse, a column read as its neighbour). So
//! a table keeps the order it has: a field it had stays where it was, a new field goes at the
//! end, and a field the new schema dropped stays, nullable with a null default. Avro resolves
//! the fields of every file against this reader schema by name, so files of every version
//! read right.

use serde_json::{Map, Value};

use super::{CatalogError, TableDef, hive};

impl TableDef {
    /// This definition with its columns in `existing`'s order (the table as the catalog has
    /// it): fields `existing` has keep their positions, fields it lacks follow in this
    /// schema's order, and fields only `existing` has stay, nullable with a null default.
    /// Unchanged when either schema is not a JSON record (a table tickflow did not make).
    pub fn keeping_order_of(&self, existing: &TableDef) -> Result<TableDef, CatalogError> {
        let (Some(mut new), Some(old)) = (record(&self.avro_schema), record(&existing.avro_schema))
        else {
            return Ok(self.clone());
        };
        let fields = ordered_fields(fields_of(&new), fields_of(&old));
        if fields == fields_of(&new) {
            // Already in the table's order: the definition stays as given, byte for byte.
            return Ok(self.clone());
        }
        new.insert("fields".into(), Value::Array(fields));
        let avro_schema = Value::Object(new).to_string();
        let schema = apache_avro::Schema::parse_str(&avro_schema).map_err(|e| {
            CatalogError::Schema(format!(
                "table {}: schema {} in the table's column order: {e}",
                self.name, self.schema_id
            ))
        })?;
        Ok(TableDef {
            avro_schema,
            columns: hive::columns(&schema)?,
            ..self.clone()
        })
    }
}

impl TableDef {
    /// What a catalog holding `existing` does with this definition: the definition in the
    /// table's column order, and whether to write it. A newer schema is written, and so is
    /// the same schema with another location, partition projection or file format; an older
    /// schema never replaces a newer one (Avro resolution reads its records through the
    /// newer table). Glue and the local catalog both decide by this.
    pub fn replacing(&self, existing: &TableDef) -> Result<(TableDef, bool), CatalogError> {
        let table = self.keeping_order_of(existing)?;
        let moved = existing.location != table.location
            || existing.projection != table.projection
            || existing.format != table.format;
        let write = table.schema_id > existing.schema_id
            || (table.schema_id == existing.schema_id && moved);
        Ok((table, write))
    }
}

/// A record schema's JSON object, if `schema` is one.
fn record(schema: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(schema).ok()? {
        Value::Object(o) if o.get("type") == Some(&Value::from("record")) => Some(o),
        _ => None,
    }
}

fn fields_of(record: &Map<String, Value>) -> Vec<Value> {
    record
        .get("fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn name_of(field: &Value) -> &str {
    field
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `new`'s fields in `old`'s order, new fields after them, dropped fields kept as nullable.
fn ordered_fields(new: Vec<Value>, old: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = old
        .iter()
        .map(|f| {
            new.iter()
                .find(|n| name_of(n) == name_of(f))
                .cloned()
                .unwrap_or_else(|| nullable(f.clone()))
        })
        .collect();
    out.extend(
        new.into_iter()
            .filter(|n| !old.iter().any(|f| name_of(f) == name_of(n))),
    );
    out
}

/// `field` as a union with null first and a null default, so that files without it read as
/// null. Its Hive type (the union's other branch) does not change.
fn nullable(mut field: Value) -> Value {
    let branches = match field.get("type") {
        Some(Value::Array(branches)) => branches.clone(),
        Some(other) => vec![other.clone()],
        None => return field,
    };
    let mut union = vec![Value::from("null")];
    union.extend(branches.into_iter().filter(|b| b != "null"));
    field["type"] = Value::Array(union);
    field["default"] = Value::Null;
    field
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lake::LakeSpec;

    const V1: &str = r#"{"type":"record","name":"Bar","namespace":"t","fields":[
        {"name":"symbol","type":"string"},
        {"name":"open","type":"double"},
        {"name":"close","type":"double"}]}"#;
    /// Inserts `venue` mid-record and drops `open`.
    const V2: &str = r#"{"type":"record","name":"Bar","namespace":"t","fields":[
        {"name":"symbol","type":"string"},
        {"name":"venue","type":["null","string"],"default":null},
        {"name":"close","type":"double"}]}"#;

    fn def(id: u32, json: &str) -> TableDef {
        let spec: LakeSpec =
            serde_saphyr::from_str("url: file:///tmp/lake\ntopics: [{topic: bars}]").unwrap();
        let schema = apache_avro::Schema::parse_str(json).unwrap();
        TableDef::of(
            &spec,
            &spec.topics[0],
            "file:///tmp/lake/bars".into(),
            (id, &schema),
        )
        .unwrap()
    }

    fn names(def: &TableDef) -> Vec<(String, String)> {
        def.columns
            .iter()
            .map(|c| (c.name.clone(), c.r#type.clone()))
            .collect()
    }

    #[test]
    fn only_a_newer_schema_or_new_settings_replace_a_table() {
        let (v1, v2) = (def(1, V1), def(2, V2));
        assert!(v2.replacing(&v1).unwrap().1, "a newer schema");
        assert!(!v1.replacing(&v1).unwrap().1, "the same definition");
        let mut elsewhere = v1.clone();
        elsewhere.location = "file:///tmp/other/bars".into();
        assert!(
            elsewhere.replacing(&v1).unwrap().1,
            "the same schema, moved"
        );
        let (older, write) = elsewhere.replacing(&v2).unwrap();
        assert!(!write, "an older schema replaced a newer one");
        assert_eq!(older.schema_id, 1);
    }

    #[test]
    fn old_columns_keep_their_positions_and_new_ones_go_last() {
        let table = def(2, V2).keeping_order_of(&def(1, V1)).unwrap();
        let want = [
            ("symbol", "string"),
            ("open", "double"),
            ("close", "double"),
            ("venue", "string"),
        ]
        .map(|(n, t)| (n.to_string(), t.to_string()));
        assert_eq!(names(&table), want);
        // The old partitions' columns are a prefix of the table's, at the same positions.
        assert_eq!(names(&def(1, V1))[..], names(&table)[..3]);
        assert_eq!(table.schema_id, 2);
    }

    #[test]
    fn the_reordered_schema_reads_files_of_both_versions() {
        let table = def(2, V2).keeping_order_of(&def(1, V1)).unwrap();
        let reader = apache_avro::Schema::parse_str(&table.avro_schema).unwrap();
        for (writer, record) in [
            (
                V1,
                vec![
                    ("symbol", apache_avro::types::Value::String("AAPL".into())),
                    ("open", apache_avro::types::Value::Double(1.0)),
                    ("close", apache_avro::types::Value::Double(2.0)),
                ],
            ),
            (
                V2,
                vec![
                    ("symbol", apache_avro::types::Value::String("MSFT".into())),
                    (
                        "venue",
                        apache_avro::types::Value::Union(
                            1,
                            Box::new(apache_avro::types::Value::String("XNYS".into())),
                        ),
                    ),
                    ("close", apache_avro::types::Value::Double(3.0)),
                ],
            ),
        ] {
            let writer = apache_avro::Schema::parse_str(writer).unwrap();
            let mut w = apache_avro::Writer::new(&writer, Vec::new()).unwrap();
            let mut r = apache_avro::types::Record::new(&writer).unwrap();
            for (k, v) in record {
                r.put(k, v);
            }
            w.append_value(r).unwrap();
            let bytes = w.into_inner().unwrap();
            let read: Vec<_> = apache_avro::Reader::builder(&bytes[..])
                .reader_schema(&reader)
                .build()
                .unwrap()
                .map(|v| v.unwrap())
                .collect();
            let apache_avro::types::Value::Record(fields) = &read[0] else {
                panic!("{read:?}")
            };
            let order: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(order, ["symbol", "open", "close", "venue"]);
        }
    }

    #[test]
    fn an_unchanged_or_foreign_table_is_left_alone() {
        let v1 = def(1, V1);
        assert_eq!(v1.keeping_order_of(&v1).unwrap(), v1);
        let mut foreign = def(1, V1);
        foreign.avro_schema = String::new();
        assert_eq!(def(2, V2).keeping_order_of(&foreign).unwrap(), def(2, V2));
    }

    #[test]
    fn a_dropped_field_becomes_nullable_with_a_null_default() {
        let field = nullable(serde_json::json!({"name": "open", "type": "double"}));
        assert_eq!(
            field,
            serde_json::json!({"name": "open", "type": ["null", "double"], "default": null})
        );
        let field = nullable(serde_json::json!(
            {"name": "v", "type": ["string", "null"], "default": "x"}
        ));
        assert_eq!(
            field,
            serde_json::json!({"name": "v", "type": ["null", "string"], "default": null})
        );
    }
}
