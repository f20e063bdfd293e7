//! [`TopologyTestDriver`]: runs a topology on the engine core over an in-memory log, with no
//! broker, no registry and no threads, like Kafka Streams' `TopologyTestDriver`.
//!
//! ```no_run
//! use tickflow::codec::Tick;
//! use tickflow::topology::driver::TopologyTestDriver;
//!
//! let mut driver = TopologyTestDriver::from_file("topologies/ohlc_vwap.yaml".as_ref()).unwrap();
//! let tick = Tick {
//!     symbol: "AAPL".into(),
//!     venue: "XNAS".into(),
//!     price: 190.5,
//!     size: 100,
//!     event_time: 1_700_000_000_000_000,
//!     trade_id: 1,
//!     side: "B".into(),
//!     conditions: vec![],
//!     currency: "USD".into(),
//! };
//! driver.pipe_ticks(&[tick]).unwrap();
//! // Stream time passes the window's end and its grace: the one-minute bar closes.
//! driver.pipe_watermark(1_700_000_000_000_000 + 120_000_000).unwrap();
//! let bars = driver.bars("bars.1m").unwrap();
//! assert_eq!(bars[0].volume, 100);
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::edge::partition_of;
use super::engine::{CommitStep, Engine, EngineSetup, RunStats, RuntimeError};
use super::memory::{LogRecord, MemoryCluster, MemoryLog};
use super::plan::{Plan, key_of};
use super::reset::{TaskReset, apply_reset, plan_reset};
use super::routing::TickDecoder;
use crate::codec::{
    Bar, CodecError, DeadLetter, Decoder, Encoder, Reason, RecordKind, SourceRecord, Tick,
    WATERMARK_KEY, watermark_value,
};
use crate::config::topology::ValidationErrors;
use crate::config::topology::{ProcessingGuarantee, TopologySpec};
use crate::metrics::Metrics;

/// Schema ids the driver's built-in registry gives ticks, bars and envelopes.
const TICK_ID: u32 = 1;
const BAR_ID: u32 = 2;
const ENVELOPE_ID: u32 = 3;

/// Errors of the test driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The topology file is not valid.
    #[error("{0}")]
    Topology(#[from] ValidationErrors),
    /// The engine failed (or crashed on purpose, see [`TopologyTestDriver::crash_in_next_commit`]).
    #[error(transparent)]
    Engine(#[from] RuntimeError),
    /// A record could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The driver's state directory cannot be made.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A topic the topology does not have.
    #[error("no topic {0} in this topology")]
    NoTopic(String),
    /// The engine stopped after a failure; `restart` it.
    #[error("the engine is stopped; call restart()")]
    Stopped,
}

impl crate::error::Classified for DriverError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            DriverError::Topology(e) => e.class(),
            DriverError::Engine(e) => e.class(),
            DriverError::Codec(e) => e.class(),
            DriverError::StateDir { .. } => crate::error::ErrorClass::External,
            _ => crate::error::ErrorClass::User,
        }
    }
}

/// How [`TopologyTestDriver::restart`] restarts, as after a SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// Keep the local state stores (false: the state directory is wiped, and tasks restore
    /// from their changelogs).
    pub keep_local_state: bool,
    /// Records sent and not yet acknowledged reached the log (true) or were lost (false).
    pub keep_unacknowledged: bool,
}

impl Default for Restart {
    fn default() -> Self {
        Self {
            keep_local_state: true,
            keep_unacknowledged: true,
        }
    }
}

/// Runs a topology in memory: pipe ticks (or raw records, or watermarks) into its input
/// topic, read what it wrote to each output topic, commit, crash and restart.
///
/// Every pipe call processes everything the input holds (and what a `group_by` wrote to its
/// repartition topic) and then commits, unless [`TopologyTestDriver::set_auto_commit`] turned
/// that off. Ticks are keyed by symbol and partitioned like the Java client does.
pub struct TopologyTestDriver {
    plan: Plan,
    log: Arc<MemoryLog>,
    /// Partitions of the input topic (and of every topic the engine creates).
    partitions: i32,
    engine: Option<Engine>,
    /// Where each assigned input partition goes on reading.
    positions: Vec<((String, i32), i64)>,
    state_dir: PathBuf,
    ticks: Encoder<Tick>,
    auto_commit: bool,
    /// The Kafka timestamp of records piped in, if set (else each record's own time).
    record_timestamp: Option<i64>,
    /// Totals of the engine runs before the last restart.
    earlier: RunStats,
}

impl TopologyTestDriver {
    /// A driver for the topology in `path`, whose input has one partition (stream time is
    /// then simply the newest event time piped in).
    pub fn from_file(path: &Path) -> Result<Self, DriverError> {
        Self::new(&TopologySpec::load(path)?, 1)
    }

    /// A driver for `spec` whose input topic has `partitions` partitions.
    pub fn new(spec: &TopologySpec, partitions: i32) -> Result<Self, DriverError> {
        let plan = Plan::of(spec).map_err(RuntimeError::from)?;
        let log = Arc::new(MemoryLog::default());
        log.create(&plan.input_topic, partitions);
        for topic in plan.produced_topics() {
            log.create(&topic, partitions);
        }
        for topic in plan.changelog_topics() {
            log.create(&topic, partitions);
        }
        Self::started(plan, log, partitions, true)
    }

    /// A driver on `log` with a new state directory, its engine started.
    fn started(
        plan: Plan,
        log: Arc<MemoryLog>,
        partitions: i32,
        auto_commit: bool,
    ) -> Result<Self, DriverError> {
        let state_dir =
            std::env::temp_dir().join(format!("tickflow-driver-{}", uuid::Uuid::new_v4()));
        let mut driver = Self {
            plan,
            log,
            partitions,
            engine: None,
            positions: Vec::new(),
            state_dir,
            ticks: Encoder::new(RecordKind::Tick, TICK_ID),
            auto_commit,
            record_timestamp: None,
            earlier: RunStats::default(),
        };
        driver.start()?;
        Ok(driver)
    }

    /// A second instance of the application on the same log, with a state directory of its
    /// own, assigned every input partition, as when the consumer group gave this instance's
    /// partitions to another while this one did not notice (a zombie: paused for longer than
    /// its session timeout). It restores the last commits, reads back what was written since,
    /// and claims each changelog partition; this instance, if it goes on, finds the claim at
    /// its next commit and stops with [`RuntimeError::Fenced`]. Both can be driven.
    pub fn another_instance(&self) -> Result<Self, DriverError> {
        let (plan, log) = (self.plan.clone(), self.log.clone());
        Self::started(plan, log, self.partitions, self.auto_commit)
    }

    /// The changelog topics of the topology's state stores.
    pub fn changelog_topics(&self) -> Vec<String> {
        self.plan.changelog_topics()
    }

    /// The in-memory log every topic lives in: to read any topic, or to append to one as
    /// another writer would.
    pub fn log(&self) -> Arc<MemoryLog> {
        self.log.clone()
    }

    /// Whether each pipe call ends with a commit (the default).
    pub fn set_auto_commit(&mut self, on: bool) {
        self.auto_commit = on;
    }

    /// The Kafka timestamp (UTC microseconds, kept to the millisecond like Kafka's) of the
    /// records piped from now on, as a producer's clock would set it. Unset (the default), a
    /// tick is stamped with its event time, a watermark with its time and a raw record with
    /// none (0), so no tick or watermark is ahead of its record.
    pub fn set_record_timestamp(&mut self, timestamp: Option<i64>) {
        self.record_timestamp = timestamp.map(|t| t.div_euclid(1000) * 1000);
    }

    /// The timestamp of a record piped in whose own time is `time` (0: none).
    fn stamp(&self, time: i64) -> i64 {
        self.record_timestamp
            .unwrap_or(time.div_euclid(1000) * 1000)
    }

    /// Starts an engine on the log and the state directory, assigned every input partition.
    fn start(&mut self) -> Result<(), DriverError> {
        std::fs::create_dir_all(&self.state_dir).map_err(|source| DriverError::StateDir {
            path: self.state_dir.clone(),
            source,
        })?;
        let transactional = self.plan.guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let cluster = Arc::new(MemoryCluster::new(self.log.clone(), transactional));
        let mut decoder = Decoder::new(RecordKind::Tick);
        decoder.learn(TICK_ID, RecordKind::Tick.schema_text())?;
        let bar_encoders = self
            .plan
            .bar_topics
            .iter()
            .flatten()
            .map(|t| (t.clone(), Encoder::new(RecordKind::Bar, BAR_ID)))
            .collect();
        let output_ends = (!transactional).then(|| self.output_ends());
        let mut engine = Engine::new(EngineSetup {
            plan: self.plan.clone(),
            partitions: self.partitions,
            state_dir: self.state_dir.clone(),
            cluster,
            bar_encoders,
            dead_letters: Encoder::new(RecordKind::DeadLetter, ENVELOPE_ID),
            ticks: TickDecoder::with_schemas(decoder),
            metrics: Metrics::new(),
            // The previous engine is gone (crashed or dropped): nobody to wait for.
            handover_timeout: Duration::ZERO,
            cleanup_delay: Duration::MAX,
            output_ends,
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })?;
        let parts: Vec<(String, i32)> = engine
            .input_topics()
            .into_iter()
            .flat_map(|t| (0..self.partitions).map(move |p| (t.clone(), p)))
            .collect();
        let resume = engine.assign(&parts)?;
        self.positions = parts
            .into_iter()
            .zip(resume)
            .map(|(part, next)| (part, next.unwrap_or(0)))
            .collect();
        self.engine = Some(engine);
        Ok(())
    }

    /// The end of every output partition now.
    fn output_ends(&self) -> Vec<crate::kafka::PartitionEnd> {
        let topics = self.plan.produced_topics();
        topics
            .iter()
            .flat_map(|t| (0..self.partitions).map(move |p| (t.clone(), p)))
            .map(|(t, p)| {
                let end = self.log.end(&t, p);
                ((t, p), end)
            })
            .collect()
    }

    /// Pipes ticks into the input topic, keyed like the topology's source key, then
    /// processes them (and commits, see [`TopologyTestDriver::set_auto_commit`]).
    pub fn pipe_ticks(&mut self, ticks: &[Tick]) -> Result<(), DriverError> {
        let mut value = Vec::new();
        for tick in ticks {
            value.clear();
            self.ticks.encode_into(tick, &mut value)?;
            let key = key_of(tick, &self.plan.source_key);
            let p = partition_of(key.as_bytes(), self.partitions);
            let time = self.stamp(tick.event_time);
            self.log.append(
                &self.plan.input_topic,
                p,
                Some(key.as_bytes()),
                Some(&value),
                time,
            );
        }
        self.run()
    }

    /// Pipes one raw record (bad data, for example) into a partition of the input topic.
    pub fn pipe_record(
        &mut self,
        partition: i32,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), DriverError> {
        let topic = self.plan.input_topic.clone();
        self.log
            .append(&topic, partition, Some(key), Some(value), self.stamp(0))
            .ok_or(DriverError::NoTopic(format!("{topic}-{partition}")))?;
        self.run()
    }

    /// Pipes a watermark at `event_time` (UTC microseconds) into every input partition: stream
    /// time advances there as if a tick of that time had arrived, and windows close.
    pub fn pipe_watermark(&mut self, event_time: i64) -> Result<(), DriverError> {
        let time = self.stamp(event_time);
        for p in 0..self.partitions {
            let value = watermark_value(event_time);
            let topic = &self.plan.input_topic;
            self.log
                .append(topic, p, Some(WATERMARK_KEY), Some(&value), time);
        }
        self.run()
    }

    fn engine(&mut self) -> Result<&mut Engine, DriverError> {
        self.engine.as_mut().ok_or(DriverError::Stopped)
    }

    /// Processes every unread record of every input partition, the repartition topic's
    /// included, until none is left; then commits if auto-commit is on.
    pub fn run(&mut self) -> Result<(), DriverError> {
        loop {
            let mut progressed = false;
            for i in 0..self.positions.len() {
                let ((topic, p), from) = self.positions[i].clone();
                let records = self.log.read(&topic, p, from);
                for (offset, r) in (from..).zip(&records) {
                    let record = source_record(&topic, p, offset, r);
                    let processed = self.engine()?.process(&record);
                    self.positions[i].1 = offset + 1;
                    self.failed(processed)?;
                }
                progressed |= !records.is_empty();
            }
            if !progressed {
                break;
            }
        }
        if self.auto_commit {
            self.commit()?;
        }
        Ok(())
    }

    /// Stops the engine if `result` is an error (as the process would stop).
    fn failed<T>(&mut self, result: Result<T, RuntimeError>) -> Result<T, DriverError> {
        if result.is_err()
            && let Some(engine) = self.engine.take()
        {
            add_stats(&mut self.earlier, &engine.stats);
        }
        Ok(result?)
    }

    /// Commits: flushes outputs, writes changelogs and local stores.
    pub fn commit(&mut self) -> Result<(), DriverError> {
        let committed = self.engine()?.commit(false);
        self.failed(committed)
    }

    /// Makes the next commit fail at `step`, as a SIGKILL there would: the engine stops, and
    /// [`TopologyTestDriver::restart`] brings up a new one.
    pub fn crash_in_next_commit(&mut self, step: CommitStep) -> Result<(), DriverError> {
        self.engine()?.crash_at = Some(step);
        Ok(())
    }

    /// Kills the engine (without a commit) if it runs, starts a new one from what was
    /// committed, and processes what the input holds, as a restarted process would.
    pub fn restart(&mut self, how: Restart) -> Result<(), DriverError> {
        if let Some(engine) = self.engine.take() {
            add_stats(&mut self.earlier, &engine.stats);
        }
        self.log.crash(how.keep_unacknowledged);
        if !how.keep_local_state {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
        self.start()?;
        self.run()
    }

    /// Resets the application as `tickflow reset --execute` does, after stopping the engine
    /// with its final commit: each changelog partition gets a commit that deletes every key
    /// (see [`super::reset`]), the state directory is deleted, and a new engine starts with
    /// empty state at the beginning of the input. Call [`TopologyTestDriver::run`] to
    /// process it again; output topics are not reset, so the outputs are written again.
    /// Returns the reset of each task.
    pub fn reset(&mut self) -> Result<Vec<TaskReset>, DriverError> {
        if let Some(mut engine) = self.engine.take() {
            let stopped = engine.commit(true);
            add_stats(&mut self.earlier, &engine.stats);
            stopped?;
        }
        let cluster = MemoryCluster::new(self.log.clone(), false);
        let log = self.log.clone();
        let exists = |topic: &str| log.partitions(topic) > 0;
        let resets = plan_reset(&self.plan, &cluster, self.partitions, exists)?;
        apply_reset(&resets, &cluster)?;
        let _ = std::fs::remove_dir_all(&self.state_dir);
        self.start()?;
        Ok(resets)
    }

    /// Totals over every engine run so far.
    pub fn stats(&self) -> RunStats {
        let mut total = self.earlier.clone();
        if let Some(engine) = &self.engine {
            add_stats(&mut total, &engine.stats);
        }
        total
    }

    /// The records of a topic, as (partition, offset, record).
    pub fn records(&self, topic: &str) -> Result<Vec<(i32, i64, LogRecord)>, DriverError> {
        if self.log.partitions(topic) == 0 {
            return Err(DriverError::NoTopic(topic.into()));
        }
        Ok(self.log.topic(topic))
    }

    /// The bars written to a bar topic, partition by partition, in offset order.
    pub fn bars(&self, topic: &str) -> Result<Vec<Bar>, DriverError> {
        let mut decoder = Decoder::new(RecordKind::Bar);
        decoder.learn(BAR_ID, RecordKind::Bar.schema_text())?;
        self.decode_all(topic, &decoder)
    }

    /// The late-tick envelopes written to the late topic.
    pub fn late(&self) -> Result<Vec<DeadLetter>, DriverError> {
        self.envelopes(&self.plan.late_topic.clone())
    }

    /// The envelopes written to the dead-letter topic.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, DriverError> {
        self.envelopes(&self.plan.dlq_topic.clone())
    }

    fn envelopes(&self, topic: &str) -> Result<Vec<DeadLetter>, DriverError> {
        let mut decoder = Decoder::new(RecordKind::DeadLetter);
        decoder.learn(ENVELOPE_ID, RecordKind::DeadLetter.schema_text())?;
        let all = self.decode_all(topic, &decoder)?;
        // Late and dead-letter envelopes may share a topic.
        let late = topic == self.plan.late_topic;
        let dlq = topic == self.plan.dlq_topic;
        Ok(all
            .into_iter()
            .filter(|d: &DeadLetter| {
                (late && d.reason == Reason::Late.as_str())
                    || (dlq && d.reason != Reason::Late.as_str())
            })
            .collect())
    }

    fn decode_all<T: serde::de::DeserializeOwned>(
        &self,
        topic: &str,
        decoder: &Decoder<T>,
    ) -> Result<Vec<T>, DriverError> {
        let mut out = Vec::new();
        for (_, _, r) in self.records(topic)? {
            if let Some(value) = &r.value {
                out.push(decoder.decode(value)?);
            }
        }
        Ok(out)
    }
}

impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        self.engine = None;
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// The record the engine core sees of a logged one.
fn source_record<'a>(
    topic: &'a str,
    partition: i32,
    offset: i64,
    r: &'a LogRecord,
) -> SourceRecord<'a> {
    SourceRecord {
        topic,
        partition,
        offset,
        key: r.key.as_deref(),
        value: r.value.as_deref(),
        timestamp: r.timestamp,
    }
}

/// Adds the totals of one run to `total`.
fn add_stats(total: &mut RunStats, run: &RunStats) {
    total.records += run.records;
    total.bars += run.bars;
    total.late += run.late;
    total.dead_letters += run.dead_letters;
    total.filtered += run.filtered;
    total.forwarded += run.forwarded;
    total.idle_watermarks += run.idle_watermarks;
    total.broadcasts += run.broadcasts;
    total.repartition_records += run.repartition_records;
    total.duplicates += run.duplicates;
    total.suppressed += run.suppressed;
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "application: m\nsources:\n  ticks: { topic: ticks }\noperators:\n  - window:\n      id: bars\n      input: ticks\n      tumbling: [1m]\n      grace: 2s\n      aggregates: [open, close, volume]\nsinks:\n  - { input: bars, topic: \"bars.{resolution}\" }\n";

    fn tick(symbol: &str) -> Tick {
        Tick {
            symbol: symbol.into(),
            venue: "XNAS".into(),
            price: 10.0,
            size: 1,
            event_time: 1_700_000_000_000_000,
            trade_id: 1,
            side: "B".into(),
            conditions: vec![],
            currency: "USD".into(),
        }
    }

    /// The per-task gauges of partition `p` of `ticks` in a scrape, and whether its record
    /// counter is there.
    fn task_series(text: &str, p: i32) -> (Vec<&str>, bool) {
        let label = format!("partition=\"{p}\"");
        let (counters, gauges) = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(&label) && l.contains("topic=\"ticks\""))
            .partition::<Vec<&str>, _>(|l| l.starts_with("tickflow_records_total"));
        (gauges, counters.len() == 1)
    }

    /// A task that moves to another instance takes its gauges (open windows, store size,
    /// event-time lag, consumer lag) with it, and leaves its record counter; at the last
    /// commit they stay for the final scrape.
    #[test]
    fn a_moved_task_leaves_no_series_and_a_stopping_engine_keeps_them() {
        let spec = TopologySpec::parse("m.yaml", YAML).unwrap();
        let mut driver = TopologyTestDriver::new(&spec, 2).unwrap();
        let symbols = [
            "AAPL", "MSFT", "IBM", "GOOG", "AMZN", "META", "NVDA", "TSLA",
        ];
        driver.pipe_ticks(&symbols.map(tick)).unwrap();
        let engine = driver.engine.as_mut().unwrap();
        let text = engine.metrics.render();
        for p in [0, 1] {
            let (gauges, counter) = task_series(&text, p);
            assert_eq!((gauges.len(), counter), (3, true), "partition {p}:\n{text}");
        }
        engine.revoke(&[("ticks".into(), 0)], false).unwrap();
        let text = engine.metrics.render();
        assert_eq!(task_series(&text, 0), (vec![], true), "{text}");
        assert_eq!(task_series(&text, 1).0.len(), 3, "{text}");
        engine.commit(true).unwrap();
        engine.revoke(&[("ticks".into(), 1)], false).unwrap();
        assert_eq!(task_series(&engine.metrics.render(), 1).0.len(), 3);
    }
}
