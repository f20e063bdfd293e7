//! Saved queries: SQL files (in `queries/`) that run unchanged on Athena and on the embedded
//! engine. A query may hold `{{name}}` placeholders; `tickflow query --param name=value`
//! fills them, and `{{day}}` defaults to the newest `dt` partition in the catalog (or, for
//! tables with partition projection, which registers none, in the lake).

use std::collections::BTreeMap;
use std::path::Path;

use super::QueryError;
use crate::catalog::Catalog;
use crate::lake::store::LakeStore;

/// The placeholder names in `sql`, in order of first use.
pub fn placeholders(sql: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim().to_string();
        if !out.contains(&name) {
            out.push(name);
        }
        rest = &after[end + 2..];
    }
    out
}

/// `sql` with every placeholder replaced by its value from `params`. A value may not hold a
/// quote, so it cannot end the string literal it is written into.
pub fn bind(
    origin: &str,
    sql: &str,
    params: &BTreeMap<String, String>,
) -> Result<String, QueryError> {
    let mut out = sql.to_string();
    for name in placeholders(sql) {
        let value = params.get(&name).ok_or_else(|| QueryError::SavedQuery {
            path: origin.into(),
            message: format!("needs a value for {{{{{name}}}}}: pass --param {name}=VALUE"),
            source: None,
        })?;
        if value.contains(['\'', '"', ';']) {
            return Err(QueryError::SavedQuery {
                path: origin.into(),
                message: format!("the value of {name} may not hold quotes or semicolons"),
                source: None,
            });
        }
        for spelling in spellings(&out, &name) {
            out = out.replace(&spelling, value);
        }
    }
    Ok(out)
}

/// The spellings of placeholder `name` that occur in `sql` (`{{day}}`, `{{ day }}`).
fn spellings(sql: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        if after[..end].trim() == name {
            let text = format!("{{{{{}}}}}", &after[..end]);
            if !out.contains(&text) {
                out.push(text);
            }
        }
        rest = &after[end + 2..];
    }
    out
}

/// Reads a saved query file.
pub fn load(path: &Path) -> Result<String, QueryError> {
    std::fs::read_to_string(path).map_err(|e| QueryError::SavedQuery {
        path: path.display().to_string(),
        message: e.to_string(),
        source: Some(e),
    })
}

/// The tables of `tables` that `sql` names (as whole identifiers), or all of them when it
/// names none: a query's default day is the newest of what it reads, not of a dead-letter
/// table partitioned by wall-clock time.
pub fn tables_read(sql: &str, tables: &[String]) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let names = |t: &String| {
        sql.match_indices(t.as_str()).any(|(at, _)| {
            let before = sql[..at].chars().next_back();
            let after = sql[at + t.len()..].chars().next();
            !before.is_some_and(ident) && !after.is_some_and(ident)
        })
    };
    let read: Vec<String> = tables.iter().filter(|t| names(t)).cloned().collect();
    if read.is_empty() {
        tables.to_vec()
    } else {
        read
    }
}

/// The newest `dt` partition value among `tables` of `database`: of the registered
/// partitions, or else of the `dt=` directories in the lake.
pub async fn newest_day(
    catalog: &Catalog,
    store: &LakeStore,
    database: &str,
    tables: &[String],
) -> Result<Option<String>, QueryError> {
    let mut newest: Option<String> = None;
    for table in tables {
        for values in catalog.partition_values(database, table).await? {
            if let Some(dt) = values.into_iter().next() {
                newest = newest.max(Some(dt));
            }
        }
    }
    if newest.is_some() {
        return Ok(newest);
    }
    for table in tables {
        let dirs = store.list_dirs(table).await?;
        let days = dirs
            .into_iter()
            .filter_map(|d| d.strip_prefix("dt=").map(str::to_string));
        newest = newest.max(days.max());
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_once_and_filled() {
        let sql =
            "SELECT 1 FROM t WHERE dt = '{{day}}' AND hour >= '{{ from_hour }}' OR dt = '{{day}}'";
        assert_eq!(placeholders(sql), vec!["day", "from_hour"]);
        let params = BTreeMap::from([
            ("day".to_string(), "2025-03-03".to_string()),
            ("from_hour".to_string(), "14".to_string()),
        ]);
        assert_eq!(
            bind("q.sql", sql, &params).unwrap(),
            "SELECT 1 FROM t WHERE dt = '2025-03-03' AND hour >= '14' OR dt = '2025-03-03'"
        );
    }

    #[test]
    fn the_default_day_comes_from_the_tables_a_query_names() {
        let tables: Vec<String> = ["ticks", "bars_1m", "bars_1m_late", "late_ticks"]
            .map(String::from)
            .to_vec();
        let sql = "SELECT * FROM bars_1m WHERE dt = '{{day}}'";
        assert_eq!(tables_read(sql, &tables), vec!["bars_1m".to_string()]);
        let join = "SELECT * FROM ticks t JOIN bars_1m_late b ON t.symbol = b.symbol";
        assert_eq!(tables_read(join, &tables), vec!["ticks", "bars_1m_late"]);
        assert_eq!(tables_read("SELECT 1", &tables), tables);
    }

    #[test]
    fn a_missing_or_quoting_value_is_refused() {
        let sql = "SELECT '{{day}}'";
        let missing = bind("q.sql", sql, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("q.sql") && missing.contains("--param day="),
            "{missing}"
        );
        let params = BTreeMap::from([("day".to_string(), "x' OR '1'='1".to_string())]);
        assert!(bind("q.sql", sql, &params).is_err());
    }
}
