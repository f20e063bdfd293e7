//! What several benchmarks share.

use std::sync::Arc;

use tickflow::codec::registry::SchemaRegistry;
use tickflow::sim::SymbolSpec;

/// Market start of the benchmarks' simulations: Thursday 2026-11-26 09:30 New York.
pub const START: i64 = 1_795_703_400_000_000;

/// 1,000 synthetic symbols with activity falling off like a real universe's.
pub fn universe() -> Vec<SymbolSpec> {
    (0..1000)
        .map(|i| SymbolSpec {
            symbol: format!("S{i:04}"),
            sector: "X".into(),
            price: 20.0 + (i % 400) as f64,
            volatility: 0.3,
            drift: 0.05,
            tick_size: 0.01,
            lot_size: 100,
            activity: 1.0 / (1.0 + i as f64).powf(0.5),
        })
        .collect()
}

/// Serves the built-in schema registry from a temporary directory on an ephemeral port of
/// `runtime`; returns the directory (keep it) and the registry's URL.
#[allow(dead_code)] // Not every benchmark needs a registry.
pub fn start_registry(runtime: &tokio::runtime::Runtime) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SchemaRegistry::open(dir.path()).unwrap());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(registry.serve(listener));
    (dir, url)
}
