//! Drives a tick sequence into Kafka: encode in the Confluent wire format, key by symbol,
//! produce, optionally paced to a rate and bounded by wall-clock time.

use std::time::{Duration, Instant};

use crate::codec::{Encoder, Tick, WATERMARK_KEY, watermark_value};
use crate::config::KafkaConfig;
use crate::kafka;
use crate::kafka::KafkaSink;

use super::SimError;

/// When to stop and how fast to go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// Ticks per wall-clock second; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this much wall-clock time.
    pub duration: Option<Duration>,
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Ticks handed to the producer (all acknowledged once the run returns).
    pub ticks: u64,
    /// Bytes of encoded values.
    pub bytes: u64,
    /// Smallest and largest event time produced, UTC microseconds.
    pub event_time_range: Option<(i64, i64)>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl RunSummary {
    /// Ticks per wall-clock second.
    pub fn rate(&self) -> f64 {
        self.ticks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Encodes and produces every tick of `ticks` (until the pace's duration is over), waits for
/// all acknowledgements, and reports. `progress` is called about every 16k ticks.
pub fn produce_ticks(
    ticks: impl Iterator<Item = Tick>,
    encoder: &Encoder<Tick>,
    sink: &KafkaSink,
    pace: Pace,
    mut progress: impl FnMut(&RunSummary),
) -> Result<RunSummary, SimError> {
    let start = Instant::now();
    let mut summary = RunSummary::default();
    let mut buf = Vec::with_capacity(128);
    for tick in ticks {
        encoder.encode_into(&tick, &mut buf)?;
        sink.send(tick.symbol.as_bytes(), &buf)?;
        summary.ticks += 1;
        summary.bytes += buf.len() as u64;
        summary.event_time_range = Some(match summary.event_time_range {
            None => (tick.event_time, tick.event_time),
            Some((lo, hi)) => (lo.min(tick.event_time), hi.max(tick.event_time)),
        });
        if summary.ticks.is_multiple_of(1024)
            && should_stop(&mut summary, start, pace, &mut progress)
        {
            break;
        }
    }
    sink.flush(Duration::from_secs(60))?;
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// Sleeps to keep to the rate, reports progress, and says whether the duration is over.
fn should_stop(
    summary: &mut RunSummary,
    start: Instant,
    pace: Pace,
    progress: &mut impl FnMut(&RunSummary),
) -> bool {
    if let Some(rate) = pace.rate {
        let due = Duration::from_secs_f64(summary.ticks as f64 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    summary.elapsed = start.elapsed();
    if summary.ticks.is_multiple_of(16_384) {
        progress(summary);
    }
    pace.duration.is_some_and(|d| summary.elapsed >= d)
}

/// Ends the input of a run: writes a watermark one day past the last event time to every
/// partition of `topic`, so that a topology closes every window of up to a day (plus grace).
pub fn end_of_input(
    kafka_cfg: &KafkaConfig,
    topic: &str,
    summary: &RunSummary,
) -> Result<(), SimError> {
    let Some((_, last)) = summary.event_time_range else {
        return Ok(());
    };
    let t = last + 86_400_000_000;
    let sink = KafkaSink::new(kafka_cfg, topic)?;
    // Stamped with its own time: a marker standing for a day after the input, not a record
    // from the future (the engine refuses those).
    let value = watermark_value(t);
    for p in 0..kafka::partition_count(kafka_cfg, topic)? {
        sink.send_to_partition_at(topic, p, WATERMARK_KEY, &value, t.div_euclid(1000))?;
    }
    sink.flush(Duration::from_secs(30))?;
    Ok(())
}
