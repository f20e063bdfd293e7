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

/// The checks, with how far a tick's event time may be from its partition's stream time and
/// ahead of its record's Kafka timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sanity {
    /// Largest distance of an event time behind stream time, microseconds; and ahead of it,
    /// for a record produced longer than this after its event time (or without a timestamp).
    pub max_skew: i64,
    /// Largest (event time - record timestamp), microseconds.
    pub max_ahead: i64,
}

impl Sanity {
    /// Accepts the tick, or says why not. `stream_time` is `i64::MIN` before the first tick;
    /// `produced_at` is the record's Kafka timestamp (UTC microseconds), 0 if it has none.
    pub fn check(&self, tick: &Tick, stream_time: i64, produced_at: i64) -> Result<(), Rejection> {
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
        self.check_ahead("event time", tick.event_time, produced_at)?;
        if stream_time == i64::MIN {
            return Ok(());
        }
        let t = tick.event_time;
        let skew = |what: &str| {
            let max = self.max_skew;
            let detail =
                format!("event time {t} is more than {max} us {what} stream time {stream_time}");
            reject(Reason::ImplausibleEventTime, detail)
        };
        if stream_time.saturating_sub(t) > self.max_skew {
            return skew("behind");
        }
        // A record produced long after its event time (a backfill, or one without a
        // timestamp) has no clock to be judged by: far ahead of the others is implausible too.
        // A live one may be: the first tick after a weekend is.
        let backfill = produced_at <= 0 || produced_at.saturating_sub(t) > self.max_skew;
        if backfill && t.saturating_sub(stream_time) > self.max_skew {
            return skew("ahead of");
        }
        Ok(())
    }

    /// Accepts a watermark record at `time`, or says why not: like a tick's event time, it may
    /// not be further ahead of its record's timestamp than `max_ahead`.
    pub fn check_watermark(&self, time: i64, produced_at: i64) -> Result<(), Rejection> {
        self.check_ahead("watermark", time, produced_at)
    }

    fn check_ahead(&self, what: &str, time: i64, produced_at: i64) -> Result<(), Rejection> {
        if produced_at > 0 && time.saturating_sub(produced_at) > self.max_ahead {
            return Err(Rejection {
                reason: Reason::ImplausibleEventTime,
                detail: format!(
                    "{what} {time} is more than {} us after the record's timestamp {produced_at}",
                    self.max_ahead
                ),
            });
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
        let s = Sanity {
            max_skew: 100,
            max_ahead: 50,
        };
        let reason = |t: &Tick, st| s.check(t, st, 0).err().map(|r| r.reason.as_str());
        assert_eq!(reason(&tick(1.0, 1, 0), i64::MIN), None);
        assert_eq!(
            reason(&tick(1.0, 1, 5_000), i64::MIN),
            None,
            "without a timestamp, the first tick sets the clock"
        );
        assert_eq!(reason(&tick(f64::NAN, 1, 0), 0), Some("bad_price"));
        assert_eq!(reason(&tick(-2.0, 1, 0), 0), Some("bad_price"));
        assert_eq!(reason(&tick(f64::INFINITY, 1, 0), 0), Some("bad_price"));
        assert_eq!(reason(&tick(1.0, 0, 0), 0), Some("bad_size"));
        assert_eq!(reason(&tick(1.0, -5, 0), 0), Some("bad_size"));
        assert_eq!(
            reason(&tick(1.0, 1, -101), 0),
            Some("implausible_event_time"),
            "too far behind stream time"
        );
        assert_eq!(reason(&tick(1.0, 1, -100), 0), None);
        assert_eq!(
            reason(&tick(1.0, 1, 101), 0),
            Some("implausible_event_time"),
            "without a timestamp, too far ahead of stream time"
        );
        let live = |t: i64, st| s.check(&tick(1.0, 1, t), st, t).err().map(|r| r.reason);
        assert_eq!(
            live(1_000_000, 0),
            None,
            "sent as it happened, far ahead of stream time (a weekend's gap) is fine"
        );
        let backfill = |t: i64, st| {
            s.check(&tick(1.0, 1, t), st, t + 101)
                .err()
                .map(|r| r.reason)
        };
        assert_eq!(backfill(100, 0), None);
        assert_eq!(
            backfill(101, 0),
            Some(Reason::ImplausibleEventTime),
            "sent long after it happened, too far ahead of the others"
        );
        let mut nameless = tick(1.0, 1, 0);
        nameless.symbol.clear();
        assert_eq!(reason(&nameless, 0), Some("missing_field"));
    }

    #[test]
    fn nothing_may_come_from_after_its_record_was_produced() {
        let s = Sanity {
            max_skew: 100,
            max_ahead: 50,
        };
        let at = 1_000_000;
        let verdict = |t: i64, st| s.check(&tick(1.0, 1, t), st, at).err().map(|r| r.reason);
        assert_eq!(verdict(at + 50, i64::MIN), None);
        assert_eq!(
            verdict(at + 51, i64::MIN),
            Some(Reason::ImplausibleEventTime),
            "the first tick of a partition is checked too"
        );
        assert_eq!(verdict(at + 51, at), Some(Reason::ImplausibleEventTime));
        assert_eq!(verdict(at - 10_000_000, i64::MIN), None, "the past is fine");
        let mark = |t: i64, at| s.check_watermark(t, at).err().map(|r| r.reason);
        assert_eq!(mark(at + 50, at), None);
        // A watermark in nanoseconds instead of microseconds.
        assert_eq!(mark(at * 1000, at), Some(Reason::ImplausibleEventTime));
        assert_eq!(mark(at * 1000, 0), None, "no timestamp, no verdict");
        let r = s.check_watermark(at + 51, at).unwrap_err();
        assert!(
            r.detail.contains("after the record's timestamp"),
            "{}",
            r.detail
        );
    }
}
