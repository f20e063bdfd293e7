//! The trading calendar: weekdays, a regular session, optional extended hours.

use super::{SimConfig, SimError};

const DAY_SECS: i64 = 86_400;
const MICROS: i64 = 1_000_000;
/// Pre-market opens at 04:00 local time.
const PRE_MARKET_OPEN: i64 = 4 * 3600;
/// After-hours trading ends at 20:00 local time.
const AFTER_HOURS_CLOSE: i64 = 20 * 3600;

/// Where an instant falls in the trading day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Regular session; `progress` runs from 0 at the open to 1 at the close.
    Regular { progress: f64 },
    /// Pre-market or after-hours.
    Extended,
    /// No trading.
    Closed,
}

/// Trading hours of one exchange, in its local time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Session {
    open: i64,
    close: i64,
    offset: i64,
    extended: bool,
}

impl Session {
    /// Builds the calendar from the simulator settings.
    pub fn from_config(cfg: &SimConfig) -> Result<Self, SimError> {
        let open = parse_hhmm("session_open", &cfg.session_open)?;
        let close = parse_hhmm("session_close", &cfg.session_close)?;
        if close <= open {
            return Err(SimError::BadSetting {
                field: "session_close",
                reason: "must be after session_open".into(),
            });
        }
        let offset = parse_offset(&cfg.utc_offset)?;
        Ok(Self {
            open,
            close,
            offset,
            extended: cfg.extended_hours,
        })
    }

    /// Length of the regular session in seconds.
    pub fn regular_secs(&self) -> f64 {
        (self.close - self.open) as f64
    }

    /// The phase at `t` (UTC microseconds) and the instant the phase ends.
    pub fn phase(&self, t: i64) -> (Phase, i64) {
        let local = t.div_euclid(MICROS) + self.offset;
        let day = local.div_euclid(DAY_SECS);
        let sec = local.rem_euclid(DAY_SECS);
        let day_start_utc = (day * DAY_SECS - self.offset) * MICROS;
        let at = |s: i64| day_start_utc + s * MICROS;
        if is_weekend(day) {
            return (Phase::Closed, self.next_open(t));
        }
        if (self.open..self.close).contains(&sec) {
            let progress = (t - at(self.open)) as f64 / (self.regular_secs() * MICROS as f64);
            return (Phase::Regular { progress }, at(self.close));
        }
        if self.extended && (PRE_MARKET_OPEN..self.open).contains(&sec) {
            return (Phase::Extended, at(self.open));
        }
        if self.extended && (self.close..AFTER_HOURS_CLOSE).contains(&sec) {
            return (Phase::Extended, at(AFTER_HOURS_CLOSE));
        }
        (Phase::Closed, self.next_open(t))
    }

    /// The first instant after `t` at which trading is possible.
    pub fn next_open(&self, t: i64) -> i64 {
        let first = if self.extended {
            PRE_MARKET_OPEN
        } else {
            self.open
        };
        let local = t.div_euclid(MICROS) + self.offset;
        let mut day = local.div_euclid(DAY_SECS);
        if local.rem_euclid(DAY_SECS) >= first {
            day += 1;
        }
        while is_weekend(day) {
            day += 1;
        }
        (day * DAY_SECS + first - self.offset) * MICROS
    }

    /// The regular open of the trading day that contains `t`, or of the next one.
    pub fn open_on_or_after(&self, t: i64) -> i64 {
        let local = t.div_euclid(MICROS) + self.offset;
        let mut day = local.div_euclid(DAY_SECS);
        if local.rem_euclid(DAY_SECS) >= self.close {
            day += 1;
        }
        while is_weekend(day) {
            day += 1;
        }
        (day * DAY_SECS + self.open - self.offset) * MICROS
    }

    /// The regular open of the latest trading day whose regular session closed at or before
    /// `t`: a whole session of market time that lies in the past.
    pub fn last_closed_open(&self, t: i64) -> i64 {
        let local = t.div_euclid(MICROS) + self.offset;
        let mut day = local.div_euclid(DAY_SECS);
        if local.rem_euclid(DAY_SECS) < self.close {
            day -= 1;
        }
        while is_weekend(day) {
            day -= 1;
        }
        (day * DAY_SECS + self.open - self.offset) * MICROS
    }

    /// The regular open and close of calendar day `day` (days since the epoch, local time).
    pub fn day_bounds(&self, day: i64) -> (i64, i64) {
        let base = day * DAY_SECS - self.offset;
        ((base + self.open) * MICROS, (base + self.close) * MICROS)
    }
}

/// 1970-01-01 was a Thursday.
fn is_weekend(day: i64) -> bool {
    (day + 3).rem_euclid(7) >= 5
}

fn parse_hhmm(field: &'static str, s: &str) -> Result<i64, SimError> {
    let bad = || SimError::BadSetting {
        field,
        reason: format!("`{s}` is not a time of day (HH:MM)"),
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60)
}

fn parse_offset(s: &str) -> Result<i64, SimError> {
    let bad = || SimError::BadSetting {
        field: "utc_offset",
        reason: format!("`{s}` is not an offset like -05:00"),
    };
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let secs = parse_hhmm("utc_offset", rest).map_err(|_| bad())?;
    Ok(sign * secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn new_york_session() {
        let s = Session::from_config(&SimConfig::default()).unwrap();
        // Thursday 2026-11-26 09:30 EST = 14:30 UTC.
        let (phase, end) = s.phase(utc("2026-11-26T14:30:00Z"));
        assert_eq!(phase, Phase::Regular { progress: 0.0 });
        assert_eq!(end, utc("2026-11-26T21:00:00Z"));
        assert_eq!(s.phase(utc("2026-11-26T21:00:00Z")).0, Phase::Closed);
        // Friday close -> Monday open.
        assert_eq!(
            s.next_open(utc("2026-11-27T21:00:00Z")),
            utc("2026-11-30T14:30:00Z")
        );
        assert_eq!(
            s.open_on_or_after(utc("2026-11-28T12:00:00Z")),
            utc("2026-11-30T14:30:00Z")
        );
        // The last session that has closed: Monday's during Tuesday's, Friday's at the
        // weekend, Monday's from its close on.
        let last = |t| s.last_closed_open(utc(t));
        assert_eq!(last("2026-12-01T15:00:00Z"), utc("2026-11-30T14:30:00Z"));
        assert_eq!(last("2026-11-29T12:00:00Z"), utc("2026-11-27T14:30:00Z"));
        assert_eq!(last("2026-11-30T20:59:59Z"), utc("2026-11-27T14:30:00Z"));
        assert_eq!(last("2026-11-30T21:00:00Z"), utc("2026-11-30T14:30:00Z"));
    }

    #[test]
    fn extended_hours() {
        let cfg = SimConfig {
            extended_hours: true,
            ..SimConfig::default()
        };
        let s = Session::from_config(&cfg).unwrap();
        assert_eq!(s.phase(utc("2026-11-26T10:00:00Z")).0, Phase::Extended);
        assert_eq!(s.phase(utc("2026-11-26T22:00:00Z")).0, Phase::Extended);
        assert_eq!(s.phase(utc("2026-11-27T02:00:00Z")).0, Phase::Closed);
    }

    #[test]
    fn bad_times_are_refused() {
        let cfg = SimConfig {
            session_open: "9h30".into(),
            ..SimConfig::default()
        };
        assert!(Session::from_config(&cfg).is_err());
        let cfg = SimConfig {
            utc_offset: "EST".into(),
            ..SimConfig::default()
        };
        assert!(Session::from_config(&cfg).is_err());
    }
}
