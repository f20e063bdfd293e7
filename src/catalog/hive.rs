//! Table columns from an Avro schema, in the Hive type names that Glue and Athena use.

use apache_avro::Schema;
use apache_avro::schema::{RecordSchema, UnionSchema};

use super::{CatalogError, Column};

/// The columns of a table of `schema` records (a record schema), in field order.
pub fn columns(schema: &Schema) -> Result<Vec<Column>, CatalogError> {
    let Schema::Record(RecordSchema { fields, .. }) = schema else {
        return Err(CatalogError::Schema("a table needs a record schema".into()));
    };
    fields
        .iter()
        .map(|f| {
            Ok(Column {
                name: f.name.to_lowercase(),
                r#type: hive_type(&f.schema)?,
                comment: f.doc.clone(),
            })
        })
        .collect()
}

/// The Hive type of an Avro schema. Timestamps are `timestamp`; a union with null is its
/// other branch (columns are nullable).
pub fn hive_type(schema: &Schema) -> Result<String, CatalogError> {
    Ok(match schema {
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "bigint".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes | Schema::Fixed(_) => "binary".into(),
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => "string".into(),
        Schema::Date => "date".into(),
        Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos => {
            "timestamp".into()
        }
        Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "timestamp".into(),
        Schema::TimeMillis => "int".into(),
        Schema::TimeMicros => "bigint".into(),
        Schema::Decimal(d) => format!("decimal({},{})", d.precision, d.scale),
        Schema::Array(a) => format!("array<{}>", hive_type(&a.items)?),
        Schema::Map(m) => format!("map<string,{}>", hive_type(&m.types)?),
        Schema::Union(u) => hive_type(non_null(u)?)?,
        Schema::Record(r) => {
            let fields: Result<Vec<String>, CatalogError> = r
                .fields
                .iter()
                .map(|f| {
                    Ok(format!(
                        "{}:{}",
                        f.name.to_lowercase(),
                        hive_type(&f.schema)?
                    ))
                })
                .collect();
            format!("struct<{}>", fields?.join(","))
        }
        other => {
            return Err(CatalogError::Schema(format!(
                "no table column type for Avro {other:?}"
            )));
        }
    })
}

fn non_null(u: &UnionSchema) -> Result<&Schema, CatalogError> {
    let branches: Vec<&Schema> = u
        .variants()
        .iter()
        .filter(|s| **s != Schema::Null)
        .collect();
    match branches.as_slice() {
        [one] => Ok(one),
        _ => Err(CatalogError::Schema(
            "only unions of null and one type can be table columns".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RecordKind;

    #[test]
    fn tick_and_bar_columns() {
        let tick = RecordKind::Tick.schema().clone();
        let cols: Vec<(String, String)> = columns(&tick)
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.r#type))
            .collect();
        let want = [
            ("symbol", "string"),
            ("venue", "string"),
            ("price", "double"),
            ("size", "bigint"),
            ("event_time", "timestamp"),
            ("trade_id", "bigint"),
            ("side", "string"),
            ("conditions", "array<string>"),
            ("currency", "string"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(cols, want);
        let bar = RecordKind::Bar.schema().clone();
        let last: Vec<(String, String)> = columns(&bar)
            .unwrap()
            .into_iter()
            .rev()
            .take(2)
            .map(|c| (c.name, c.r#type))
            .collect();
        assert_eq!(
            last,
            [
                ("is_final".to_string(), "boolean".to_string()),
                ("extras".to_string(), "map<string,double>".to_string())
            ]
        );
        let opt = Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"x","type":["null","string"],"default":null}]}"#).unwrap();
        assert_eq!(columns(&opt).unwrap()[0].r#type, "string");
    }

    /// The Avro lake files' schemas (timestamps in milliseconds) still give `timestamp`
    /// columns, which Athena reads.
    #[test]
    fn lake_schemas_keep_timestamp_columns() {
        for kind in [RecordKind::Tick, RecordKind::Bar] {
            let m = crate::lake::millis::Millis::of(kind.schema())
                .unwrap()
                .expect("timestamps");
            let cols = columns(&m.lake_schema).unwrap();
            assert!(cols.iter().any(|c| c.r#type == "timestamp"), "{kind:?}");
        }
    }
}
