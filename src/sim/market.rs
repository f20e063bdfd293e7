//! The simulated market: trade arrivals, prices, sizes and venues, and the disorder stage that
//! delays some ticks so that they arrive out of order or late.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, Pareto, StandardNormal, weighted::WeightedAliasIndex};

use super::session::{Phase, Session};
use super::{SimConfig, SimError, SymbolSpec};
use crate::codec::Tick;

const MICROS: f64 = 1_000_000.0;
/// Trading days in a year, for annualised drift and volatility.
const TRADING_DAYS: f64 = 252.0;

/// Per-symbol state of the price process.
struct SymbolState {
    spec: SymbolSpec,
    log_price: f64,
    last_price: f64,
    /// Trading clock (seconds) of the last price update.
    last_tau: f64,
    inv_tick: f64,
}

/// A burst of activity: intensity is multiplied while `start <= t < end`.
struct Burst {
    start: i64,
    end: i64,
}

/// Generates trades in event-time order. Deterministic in (configuration, universe, seed,
/// start time).
pub struct MarketSim {
    symbols: Vec<SymbolState>,
    pick_symbol: WeightedAliasIndex<f64>,
    venues: Vec<String>,
    pick_venue: WeightedAliasIndex<f64>,
    sizes: Pareto<f64>,
    rng: ChaCha8Rng,
    session: Session,
    cfg: SimConfig,
    /// Event time of the last trade, UTC microseconds.
    t: i64,
    /// Trading clock: seconds of market time elapsed while the market was open.
    tau: f64,
    /// Seconds of trading time in a year.
    year_secs: f64,
    /// Normalises the U-shape so that its mean over the session is 1.
    shape_norm: f64,
    burst: Burst,
    next_id: i64,
}

impl MarketSim {
    /// A market starting at `start` (UTC microseconds); trading starts at the first session
    /// open at or after it.
    pub fn new(cfg: &SimConfig, universe: Vec<SymbolSpec>, start: i64) -> Result<Self, SimError> {
        cfg.validate()?;
        let session = Session::from_config(cfg)?;
        let weights: Vec<f64> = universe.iter().map(|s| s.activity).collect();
        let pick_symbol = WeightedAliasIndex::new(weights).map_err(|e| SimError::Distribution {
            field: "symbols",
            source: e.into(),
        })?;
        let venue_weights: Vec<f64> = cfg.venues.iter().map(|v| v.share).collect();
        let pick_venue =
            WeightedAliasIndex::new(venue_weights).map_err(|e| SimError::Distribution {
                field: "venues",
                source: e.into(),
            })?;
        let sizes = Pareto::new(1.0, cfg.size_tail_index).map_err(|e| SimError::Distribution {
            field: "size_tail_index",
            source: e.into(),
        })?;
        let symbols = universe
            .into_iter()
            .map(|spec| SymbolState {
                log_price: spec.price.ln(),
                last_price: spec.price,
                last_tau: 0.0,
                inv_tick: (1.0 / spec.tick_size).round(),
                spec,
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let r = cfg.open_close_ratio;
        let burst = next_burst(&mut rng, cfg, start);
        Ok(Self {
            symbols,
            pick_symbol,
            venues: cfg.venues.iter().map(|v| v.mic.clone()).collect(),
            pick_venue,
            sizes,
            rng,
            year_secs: session.regular_secs() * TRADING_DAYS,
            session,
            cfg: cfg.clone(),
            t: start,
            tau: 0.0,
            shape_norm: 1.0 / (1.0 + (r - 1.0) / 3.0),
            burst,
            next_id: 1,
        })
    }

    /// The session calendar the market trades on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The next trade.
    pub fn next_tick(&mut self) -> Tick {
        self.advance_clock();
        let i = self.pick_symbol.sample(&mut self.rng);
        let extended = !matches!(self.session.phase(self.t).0, Phase::Regular { .. });
        let price = self.move_price(i);
        let s = &mut self.symbols[i];
        let side = if price > s.last_price {
            "B"
        } else if price < s.last_price {
            "S"
        } else if self.rng.random::<bool>() {
            "B"
        } else {
            "S"
        };
        s.last_price = price;
        let (size, odd) = self.trade_size(i);
        let venue = self.venues[self.pick_venue.sample(&mut self.rng)].clone();
        let conditions = self.conditions(odd, extended, size / self.symbols[i].spec.lot_size);
        let id = self.next_id;
        self.next_id += 1;
        Tick {
            symbol: self.symbols[i].spec.symbol.clone(),
            venue,
            price,
            size,
            event_time: self.t,
            trade_id: id,
            side: side.into(),
            conditions,
            currency: "USD".into(),
        }
    }

    /// Moves the clock to the next arrival of the inhomogeneous Poisson process. Intensity is
    /// held constant between draws; at a phase boundary the draw restarts, which is exact
    /// because exponential waiting times are memoryless.
    fn advance_clock(&mut self) {
        loop {
            self.roll_burst();
            let (phase, phase_end) = self.session.phase(self.t);
            let base = match phase {
                Phase::Closed => {
                    self.t = phase_end;
                    continue;
                }
                Phase::Extended => self.cfg.extended_intensity,
                Phase::Regular { progress } => self.u_shape(progress),
            };
            let rate = self.cfg.trades_per_second * base * self.burst_factor();
            let wait: f64 = self.rng.sample(Exp1);
            let next = self.t + (wait / rate * MICROS) as i64;
            let limit = phase_end.min(self.burst_edge());
            if next >= limit {
                self.tau += (limit - self.t) as f64 / MICROS;
                self.t = limit;
                continue;
            }
            self.tau += (next - self.t) as f64 / MICROS;
            self.t = next;
            return;
        }
    }

    /// Intensity relative to the session mean: highest at the open and the close.
    fn u_shape(&self, progress: f64) -> f64 {
        let x = 2.0 * progress - 1.0;
        self.shape_norm * (1.0 + (self.cfg.open_close_ratio - 1.0) * x * x)
    }

    fn burst_factor(&self) -> f64 {
        if (self.burst.start..self.burst.end).contains(&self.t) {
            self.cfg.burst_multiplier
        } else {
            1.0
        }
    }

    /// The next instant at which the burst state changes.
    fn burst_edge(&self) -> i64 {
        if self.t < self.burst.start {
            self.burst.start
        } else {
            self.burst.end
        }
    }

    /// Starts the next burst once the current one is over (also after a closed period).
    fn roll_burst(&mut self) {
        if self.t >= self.burst.end {
            self.burst = next_burst(&mut self.rng, &self.cfg, self.t);
        }
    }

    /// Advances symbol `i`'s geometric Brownian motion to now and returns the traded price,
    /// rounded to the tick size and never below one tick.
    fn move_price(&mut self, i: usize) -> f64 {
        let s = &mut self.symbols[i];
        let dt = (self.tau - s.last_tau) / self.year_secs;
        s.last_tau = self.tau;
        if dt > 0.0 {
            let z: f64 = self.rng.sample(StandardNormal);
            let (mu, sigma) = (s.spec.drift, s.spec.volatility);
            s.log_price += (mu - 0.5 * sigma * sigma) * dt + sigma * dt.sqrt() * z;
        }
        let ticks = (s.log_price.exp() * s.inv_tick).round().max(1.0);
        ticks / s.inv_tick
    }

    /// Shares traded and whether it is an odd lot: odd lots uniform below one lot, round lots
    /// Pareto-distributed (heavy tail) up to `max_lots`.
    fn trade_size(&mut self, i: usize) -> (i64, bool) {
        let lot = self.symbols[i].spec.lot_size;
        if lot > 1 && self.rng.random::<f64>() < self.cfg.odd_lot_fraction {
            return (self.rng.random_range(1..lot), true);
        }
        let lots = (self.sizes.sample(&mut self.rng).floor() as i64).clamp(1, self.cfg.max_lots);
        (lots * lot, false)
    }

    fn conditions(&mut self, odd: bool, extended: bool, lots: i64) -> Vec<String> {
        let mut c = Vec::with_capacity(2);
        if extended {
            c.push("T".to_string());
        } else if odd {
            c.push("I".to_string());
        } else {
            c.push("@".to_string());
            if lots >= 10 && self.rng.random::<f64>() < 0.3 {
                c.push("F".to_string());
            }
        }
        c
    }
}

fn exp_micros(rng: &mut ChaCha8Rng, mean: std::time::Duration) -> i64 {
    let e: f64 = rng.sample(Exp1);
    ((e * mean.as_secs_f64() * MICROS) as i64).max(1)
}

fn next_burst(rng: &mut ChaCha8Rng, cfg: &SimConfig, now: i64) -> Burst {
    let start = now + exp_micros(rng, cfg.burst_interval);
    let end = start + exp_micros(rng, cfg.burst_duration);
    Burst { start, end }
}

/// A tick waiting to be released, ordered by release time then generation order.
struct Pending {
    release: i64,
    seq: u64,
    tick: Tick,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.release, self.seq).cmp(&(other.release, other.seq))
    }
}

/// Delays a configured fraction of ticks: out-of-order ones by up to the bound, late ones by
/// `late_delay_min..=late_delay_max`. A tick is released once the newest generated event time
/// reaches its release time, so an out-of-order tick never trails the newest event time by more
/// than the bound.
pub struct Disorder {
    heap: BinaryHeap<Reverse<Pending>>,
    rng: ChaCha8Rng,
    ooo_fraction: f64,
    ooo_bound: i64,
    late_fraction: f64,
    late_min: i64,
    late_max: i64,
    seq: u64,
}

impl Disorder {
    /// A disorder stage with its own random stream derived from the seed.
    pub fn new(cfg: &SimConfig) -> Self {
        Self {
            heap: BinaryHeap::new(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_d150_4de4),
            ooo_fraction: cfg.out_of_order_fraction,
            ooo_bound: cfg.out_of_order_bound.as_micros() as i64,
            late_fraction: cfg.late_fraction,
            late_min: cfg.late_delay_min.as_micros() as i64,
            late_max: cfg.late_delay_max.as_micros() as i64,
            seq: 0,
        }
    }

    /// Takes a freshly generated tick.
    pub fn push(&mut self, tick: Tick) {
        let u: f64 = self.rng.random();
        let delay = if u < self.late_fraction {
            self.rng.random_range(self.late_min..=self.late_max)
        } else if u < self.late_fraction + self.ooo_fraction {
            self.rng.random_range(1..=self.ooo_bound)
        } else {
            0
        };
        self.seq += 1;
        self.heap.push(Reverse(Pending {
            release: tick.event_time + delay,
            seq: self.seq,
            tick,
        }));
    }

    /// The next tick due at `now` (the newest generated event time), if any.
    pub fn pop_due(&mut self, now: i64) -> Option<Tick> {
        if self.heap.peek()?.0.release <= now {
            return self.heap.pop().map(|p| p.0.tick);
        }
        None
    }

    /// The next tick in release order regardless of time (draining at the end).
    pub fn pop_any(&mut self) -> Option<Tick> {
        self.heap.pop().map(|p| p.0.tick)
    }
}

/// The simulator's output sequence: market trades passed through the disorder stage. With a
/// count, exactly that many ticks are generated and all of them are delivered.
pub struct TickStream {
    market: MarketSim,
    disorder: Disorder,
    remaining: Option<u64>,
    now: i64,
}

impl TickStream {
    /// A stream of `count` ticks (unbounded with `None`).
    pub fn new(market: MarketSim, disorder: Disorder, count: Option<u64>) -> Self {
        Self {
            market,
            disorder,
            remaining: count,
            now: i64::MIN,
        }
    }

    /// Builds the whole simulator from configuration.
    pub fn from_config(
        cfg: &SimConfig,
        universe: Vec<SymbolSpec>,
        start: i64,
        count: Option<u64>,
    ) -> Result<Self, SimError> {
        let market = MarketSim::new(cfg, universe, start)?;
        Ok(Self::new(market, Disorder::new(cfg), count))
    }
}

impl Iterator for TickStream {
    type Item = Tick;

    fn next(&mut self) -> Option<Tick> {
        loop {
            if let Some(t) = self.disorder.pop_due(self.now) {
                return Some(t);
            }
            match self.remaining {
                Some(0) => return self.disorder.pop_any(),
                Some(ref mut n) => *n -= 1,
                None => {}
            }
            let tick = self.market.next_tick();
            self.now = tick.event_time;
            self.disorder.push(tick);
        }
    }
}

#[cfg(test)]
mod tests;
