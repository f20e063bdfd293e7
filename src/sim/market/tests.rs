use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::sim::load_universe;

/// Thursday 2026-11-26 09:30 New York time.
const START: i64 = 1_795_703_400_000_000;

fn universe(n: usize) -> Vec<SymbolSpec> {
    load_universe(Path::new("config/symbols.csv"), n).unwrap()
}

fn stream(cfg: &SimConfig, symbols: usize, count: u64) -> TickStream {
    TickStream::from_config(cfg, universe(symbols), START, Some(count)).unwrap()
}

#[test]
fn start_constant_is_the_open() {
    let s = Session::from_config(&SimConfig::default()).unwrap();
    assert_eq!(s.open_on_or_after(START), START);
}

#[test]
fn same_seed_same_ticks_other_seed_other_ticks() {
    let cfg = SimConfig::default();
    let a: Vec<Tick> = stream(&cfg, 50, 20_000).collect();
    let b: Vec<Tick> = stream(&cfg, 50, 20_000).collect();
    assert_eq!(a.len(), 20_000);
    assert_eq!(a, b);
    let other = SimConfig {
        seed: 7,
        ..cfg.clone()
    };
    let c: Vec<Tick> = stream(&other, 50, 20_000).collect();
    assert_ne!(a, c);
}

#[test]
fn prices_sizes_and_venues_look_like_a_market() {
    let cfg = SimConfig::default();
    let ticks: Vec<Tick> = stream(&cfg, 336, 100_000).collect();
    let mut ids: Vec<i64> = ticks.iter().map(|t| t.trade_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ticks.len(), "trade ids are unique");
    let specs: HashMap<String, SymbolSpec> = universe(336)
        .into_iter()
        .map(|s| (s.symbol.clone(), s))
        .collect();
    let mut odd = 0;
    let mut venues = HashMap::<&str, usize>::new();
    for t in &ticks {
        let spec = &specs[&t.symbol];
        assert!(t.price >= spec.tick_size, "{t:?}");
        let ticks_ = t.price / spec.tick_size;
        assert!(
            (ticks_ - ticks_.round()).abs() < 1e-6,
            "price on the tick grid: {t:?}"
        );
        assert!(t.size > 0);
        if t.size < spec.lot_size {
            odd += 1;
            assert_eq!(t.conditions, vec!["I".to_string()]);
        } else {
            assert_eq!(t.size % spec.lot_size, 0);
        }
        *venues.entry(&t.venue).or_default() += 1;
    }
    let odd_share = odd as f64 / ticks.len() as f64;
    assert!(
        (odd_share - cfg.odd_lot_fraction).abs() < 0.02,
        "{odd_share}"
    );
    assert_eq!(venues.len(), cfg.venues.len());
    // Heavy tail: some trades of 50 lots or more, but they are rare.
    let big = ticks.iter().filter(|t| t.size >= 5_000).count() as f64 / ticks.len() as f64;
    assert!(big > 0.001 && big < 0.05, "{big}");
}

/// Realised volatility of 1-minute returns, pooled over symbols, matches the configured
/// volatility: sum of squared log returns over sum of expected variances is close to 1.
#[test]
fn realised_volatility_matches_configuration() {
    let cfg = SimConfig {
        trades_per_second: 40.0,
        out_of_order_fraction: 0.0,
        late_fraction: 0.0,
        ..SimConfig::default()
    };
    let n_symbols = 10;
    let specs = universe(n_symbols);
    let session = Session::from_config(&cfg).unwrap();
    let day_secs = session.regular_secs();
    let (_, close) = session.phase(START);
    let mut last: HashMap<String, (i64, f64)> = HashMap::new();
    let mut sum_sq = 0.0;
    let mut expected = 0.0;
    let vol: HashMap<String, f64> = specs
        .iter()
        .map(|s| (s.symbol.clone(), s.volatility))
        .collect();
    let minute = 60_000_000;
    for t in TickStream::from_config(&cfg, specs, START, None).unwrap() {
        if t.event_time >= close {
            break;
        }
        let bucket = (t.event_time - START) / minute;
        let entry = last.entry(t.symbol.clone()).or_insert((bucket, t.price));
        if bucket > entry.0 {
            let r = (t.price / entry.1).ln();
            let dt_years = ((bucket - entry.0) * 60) as f64 / (day_secs * 252.0);
            sum_sq += r * r;
            expected += vol[&t.symbol].powi(2) * dt_years;
            *entry = (bucket, t.price);
        }
    }
    let ratio = (sum_sq / expected).sqrt();
    assert!(
        (ratio - 1.0).abs() < 0.10,
        "realised / configured volatility = {ratio}"
    );
}

#[test]
fn session_is_u_shaped_and_closed_outside_hours() {
    let cfg = SimConfig {
        trades_per_second: 20.0,
        out_of_order_fraction: 0.0,
        late_fraction: 0.0,
        ..SimConfig::default()
    };
    let session = Session::from_config(&cfg).unwrap();
    let half_hour = 1_800_000_000;
    let mut buckets = [0u64; 13];
    let mut days = 0;
    let mut last_day_open = 0;
    // Four whole sessions: Thursday, Friday, then (over the weekend) Monday and Tuesday.
    let ticks = TickStream::from_config(&cfg, universe(100), START, None).unwrap();
    for t in ticks {
        let (phase, close) = session.phase(t.event_time);
        assert!(
            matches!(phase, Phase::Regular { .. }),
            "trade outside the session: {t:?}"
        );
        let open = close - 13 * half_hour;
        if open != last_day_open {
            days += 1;
            last_day_open = open;
        }
        if days > 4 {
            break;
        }
        buckets[((t.event_time - open) / half_hour) as usize] += 1;
    }
    assert_eq!(
        last_day_open,
        START + 5 * 86_400_000_000 + 86_400_000_000,
        "Wednesday comes after the weekend"
    );
    let midday = (buckets[5] + buckets[6] + buckets[7]) as f64 / 3.0;
    assert!(buckets[0] as f64 > 2.0 * midday, "{buckets:?}");
    assert!(buckets[12] as f64 > 2.0 * midday, "{buckets:?}");
}

/// Counts ticks that trail the newest event time delivered so far: by more than the bound
/// (late) or by at most the bound (out of order).
#[test]
fn disorder_fractions_match_configuration() {
    let cfg = SimConfig {
        out_of_order_fraction: 0.02,
        late_fraction: 0.005,
        ..SimConfig::default()
    };
    let n = 400_000;
    let bound = cfg.out_of_order_bound.as_micros() as i64;
    let (mut late, mut ooo, mut max_seen) = (0u64, 0u64, i64::MIN);
    let mut count = 0;
    for t in stream(&cfg, 200, n) {
        count += 1;
        if t.event_time < max_seen.saturating_sub(bound) {
            late += 1;
        } else if t.event_time < max_seen {
            ooo += 1;
        }
        max_seen = max_seen.max(t.event_time);
    }
    assert_eq!(count, n, "every generated tick is delivered");
    let late_share = late as f64 / n as f64;
    let ooo_share = ooo as f64 / n as f64;
    assert!(
        (late_share / cfg.late_fraction - 1.0).abs() < 0.1,
        "late {late_share}"
    );
    assert!(
        (ooo_share / cfg.out_of_order_fraction - 1.0).abs() < 0.1,
        "ooo {ooo_share}"
    );
}
