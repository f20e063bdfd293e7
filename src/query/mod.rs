//! SQL over the lake: the embedded engine (DataFusion over the tables a catalog defines), saved
//! queries, and `reconcile`, which recomputes the bars from the raw ticks and compares.
//! Results of every engine come back as a [`ResultSet`] of display strings with SQL type
//! names, so the CLI prints them the same way whichever engine answered.

pub mod athena;
pub mod chart;
pub mod local;
pub mod reconcile;
pub mod saved;

use std::fmt::Write as _;

use crate::catalog::CatalogError;
use crate::config::lake::LakeSpec;
use crate::lake::LakeError;
use crate::topology::plan::Plan;

pub use local::LocalEngine;

/// Errors of the query stage.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL engine rejected or failed the query (the engine's message).
    #[error("{0}")]
    Sql(#[from] datafusion::error::DataFusionError),
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A saved query file is missing, unreadable or needs a parameter nobody gave.
    #[error("{path}: {message}")]
    SavedQuery {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
        /// The file system's error, when reading failed.
        source: Option<std::io::Error>,
    },
    /// A lake file (or a table's schema) is not what the sink writes.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
        /// The reader's error, when a library found it.
        source: Option<crate::error::BoxError>,
    },
    /// Athena refused, failed or cancelled the query (Athena's reason).
    #[error("athena: {0}")]
    Athena(String),
    /// An Athena call failed.
    #[error("athena: {what}: {}", crate::catalog::glue::in_full(.source))]
    AthenaCall {
        /// The call.
        what: &'static str,
        /// The SDK's error.
        source: crate::error::BoxError,
    },
    /// The query ran longer than allowed and was cancelled.
    #[error("the query did not finish within {0:?}; it was cancelled")]
    Timeout(std::time::Duration),
    /// A chart could not be drawn.
    #[error("chart {path}: {message}")]
    Chart {
        /// The image file.
        path: String,
        /// What went wrong.
        message: String,
        /// The drawing library's error, when it failed.
        source: Option<crate::error::BoxError>,
    },
    /// The topology cannot be reconciled.
    #[error("{0}")]
    Unsupported(String),
}

impl QueryError {
    /// A file (or a table's schema) a library could not read.
    fn unreadable_file(path: String, e: impl Into<crate::error::BoxError>) -> Self {
        let e = e.into();
        Self::File {
            path,
            message: e.to_string(),
            source: Some(e),
        }
    }
}

impl crate::error::Classified for QueryError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            QueryError::Sql(_) | QueryError::SavedQuery { .. } | QueryError::Unsupported(_) => {
                crate::error::ErrorClass::User
            }
            QueryError::Lake(e) => e.class(),
            QueryError::Catalog(e) => e.class(),
            QueryError::Chart { .. } => crate::error::ErrorClass::Internal,
            _ => crate::error::ErrorClass::External,
        }
    }
}

/// The table the bars of `resolution` land in.
pub fn bar_table(plan: &Plan, lake: &LakeSpec, resolution: &str) -> Result<String, QueryError> {
    let names: Vec<&str> = plan.defs.iter().map(|d| d.name.as_str()).collect();
    let i = names.iter().position(|n| *n == resolution).ok_or_else(|| {
        QueryError::Unsupported(format!(
            "no resolution {resolution}; the topology has {}",
            names.join(", ")
        ))
    })?;
    plan.bar_topics[i]
        .iter()
        .find_map(|t| lake.table_for(t))
        .ok_or_else(|| {
            QueryError::Unsupported(format!("no bar topic of resolution {resolution} is landed"))
        })
}

/// The answer of a query: column names, their SQL types (`varchar`, `bigint`, `double`,
/// `timestamp`, ...) and rows of display strings (`None` is SQL NULL).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    /// Column names.
    pub columns: Vec<String>,
    /// SQL type of each column.
    pub types: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<Option<String>>>,
}

/// How a result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns with a header.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per row, one per line; numbers stay numbers.
    Json,
}

impl ResultSet {
    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The result printed in `format`.
    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Table => self.table(),
            OutputFormat::Csv => self.csv(),
            OutputFormat::Json => self.json(),
        }
    }

    fn numeric(&self, col: usize) -> bool {
        let t = self.types[col].as_str();
        matches!(
            t,
            "tinyint" | "smallint" | "integer" | "int" | "bigint" | "real" | "float" | "double"
        ) || t.starts_with("decimal")
    }

    fn table(&self) -> String {
        let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.rows {
            for (w, v) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell(v).chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if self.numeric(i) {
                        format!("{c:>w$}", w = widths[i])
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", padded.join("  ").trim_end());
        };
        line(&mut out, self.columns.clone());
        line(&mut out, widths.iter().map(|w| "-".repeat(*w)).collect());
        for row in &self.rows {
            line(&mut out, row.iter().map(cell).collect());
        }
        let _ = writeln!(
            out,
            "({} row{})",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" }
        );
        out
    }

    fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(&self.columns);
        for row in &self.rows {
            let _ = w.write_record(row.iter().map(|v| v.as_deref().unwrap_or("")));
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    fn json(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            let fields: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let value = match v {
                        None => serde_json::Value::Null,
                        Some(s) if self.numeric(i) => s
                            .parse::<serde_json::Number>()
                            .map(serde_json::Value::Number)
                            .unwrap_or_else(|_| serde_json::Value::String(s.clone())),
                        Some(s) => serde_json::Value::String(s.clone()),
                    };
                    format!(
                        "{}:{value}",
                        serde_json::Value::String(self.columns[i].clone())
                    )
                })
                .collect();
            let _ = writeln!(out, "{{{}}}", fields.join(","));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResultSet {
        ResultSet {
            columns: vec!["symbol".into(), "close".into(), "note".into()],
            types: vec!["varchar".into(), "double".into(), "varchar".into()],
            rows: vec![
                vec![Some("AAPL".into()), Some("191.5".into()), None],
                vec![
                    Some("MSFT".into()),
                    Some("10".into()),
                    Some("a, \"b\"".into()),
                ],
            ],
        }
    }

    #[test]
    fn table_aligns_numbers_right_and_text_left() {
        let text = sample().render(OutputFormat::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "symbol  close  note");
        assert_eq!(lines[1], "------  -----  ------");
        assert_eq!(lines[2], "AAPL    191.5  NULL");
        assert_eq!(lines[3], "MSFT       10  a, \"b\"");
        assert_eq!(lines[4], "(2 rows)");
    }

    #[test]
    fn csv_quotes_and_leaves_nulls_empty() {
        let text = sample().render(OutputFormat::Csv);
        assert_eq!(
            text,
            "symbol,close,note\nAAPL,191.5,\nMSFT,10,\"a, \"\"b\"\"\"\n"
        );
    }

    #[test]
    fn json_keeps_numbers_numeric_and_columns_in_order() {
        let text = sample().render(OutputFormat::Json);
        assert!(
            text.starts_with("{\"symbol\":\"AAPL\",\"close\":191.5,"),
            "{text}"
        );
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["close"], serde_json::json!(191.5));
        assert_eq!(first["note"], serde_json::Value::Null);
        assert_eq!(first["symbol"], "AAPL");
    }
}
