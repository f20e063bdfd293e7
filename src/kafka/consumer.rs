//! The one consumer of the Kafka edge. [`ConsumerSettings`] says what a consumer is for (a
//! group member or a reader that assigns partitions itself) and gives every consumer of
//! tickflow its librdkafka settings. [`drive`] runs a group member for a [`Stage`] (the
//! engine, the lake sink, `tail`): the poll loop, idleness at the end of the input, the
//! commit interval, the failure slot of the rebalance callback, and the assign and revoke
//! hooks, so each stage writes only what it does with records and when it commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, RebalanceProtocol,
};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Auth, AuthContext, EXPLAIN_EVERY, EndCheck, ErrorLog, KafkaError, client_config_with};
use crate::codec::SourceRecord;
use crate::config::KafkaConfig;

/// A partition: (topic, partition).
pub type Part = (String, i32);

/// A position to commit: (topic, partition, next offset).
pub type Position = (String, i32, i64);

/// The librdkafka settings of one of tickflow's consumers; the user's `kafka.properties`
/// are set over them.
#[derive(Debug, Clone)]
pub struct ConsumerSettings<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> ConsumerSettings<'a> {
    /// A member of consumer group `group`: it commits its positions itself (never
    /// automatically), starts a partition the group has no position for at its beginning,
    /// and rebalances cooperatively (a member keeps its other partitions while one moves).
    pub fn member(group: &'a str) -> Self {
        Self::with(&[
            ("group.id", group),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            ("fetch.wait.max.ms", "50"),
            ("partition.assignment.strategy", "cooperative-sticky"),
        ])
    }

    /// A reader that assigns partitions itself and never joins a group or commits.
    /// librdkafka assigns partitions only to a consumer with a group id ("Unknown group"
    /// otherwise): `label` is that id, and names the reader in the broker's logs.
    pub fn reader(label: &'a str) -> Self {
        Self::with(&[
            ("group.id", label),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
            ("fetch.wait.max.ms", "50"),
        ])
    }

    fn with(pairs: &[(&'a str, &'a str)]) -> Self {
        Self {
            pairs: pairs.to_vec(),
        }
    }

    /// Reads only committed transactions (what `exactly_once_v2` writers committed).
    pub fn read_committed(self) -> Self {
        self.set("isolation.level", "read_committed")
    }

    /// Reports the end of a partition as an error (`PartitionEOF`) when `on`.
    pub fn partition_eof(self, on: bool) -> Self {
        self.set("enable.partition.eof", if on { "true" } else { "false" })
    }

    /// Static group membership (`group.instance.id`) when `id` is set: a restarted member
    /// with the same id takes its partitions back at once instead of after the session
    /// timeout.
    pub fn static_member(self, id: Option<&'a str>) -> Self {
        match id {
            Some(id) => self.set("group.instance.id", id),
            None => self,
        }
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn set(mut self, key: &'a str, value: &'a str) -> Self {
        self.pairs.retain(|(k, _)| *k != key);
        self.pairs.push((key, value));
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The client configuration on the cluster of `cfg`.
    pub fn config(&self, cfg: &KafkaConfig) -> ClientConfig {
        client_config_with(cfg, &self.pairs)
    }

    /// A plain consumer with these settings, authenticated (see [`super::consumer`]).
    pub fn create(&self, cfg: &KafkaConfig) -> Result<BaseConsumer<AuthContext>, KafkaError> {
        super::consumer(cfg, &self.config(cfg))
    }
}

/// What a stage may ask of its consumer group from its hooks.
pub trait Group {
    /// Commits `positions` for the group; `wait` for the broker's answer, else in the
    /// background.
    fn commit(&self, positions: &[Position], wait: bool) -> Result<(), KafkaError>;
    /// The group's committed offset of each of `parts`, in order (`None`: none).
    fn committed(&self, parts: &[Part]) -> Result<Vec<Option<i64>>, KafkaError>;
    /// The group's metadata, which a transaction commits input positions under.
    fn metadata(&self) -> Option<ConsumerGroupMetadata>;
}

impl<C: ConsumerContext> Group for BaseConsumer<C> {
    fn commit(&self, positions: &[Position], wait: bool) -> Result<(), KafkaError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mode = if wait {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        Ok(Consumer::commit(self, &partition_list(positions)?, mode)?)
    }

    fn committed(&self, parts: &[Part]) -> Result<Vec<Option<i64>>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in parts {
            tpl.add_partition(topic, *p);
        }
        let got = self.committed_offsets(tpl, Duration::from_secs(30))?;
        Ok(parts
            .iter()
            .map(|(topic, p)| match got.find_partition(topic, *p)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .collect())
    }

    fn metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.group_metadata()
    }
}

/// A partition list of `positions`.
pub fn partition_list(positions: &[Position]) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, p, offset) in positions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}

/// Whether a stage goes on after a [`Stage::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep polling.
    Continue,
    /// Commit one last time and leave the group.
    Stop,
}

/// A stage run by [`drive`]: what it does with records, partitions and commits. Hooks run
/// on the polling thread, one at a time (rebalance hooks inside a poll).
pub trait Stage: Send + 'static {
    /// The stage's error; the driver's own failures are Kafka's.
    type Error: From<KafkaError> + Send + 'static;

    /// Partitions were assigned: opens them, and says where each resumes (in order;
    /// `None`: at the group's committed position, else at its beginning). By default every
    /// partition resumes at the group's position.
    fn assigned(
        &mut self,
        _group: &dyn Group,
        parts: &[Part],
    ) -> Result<Vec<Option<i64>>, Self::Error> {
        Ok(vec![None; parts.len()])
    }

    /// Partitions are being taken away. `lost`: they already belong to another member (the
    /// session expired), so nothing may be committed for them. By default nothing is done.
    fn revoked(
        &mut self,
        _group: &dyn Group,
        _parts: &[Part],
        _lost: bool,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// One record. Returns whether it is input: a record that is not (a watermark) does not
    /// end idleness.
    fn record(&mut self, record: &SourceRecord<'_>) -> Result<bool, Self::Error>;

    /// Where a partition nothing was read from yet starts, if the stage knows (a restored
    /// task's stored offset): for the check that the input is read to its end.
    fn next_offset(&self, _topic: &str, _partition: i32) -> Option<i64> {
        None
    }

    /// Called after every poll.
    fn tick(&mut self) -> Result<Flow, Self::Error> {
        Ok(Flow::Continue)
    }

    /// Commits what was processed; `last` before the member leaves the group.
    fn commit(&mut self, group: &dyn Group, last: bool) -> Result<(), Self::Error>;
}

/// How [`drive`] runs a stage.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// The stage's name in logs and in the lag gauge.
    pub name: &'static str,
    /// The topics to subscribe to.
    pub topics: Vec<String>,
    /// Longest time between commits while records arrive.
    pub commit_interval: Duration,
    /// Stop (after a final commit) when every assigned partition is read to its end and no
    /// input arrived for this long.
    pub stop_when_idle: Option<Duration>,
    /// Set while a stage upstream (in the same process) still writes the input: until it is
    /// cleared, the stage is never idle.
    pub upstream: Option<Arc<AtomicBool>>,
    /// The gauge each commit sets the partitions' lag in, labelled with `name`.
    pub lag: Option<prometheus::IntGaugeVec>,
}

impl DriveOptions {
    /// Options for stage `name` reading `topics`, committing every `commit_interval`,
    /// never stopping by itself.
    pub fn new(name: &'static str, topics: Vec<String>, commit_interval: Duration) -> Self {
        Self {
            name,
            topics,
            commit_interval,
            stop_when_idle: None,
            upstream: None,
            lag: None,
        }
    }

    fn upstream_running(&self) -> bool {
        self.upstream
            .as_ref()
            .is_some_and(|u| u.load(Ordering::Relaxed))
    }
}

/// The consumer context of a driven stage: the rebalance hooks and their failure slot.
struct DriverContext<S: Stage> {
    stage: Arc<Mutex<S>>,
    /// The first failure of a rebalance hook, for the loop to return.
    failure: Mutex<Option<S::Error>>,
    name: &'static str,
    auth: Auth,
}

crate::oauth_client_context!(DriverContext<S> where S: Stage);

impl<S: Stage> ConsumerContext for DriverContext<S> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                let code = rdkafka::types::RDKafkaErrorCode::from(other);
                Err(KafkaError::from(rdkafka::error::KafkaError::Rebalance(code)).into())
            }
        };
        if let Err(e) = result {
            lock(&self.failure).get_or_insert(e);
        }
    }
}

impl<S: Stage> DriverContext<S> {
    /// Opens the partitions in the stage, then assigns them where it says they resume
    /// (assigned even when the stage failed: the loop returns the failure).
    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), S::Error> {
        let parts = parts_of(tpl);
        tracing::info!(stage = self.name, partitions = %super::describe(&parts), "partitions assigned");
        let opened = lock(&self.stage)
            .assigned(consumer, &parts)
            .and_then(|resume| Ok(resume_at(tpl, &parts, &resume)?));
        let assigned = if cooperative(consumer) {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        };
        opened.and(assigned.map_err(|e| KafkaError::from(e).into()))
    }

    /// Closes the partitions in the stage, then gives them up.
    fn revoke(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Result<(), S::Error> {
        let (parts, lost) = (parts_of(tpl), consumer.assignment_lost());
        tracing::info!(stage = self.name, partitions = %super::describe(&parts), lost, "partitions revoked");
        let closed = lock(&self.stage).revoked(consumer, &parts, lost);
        let unassigned = if cooperative(consumer) {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        closed.and(unassigned.map_err(|e| KafkaError::from(e).into()))
    }
}

fn cooperative<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    )
}

/// (topic, partition) of each element of a partition list.
fn parts_of(tpl: &TopicPartitionList) -> Vec<Part> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// Sets where each of `parts` (the elements of `tpl`) resumes: `resume`, in the same order.
fn resume_at(
    tpl: &mut TopicPartitionList,
    parts: &[Part],
    resume: &[Option<i64>],
) -> Result<(), KafkaError> {
    for ((topic, p), next) in parts.iter().zip(resume) {
        if let Some(next) = next {
            tpl.set_partition_offset(topic, *p, Offset::Offset(*next))?;
        }
    }
    Ok(())
}

/// The record the stages see of a consumed message.
pub fn record_of<M: Message>(m: &M) -> SourceRecord<'_> {
    SourceRecord {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
        value: m.payload(),
        // The Kafka timestamp in UTC microseconds (0 if it has none).
        timestamp: m
            .timestamp()
            .to_millis()
            .map_or(0, |ms| ms.saturating_mul(1000)),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("a stage hook panicked")
}

/// Joins the group of `settings` on the cluster of `cfg` and feeds `stage` until `stop` is
/// set, the stage stops, or (with `stop_when_idle`) the input is idle; then commits one last
/// time. A failure of a hook ends the run without that commit. The caller keeps `stage` to
/// read what it did; the consumer has left the group when this returns.
pub fn drive<S: Stage>(
    cfg: &KafkaConfig,
    settings: &ConsumerSettings<'_>,
    stage: Arc<Mutex<S>>,
    options: &DriveOptions,
    stop: &AtomicBool,
) -> Result<(), S::Error> {
    let auth = Auth::of(cfg)?;
    let context = DriverContext {
        stage: stage.clone(),
        failure: Mutex::new(None),
        name: options.name,
        auth: auth.clone(),
    };
    let consumer: BaseConsumer<DriverContext<S>> = settings
        .config(cfg)
        .create_with_context(context)
        .map_err(KafkaError::from)?;
    auth.prime(consumer.client().native_client())?;
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(KafkaError::from)?;
    poll_loop(&consumer, &stage, options, stop)?;
    lock(&stage).commit(&consumer, true)
}

fn poll_loop<S: Stage>(
    consumer: &BaseConsumer<DriverContext<S>>,
    stage: &Mutex<S>,
    options: &DriveOptions,
    stop: &AtomicBool,
) -> Result<(), S::Error> {
    let (mut last_commit, mut uncommitted) = (Instant::now(), 0u64);
    // Time spent waiting for records that did not come (commits do not count as idle).
    let mut idle = Duration::ZERO;
    let (mut ends, mut errors) = (EndCheck::default(), ErrorLog::new(options.name));
    while !stop.load(Ordering::Relaxed) {
        let polled = Instant::now();
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                errors.ok();
                uncommitted += 1;
                if lock(stage).record(&record_of(&m))? {
                    idle = Duration::ZERO;
                }
            }
            Some(Err(e)) => errors.error(&e),
            // Idle only at the end of every assigned partition, with the upstream stage
            // done: joining the group, a restore, a slow fetch or an upstream stage still
            // producing is not idleness.
            None if options.stop_when_idle.is_some()
                && !options.upstream_running()
                && ends.at_end(consumer, |t, p| lock(stage).next_offset(t, p)) =>
            {
                idle += polled.elapsed()
            }
            None => {}
        }
        if options.stop_when_idle.is_some() {
            ends.explain(options.name, EXPLAIN_EVERY);
        }
        if let Some(f) = lock(&consumer.context().failure).take() {
            return Err(f);
        }
        let mut s = lock(stage);
        let flow = s.tick()?;
        if uncommitted > 0 && last_commit.elapsed() >= options.commit_interval {
            s.commit(consumer, false)?;
            if let Some(gauge) = &options.lag {
                super::report_lag(consumer, options.name, gauge);
            }
            (last_commit, uncommitted) = (Instant::now(), 0);
        }
        if flow == Flow::Stop || options.stop_when_idle.is_some_and(|d| idle >= d) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_replace_earlier_values_and_add_their_own() {
        let s = ConsumerSettings::member("app")
            .read_committed()
            .static_member(Some("host-a"))
            .partition_eof(true);
        assert_eq!(s.get("group.id"), Some("app"));
        assert_eq!(s.get("isolation.level"), Some("read_committed"));
        assert_eq!(s.get("group.instance.id"), Some("host-a"));
        assert_eq!(s.get("enable.partition.eof"), Some("true"));
        let eof = s.pairs.iter().filter(|(k, _)| *k == "enable.partition.eof");
        assert_eq!(eof.count(), 1, "one value per key");
        let r = ConsumerSettings::reader("tickflow-restore").static_member(None);
        assert_eq!(r.get("group.instance.id"), None);
        assert_eq!(
            r.get("auto.offset.reset"),
            None,
            "a reader says where it starts"
        );
    }

    #[test]
    fn the_users_properties_win_over_a_stages_settings() {
        let mut cfg = KafkaConfig::default();
        cfg.properties
            .insert("fetch.wait.max.ms".into(), "500".into());
        let c = ConsumerSettings::member("app").config(&cfg);
        assert_eq!(c.get("fetch.wait.max.ms"), Some("500"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
    }

    /// A stage that keeps what it is handed, commits its positions, and can refuse
    /// assignments.
    #[derive(Default)]
    struct Keep {
        records: Vec<(i32, i64, Vec<u8>)>,
        positions: std::collections::BTreeMap<Part, i64>,
        assigned: Vec<Part>,
        commits: Vec<bool>,
        refuse: bool,
    }

    impl Stage for Keep {
        type Error = KafkaError;

        fn assigned(
            &mut self,
            _: &dyn Group,
            parts: &[Part],
        ) -> Result<Vec<Option<i64>>, KafkaError> {
            if self.refuse {
                return Err(KafkaError::Auth {
                    message: "refused".into(),
                });
            }
            self.assigned.extend(parts.iter().cloned());
            Ok(vec![None; parts.len()])
        }

        fn revoked(&mut self, g: &dyn Group, parts: &[Part], lost: bool) -> Result<(), KafkaError> {
            if !lost {
                g.commit(&self.positions_of(parts), true)?;
            }
            Ok(())
        }

        fn record(&mut self, r: &SourceRecord<'_>) -> Result<bool, KafkaError> {
            let value = r.value.unwrap_or_default().to_vec();
            self.positions
                .insert((r.topic.to_string(), r.partition), r.offset + 1);
            let input = value != b"watermark";
            self.records.push((r.partition, r.offset, value));
            Ok(input)
        }

        fn commit(&mut self, g: &dyn Group, last: bool) -> Result<(), KafkaError> {
            self.commits.push(last);
            g.commit(&self.positions_of(&[]), last)
        }
    }

    impl Keep {
        /// The positions of `parts` (all when empty).
        fn positions_of(&self, parts: &[Part]) -> Vec<Position> {
            self.positions
                .iter()
                .filter(|(k, _)| parts.is_empty() || parts.contains(k))
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect()
        }
    }

    fn produce(cfg: &KafkaConfig, topic: &str, values: &[(i32, &[u8])]) {
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        let producer: ThreadedProducer<DefaultProducerContext> =
            super::super::client_config(cfg).create().unwrap();
        for (p, v) in values {
            let record = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(*p)
                .payload(*v)
                .key(b"k");
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    fn run(cfg: &KafkaConfig, stage: Keep) -> (Keep, Result<(), KafkaError>) {
        let stage = Arc::new(Mutex::new(stage));
        let mut options = DriveOptions::new("test", vec!["in".into()], Duration::from_millis(50));
        options.stop_when_idle = Some(Duration::from_millis(500));
        let settings = ConsumerSettings::member("g").set("session.timeout.ms", "6000");
        let done = drive(
            cfg,
            &settings,
            stage.clone(),
            &options,
            &AtomicBool::new(false),
        );
        let stage = std::mem::take(&mut *lock(&stage));
        (stage, done)
    }

    /// The driver on librdkafka's mock cluster: every record once, committed, resumed from
    /// the commit by the next member; a watermark is not input; a refused assignment fails
    /// the run.
    #[test]
    fn a_driven_stage_reads_everything_once_and_resumes_where_it_committed() {
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("in", 2, 1).unwrap();
        let cfg = KafkaConfig {
            bootstrap_servers: cluster.bootstrap_servers(),
            connect_timeout: Duration::from_secs(10),
            ..KafkaConfig::default()
        };
        let first: Vec<(i32, &[u8])> = vec![(0, b"a"), (1, b"b"), (0, b"c"), (1, b"watermark")];
        produce(&cfg, "in", &first);
        let (stage, done) = run(&cfg, Keep::default());
        done.unwrap();
        assert_eq!(stage.records.len(), 4, "{:?}", stage.records);
        let mut parts = stage.assigned.clone();
        parts.sort();
        assert_eq!(parts, [("in".to_string(), 0), ("in".to_string(), 1)]);
        assert_eq!(stage.commits.last(), Some(&true), "a last commit");
        let ends = [Some(2), Some(2)];
        let c = ConsumerSettings::member("g").create(&cfg).unwrap();
        assert_eq!(Group::committed(&c, &parts).unwrap(), ends);

        produce(&cfg, "in", &[(1, b"d")]);
        let (stage, done) = run(&cfg, Keep::default());
        done.unwrap();
        assert_eq!(stage.records, [(1, 2, b"d".to_vec())], "only what is new");

        let refusing = Keep {
            refuse: true,
            ..Keep::default()
        };
        let (stage, done) = run(&cfg, refusing);
        assert!(matches!(done, Err(KafkaError::Auth { .. })), "{done:?}");
        assert!(
            !stage.commits.contains(&true),
            "no last commit after a failure"
        );
    }
}
