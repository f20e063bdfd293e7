//! The symbol universe the simulator trades, read from a CSV file (`config/symbols.csv`).

use std::path::Path;

use serde::Deserialize;

use super::{SimError, positive};

/// One tradable symbol and the parameters of its price process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SymbolSpec {
    /// Ticker.
    pub symbol: String,
    /// Sector, for grouping examples.
    pub sector: String,
    /// Starting price.
    pub price: f64,
    /// Annualised volatility of the geometric Brownian motion.
    pub volatility: f64,
    /// Annualised drift of the geometric Brownian motion.
    pub drift: f64,
    /// Minimum price increment.
    pub tick_size: f64,
    /// Round-lot size in shares.
    pub lot_size: i64,
    /// Relative share of trade arrivals.
    pub activity: f64,
}

/// The shipped universe (`config/symbols.csv`), compiled in so that the binary works anywhere.
pub const BUILTIN_UNIVERSE: &str = include_str!("../../config/symbols.csv");

/// The first `take` symbols (0 = all) of `file`, or of the built-in universe when `file` is
/// `None`.
pub fn universe(file: Option<&Path>, take: usize) -> Result<Vec<SymbolSpec>, SimError> {
    match file {
        Some(path) => load_universe(path, take),
        None => parse_universe("<built-in config/symbols.csv>", BUILTIN_UNIVERSE, take),
    }
}

/// Reads the universe; lines starting with `#` are comments. `take` keeps the first N symbols
/// (0 keeps all).
pub fn load_universe(path: &Path, take: usize) -> Result<Vec<SymbolSpec>, SimError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
        file: file.clone(),
        source,
    })?;
    parse_universe(&file, &text, take)
}

/// Parses universe CSV text (`file` names it in errors).
pub fn parse_universe(file: &str, text: &str, take: usize) -> Result<Vec<SymbolSpec>, SimError> {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for row in reader.deserialize::<SymbolSpec>() {
        let spec = row.map_err(|e| SimError::csv(file, &e))?;
        validate_spec(file, &spec)?;
        out.push(spec);
        if take > 0 && out.len() == take {
            break;
        }
    }
    if out.is_empty() {
        return Err(SimError::EmptyUniverse { file: file.into() });
    }
    if take > out.len() {
        return Err(SimError::NotEnoughSymbols {
            file: file.into(),
            wanted: take,
            available: out.len(),
        });
    }
    Ok(out)
}

fn validate_spec(file: &str, s: &SymbolSpec) -> Result<(), SimError> {
    let bad = |what: &str| SimError::BadSymbol {
        file: file.into(),
        symbol: s.symbol.clone(),
        reason: what.into(),
    };
    if !positive(s.price) {
        return Err(bad("price must be positive"));
    }
    if !(s.volatility >= 0.0 && s.volatility < 10.0) {
        return Err(bad("volatility must be in [0, 10)"));
    }
    if !positive(s.tick_size) || s.lot_size <= 0 || !positive(s.activity) {
        return Err(bad("tick_size, lot_size and activity must be positive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_universe_is_realistic() {
        let all = load_universe(Path::new("config/symbols.csv"), 0).unwrap();
        assert!(all.len() >= 300, "{} symbols", all.len());
        assert_eq!(all[0].symbol, "AAPL");
        let mut names: Vec<_> = all.iter().map(|s| &s.symbol).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "duplicate tickers");
        assert_eq!(
            load_universe(Path::new("config/symbols.csv"), 5)
                .unwrap()
                .len(),
            5
        );
        assert_eq!(universe(None, 0).unwrap(), all);
    }

    #[test]
    fn bad_rows_are_located() {
        let text = "symbol,sector,price,volatility,drift,tick_size,lot_size,activity\n\
                    A,X,1.0,0.2,0.1,0.01,100,1\nB,X,abc,0.2,0.1,0.01,100,1\n";
        let msg = parse_universe("u.csv", text, 0).unwrap_err().to_string();
        assert!(msg.starts_with("u.csv:3: "), "{msg}");
        let text = "symbol,sector,price,volatility,drift,tick_size,lot_size,activity\n\
                    A,X,-1.0,0.2,0.1,0.01,100,1\n";
        let msg = parse_universe("u.csv", text, 0).unwrap_err().to_string();
        assert!(msg.contains("price must be positive"), "{msg}");
    }
}
