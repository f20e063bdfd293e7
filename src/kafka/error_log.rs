//! Logging a consumer's errors without flooding the log while a broker is down.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often a run of errors is logged: the first at once, then one line per interval.
const EVERY: Duration = Duration::from_secs(30);

/// The errors a polling loop meets: the first of a run is logged at once, the following
/// ones once per 30 s with how many were not logged, and the end of the run (a record
/// arrived) once.
#[derive(Debug)]
pub struct ErrorLog {
    /// The stage named in each line (`engine`, `lake`).
    stage: &'static str,
    /// When a line was last logged in the current run of errors.
    logged: Option<Instant>,
    /// Errors of the run not logged since that line.
    unlogged: u64,
}

impl ErrorLog {
    /// A log for `stage`'s consumer.
    pub fn new(stage: &'static str) -> Self {
        Self {
            stage,
            logged: None,
            unlogged: 0,
        }
    }

    /// An error from the consumer.
    pub fn error(&mut self, e: &dyn Display) {
        self.error_at(e, Instant::now());
    }

    /// An error at `now`; whether it was logged.
    fn error_at(&mut self, e: &dyn Display, now: Instant) -> bool {
        if self.logged.is_some_and(|t| now.duration_since(t) < EVERY) {
            self.unlogged += 1;
            return false;
        }
        let (stage, unlogged) = (self.stage, self.unlogged);
        tracing::warn!(stage, error = %e, unlogged, "consumer error");
        (self.logged, self.unlogged) = (Some(now), 0);
        true
    }

    /// A record arrived: a run of errors, if any, is over.
    pub fn ok(&mut self) {
        if self.logged.take().is_some() {
            let (stage, unlogged) = (self.stage, self.unlogged);
            tracing::info!(stage, unlogged, "the consumer reads records again");
            self.unlogged = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_errors_is_logged_once_per_interval_and_its_end_once() {
        let mut log = ErrorLog::new("engine");
        let t0 = Instant::now();
        let logged: Vec<bool> = [0, 1, 10, 29, 30, 31, 59, 61]
            .iter()
            .map(|s| log.error_at(&"all brokers down", t0 + Duration::from_secs(*s)))
            .collect();
        assert_eq!(
            logged,
            [true, false, false, false, true, false, false, true]
        );
        log.ok();
        assert!(
            log.error_at(&"again", t0 + Duration::from_secs(62)),
            "a new run"
        );
        log.ok();
        log.ok();
        assert_eq!((log.logged, log.unlogged), (None, 0));
    }
}
