//! tickflow: a Kafka-Streams-style stateful stream processor. Stock ticks flow through Kafka;
//! tickflow turns them into event-time OHLC/VWAP bars with crash-proof state, and lands ticks
//! and bars in an S3 lake registered in the Glue Data Catalog.
//!
//! Modules follow the data: `config` → `kafka`/`codec` → `operators`/`state` → `topology` →
//! `sink`; and `lake` → `catalog` → `query`; with `sim` producing test data, `metrics` holding
//! every metric, and `cli` the only module that prints. `docs/architecture.md` says what each
//! owns and may import; a test below keeps the imports to that table.

#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod catalog;
pub mod cli;
pub mod codec;
pub mod config;
pub mod error;
pub mod kafka;
pub mod lake;
pub mod metrics;
pub mod operators;
pub mod query;
pub mod sim;
pub mod sink;
pub mod source;
pub mod state;
pub mod topology;

#[cfg(test)]
mod architecture {
    //! Keeps `docs/architecture.md` true: each module imports only the modules below it.

    use std::collections::BTreeSet;
    use std::path::Path;

    /// Each module and the modules it may import (`crate::<name>`), lowest first.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("error", &[]),
        ("config", &[]),
        ("metrics", &[]),
        ("codec", &["config"]),
        ("kafka", &["codec", "config"]),
        ("operators", &["codec", "config"]),
        ("lake", &["codec", "config"]),
        ("state", &["codec", "config", "kafka", "operators"]),
        ("catalog", &["codec", "config", "lake"]),
        ("source", &["codec", "config", "kafka"]),
        ("sim", &["codec", "config", "kafka"]),
        (
            "topology",
            &["codec", "config", "kafka", "metrics", "operators", "state"],
        ),
        (
            "sink",
            &["catalog", "codec", "config", "kafka", "lake", "metrics"],
        ),
        (
            "query",
            &[
                "catalog",
                "codec",
                "config",
                "lake",
                "metrics",
                "operators",
                "topology",
            ],
        ),
    ];

    /// The modules a source file or directory imports, comments left out; the Kafka edge's
    /// `oauth_client_context!` macro counts as `kafka`.
    fn imports(path: &Path, found: &mut BTreeSet<String>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                imports(&entry.unwrap().path(), found);
            }
            return;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            return;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
        for line in code {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let name = if name == "oauth_client_context" {
                    "kafka".to_string()
                } else {
                    name
                };
                found.insert(name);
            }
        }
    }

    #[test]
    fn module_imports_are_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        for (module, allowed) in ALLOWED {
            let dir = src.join(module);
            let path = if dir.is_dir() {
                dir
            } else {
                src.join(format!("{module}.rs"))
            };
            let mut found = BTreeSet::new();
            imports(&path, &mut found);
            for name in found {
                // Every module may say what class its errors are.
                let free = name == *module || name == "error";
                if !free && !allowed.contains(&name.as_str()) {
                    wrong.push(format!("{module} imports {name}"));
                }
            }
        }
        assert!(wrong.is_empty(), "not in docs/architecture.md: {wrong:?}");
    }

    /// Each module is named in the table (a new module has to take its place in it).
    #[test]
    fn every_module_has_a_place() {
        let listed: BTreeSet<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
        let top = ["broker", "cli", "lib", "main"];
        for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            assert!(
                listed.contains(name.as_str()) || top.contains(&name.as_str()),
                "{name} is not in the module table"
            );
        }
    }
}
