//! The running aggregate of one window: OHLC by event time (ties broken by offset), volume,
//! turnover, VWAP, count, and field statistics; with a fixed-size binary form for the state
//! store.

use crate::codec::Tick;
use crate::config::topology::Aggregate;

/// Everything a bar needs, updated tick by tick in any arrival order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accumulator {
    /// Price of the earliest tick by (event time, offset).
    pub open: f64,
    /// (event time, offset) of the open tick.
    pub open_at: (i64, i64),
    /// Price of the latest tick by (event time, offset).
    pub close: f64,
    /// (event time, offset) of the close tick.
    pub close_at: (i64, i64),
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Sum of sizes.
    pub volume: i64,
    /// Sum of price * size.
    pub turnover: f64,
    /// Number of ticks.
    pub count: i64,
    /// Sum of prices (for the mean price).
    pub price_sum: f64,
    /// Smallest size.
    pub size_min: i64,
    /// Largest size.
    pub size_max: i64,
}

/// Bytes of [`Accumulator::to_bytes`].
pub const ACCUMULATOR_BYTES: usize = 14 * 8;
impl Accumulator {
    /// The aggregate of a single tick read at `offset`.
    pub fn new(tick: &Tick, offset: i64) -> Self {
        let at = (tick.event_time, offset);
        Self {
            open: tick.price,
            open_at: at,
            close: tick.price,
            close_at: at,
            high: tick.price,
            low: tick.price,
            volume: tick.size,
            turnover: tick.price * tick.size as f64,
            count: 1,
            price_sum: tick.price,
            size_min: tick.size,
            size_max: tick.size,
        }
    }

    /// Adds a tick read at `offset`.
    pub fn add(&mut self, tick: &Tick, offset: i64) {
        let at = (tick.event_time, offset);
        if at < self.open_at {
            self.open = tick.price;
            self.open_at = at;
        }
        if at > self.close_at {
            self.close = tick.price;
            self.close_at = at;
        }
        self.high = self.high.max(tick.price);
        self.low = self.low.min(tick.price);
        self.volume += tick.size;
        self.turnover += tick.price * tick.size as f64;
        self.count += 1;
        self.price_sum += tick.price;
        self.size_min = self.size_min.min(tick.size);
        self.size_max = self.size_max.max(tick.size);
    }

    /// Folds another window's aggregate into this one (session windows merging). Sums add in
    /// a different order than tick by tick, so turnover and VWAP may differ in the last bits.
    pub fn merge(&mut self, other: &Accumulator) {
        if other.open_at < self.open_at {
            (self.open, self.open_at) = (other.open, other.open_at);
        }
        if other.close_at > self.close_at {
            (self.close, self.close_at) = (other.close, other.close_at);
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.volume += other.volume;
        self.turnover += other.turnover;
        self.count += other.count;
        self.price_sum += other.price_sum;
        self.size_min = self.size_min.min(other.size_min);
        self.size_max = self.size_max.max(other.size_max);
    }

    /// Volume-weighted average price.
    pub fn vwap(&self) -> f64 {
        if self.volume == 0 {
            self.close
        } else {
            self.turnover / self.volume as f64
        }
    }

    /// The value of a field aggregate over price or size; `None` for other aggregates.
    pub fn field_aggregate(&self, a: &Aggregate) -> Option<f64> {
        let n = self.count as f64;
        Some(match a {
            Aggregate::Min(f) if f == "price" => self.low,
            Aggregate::Max(f) if f == "price" => self.high,
            Aggregate::Sum(f) if f == "price" => self.price_sum,
            Aggregate::Mean(f) if f == "price" => self.price_sum / n,
            Aggregate::Min(f) if f == "size" => self.size_min as f64,
            Aggregate::Max(f) if f == "size" => self.size_max as f64,
            Aggregate::Sum(f) if f == "size" => self.volume as f64,
            Aggregate::Mean(f) if f == "size" => self.volume as f64 / n,
            _ => return None,
        })
    }

    /// Fixed little-endian layout for the state store.
    pub fn to_bytes(&self) -> [u8; ACCUMULATOR_BYTES] {
        let words: [u64; 14] = [
            self.open.to_bits(),
            self.open_at.0 as u64,
            self.open_at.1 as u64,
            self.close.to_bits(),
            self.close_at.0 as u64,
            self.close_at.1 as u64,
            self.high.to_bits(),
            self.low.to_bits(),
            self.volume as u64,
            self.turnover.to_bits(),
            self.count as u64,
            self.price_sum.to_bits(),
            self.size_min as u64,
            self.size_max as u64,
        ];
        let mut out = [0u8; ACCUMULATOR_BYTES];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Reads [`Accumulator::to_bytes`]; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ACCUMULATOR_BYTES {
            return None;
        }
        let w: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let f = f64::from_bits;
        Some(Self {
            open: f(w[0]),
            open_at: (w[1] as i64, w[2] as i64),
            close: f(w[3]),
            close_at: (w[4] as i64, w[5] as i64),
            high: f(w[6]),
            low: f(w[7]),
            volume: w[8] as i64,
            turnover: f(w[9]),
            count: w[10] as i64,
            price_sum: f(w[11]),
            size_min: w[12] as i64,
            size_max: w[13] as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(t: i64, price: f64, size: i64) -> Tick {
        Tick {
            symbol: "X".into(),
            venue: "XNAS".into(),
            price,
            size,
            event_time: t,
            trade_id: t,
            side: "B".into(),
            conditions: vec![],
            currency: "USD".into(),
        }
    }

    #[test]
    fn ohlc_follows_event_time_not_arrival_order() {
        // Arrival order: t=5, t=1 (out of order), t=9, t=1 again at a later offset.
        let mut a = Accumulator::new(&tick(5, 10.0, 100), 0);
        a.add(&tick(1, 9.0, 50), 1);
        a.add(&tick(9, 12.0, 10), 2);
        a.add(&tick(1, 8.0, 40), 3);
        assert_eq!((a.open, a.close, a.high, a.low), (9.0, 12.0, 12.0, 8.0));
        assert_eq!(
            a.open_at,
            (1, 1),
            "tie on event time broken by the lower offset"
        );
        assert_eq!(
            (a.volume, a.count, a.size_min, a.size_max),
            (200, 4, 10, 100)
        );
        let turnover = 10.0 * 100.0 + 9.0 * 50.0 + 12.0 * 10.0 + 8.0 * 40.0;
        assert_eq!(a.turnover, turnover);
        assert_eq!(a.vwap(), turnover / 200.0);
        assert_eq!(Accumulator::from_bytes(&a.to_bytes()), Some(a));
        let field = |s: &str| -> Aggregate { serde_saphyr::from_str(s).unwrap() };
        assert_eq!(a.field_aggregate(&field("!max size")), Some(100.0));
        assert_eq!(
            a.field_aggregate(&field("!mean price")),
            Some((10.0 + 9.0 + 12.0 + 8.0) / 4.0)
        );
        assert_eq!(a.field_aggregate(&field("!sum size")), Some(200.0));
        assert_eq!(a.field_aggregate(&field("!min price")), Some(8.0));
        assert_eq!(a.field_aggregate(&field("open")), None);
        assert_eq!(Accumulator::from_bytes(&[0; 3]), None);
    }

    #[test]
    fn merging_equals_adding_tick_by_tick() {
        let ticks = [tick(5, 10.0, 100), tick(1, 9.0, 50), tick(9, 12.0, 10)];
        let mut whole = Accumulator::new(&ticks[0], 0);
        whole.add(&ticks[1], 1);
        whole.add(&ticks[2], 2);
        let mut left = Accumulator::new(&ticks[2], 2);
        let mut right = Accumulator::new(&ticks[0], 0);
        right.add(&ticks[1], 1);
        left.merge(&right);
        assert_eq!(left, whole);
    }
}
