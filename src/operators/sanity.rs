//! Checks a decoded tick must pass before any operator sees it. A tick that fails goes to the
//! dead-letter topic with the reason, and processing continues.

use crate::codec::{Reason, Tick};

/// Why a decoded tick is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Why: `BadPrice`, `BadSize`, `ImplausibleEventTime` or `MissingField`.
    pub reason: Reason,
    /// What exactly was wrong.
    pub detail: String,
}

/// The checks, with the largest distance allowed between a tick's event time and its
/// partition's stream time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sanity {
    /// Largest |event time - stream time|, microseconds.
    pub max_skew: i64,
}

impl Sanity {
    /// Accepts the tick, or says why not. `stream_time` is `i64::MIN` before the first tick.
    pub fn check(&self, tick: &Tick, stream_time: i64) -> Result<(), Rejection> {
        let reject = |reason, detail| Err(Rejection { reason, detail });
        if tick.symbol.is_empty() {
            return reject(Reason::MissingField, "empty symbol".into());
        }
        if !tick.price.is_finite() || tick.price <= 0.0 {
            return reject(
                Reason::BadPrice,
                format!("price {} is not a positive number", tick.price),
            );
        }
        if tick.size <= 0 {
            return reject(
                Reason::BadSize,
                format!("size {} is not positive", tick.size),
            );
        }
        if stream_time != i64::MIN && tick.event_time.abs_diff(stream_time) > self.max_skew as u64 {
            return reject(
                Reason::ImplausibleEventTime,
                format!(
                    "event time {} is more than {} us from stream time {stream_time}",
                    tick.event_time, self.max_skew
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(price: f64, size: i64, t: i64) -> Tick {
        Tick {
            symbol: "AAPL".into(),
            venue: "XNAS".into(),
            price,
            size,
            event_time: t,
            trade_id: 1,
            side: "B".into(),
            conditions: vec![],
            currency: "USD".into(),
        }
    }

    #[test]
    fn each_kind_of_bad_tick_has_its_reason() {
        let s = Sanity { max_skew: 100 };
        let reason = |t: &Tick, st| s.check(t, st).err().map(|r| r.reason.as_str());
        assert_eq!(reason(&tick(1.0, 1, 0), i64::MIN), None);
        assert_eq!(
            reason(&tick(1.0, 1, 5_000), i64::MIN),
            None,
            "first tick sets the clock"
        );
        assert_eq!(reason(&tick(f64::NAN, 1, 0), 0), Some("bad_price"));
        assert_eq!(reason(&tick(-2.0, 1, 0), 0), Some("bad_price"));
        assert_eq!(reason(&tick(f64::INFINITY, 1, 0), 0), Some("bad_price"));
        assert_eq!(reason(&tick(1.0, 0, 0), 0), Some("bad_size"));
        assert_eq!(reason(&tick(1.0, -5, 0), 0), Some("bad_size"));
        assert_eq!(
            reason(&tick(1.0, 1, 101), 0),
            Some("implausible_event_time")
        );
        assert_eq!(
            reason(&tick(1.0, 1, -101), 0),
            Some("implausible_event_time")
        );
        assert_eq!(reason(&tick(1.0, 1, 100), 0), None);
        let mut nameless = tick(1.0, 1, 0);
        nameless.symbol.clear();
        assert_eq!(reason(&nameless, 0), Some("missing_field"));
    }
}
