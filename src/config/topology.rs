//! Topology YAML: what one application computes. Parsed with every structural error located
//! (file:line:column and field), then validated without IO, reporting every problem at once.
//!
//! ```yaml
//! application: ohlc-vwap
//! sources:
//!   ticks: { topic: ticks.raw }
//! operators:
//!   - window:
//!       id: bars
//!       input: ticks
//!       tumbling: [1s, 1m, 5m, 1h]
//!       grace: 5s
//!       aggregates: [open, high, low, close, volume, vwap, trade_count]
//!       late_topic: ticks.late
//! sinks:
//!   - { input: bars, topic: "bars.{resolution}" }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::ConfigError;
use super::lake::LakeSpec;
use super::locate::Locations;

/// One application: its sources, operators and sinks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Application id: names the consumer group, internal topics and state directory.
    pub application: String,
    /// What a crash may do to the outputs (see `docs/delivery.md`). State is exactly-once
    /// under both.
    #[serde(default)]
    pub processing_guarantee: ProcessingGuarantee,
    /// Named input streams, each read from a Kafka topic.
    pub sources: BTreeMap<String, SourceSpec>,
    /// Steps, each reading one named stream and producing the stream named by its id.
    #[serde(default)]
    pub operators: Vec<OperatorEntry>,
    /// Streams written to Kafka topics.
    #[serde(default)]
    pub sinks: Vec<SinkSpec>,
    /// Topics landed as Avro files in a lake and registered in a catalog.
    #[serde(default)]
    pub lake: Option<LakeSpec>,
}

/// A Kafka topic read as a stream of ticks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Topic to consume.
    pub topic: String,
    /// Value format of the topic.
    #[serde(default)]
    pub format: ValueFormat,
    /// Field whose value is the record key.
    #[serde(default = "default_key")]
    pub key: String,
    /// Field holding the event time.
    #[serde(default = "default_event_time")]
    pub event_time: String,
    /// For live feeds: when a partition has had no record for this long (wall clock), the
    /// engine appends a watermark record to that partition at its stream time plus the quiet
    /// time, so windows close when the market closes. Being in the log, it keeps results
    /// deterministic on replay. Needs write access to the topic. Off by default.
    #[serde(default)]
    pub idle_watermark: Option<DurationLit>,
    /// A tick whose event time is further than this behind its partition's stream time is
    /// implausible (a broken clock, a unit mistake) and goes to the dead-letter topic; one
    /// within it but behind a closed window is late. So is one further ahead of stream time,
    /// if it was produced longer than this after its event time (a backfill: no clock to
    /// judge it by) or has no timestamp; a live tick may be (the first after a weekend).
    #[serde(default = "default_max_event_time_skew")]
    pub max_event_time_skew: DurationLit,
    /// A tick or watermark whose event time is further than this after its record's Kafka
    /// timestamp (when the producer sent it, or when the broker appended it under
    /// `LogAppendTime`) is implausible and goes to the dead-letter topic, so that no record
    /// from the future, the first of a partition included, can move stream time ahead and
    /// make good ticks late. A replay repeats the timestamp, so the verdict too.
    #[serde(default = "default_max_event_time_ahead")]
    pub max_event_time_ahead: DurationLit,
}

fn default_max_event_time_skew() -> DurationLit {
    DurationLit {
        text: "1d".into(),
        value: Duration::from_secs(86_400),
    }
}

fn default_max_event_time_ahead() -> DurationLit {
    DurationLit {
        text: "5m".into(),
        value: Duration::from_secs(300),
    }
}

fn default_key() -> String {
    "symbol".into()
}

fn default_event_time() -> String {
    "event_time".into()
}

/// The delivery guarantee of the engine's outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    /// Works on any Kafka-protocol broker: state and input positions commit atomically
    /// through sealed changelogs; after a crash, bars since the last commit are emitted
    /// again, identically (consumers deduplicate by bar identity).
    #[default]
    AtLeastOnce,
    /// Kafka transactions: outputs, changelog records and input offsets of a commit become
    /// visible together or not at all (to `read_committed` consumers), and a zombie
    /// instance is fenced. Needs a broker with transactions (Apache Kafka, MSK).
    ExactlyOnceV2,
}

/// How record values are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// Avro in the Confluent wire format, schemas from the registry.
    #[default]
    Avro,
}

/// One operator, written as a single-key map: `- window: {...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct OperatorEntry(pub OperatorSpec);

impl std::ops::Deref for OperatorEntry {
    type Target = OperatorSpec;
    fn deref(&self) -> &OperatorSpec {
        &self.0
    }
}

/// The operators.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorSpec {
    /// Keeps the records for which every condition holds.
    Filter(FilterSpec),
    /// Re-keys the stream by another field, repartitioning through an internal topic.
    GroupBy(GroupBySpec),
    /// Windowed aggregation into bars.
    Window(WindowSpec),
}

impl OperatorSpec {
    /// The operator's id, which is also the name of the stream it produces.
    pub fn id(&self) -> &str {
        match self {
            OperatorSpec::Filter(f) => &f.id,
            OperatorSpec::GroupBy(g) => &g.id,
            OperatorSpec::Window(w) => &w.id,
        }
    }

    /// The stream it reads.
    pub fn input(&self) -> &str {
        match self {
            OperatorSpec::Filter(f) => &f.input,
            OperatorSpec::GroupBy(g) => &g.input,
            OperatorSpec::Window(w) => &w.input,
        }
    }

    /// The YAML key of the operator kind.
    pub fn kind(&self) -> &'static str {
        match self {
            OperatorSpec::Filter(_) => "filter",
            OperatorSpec::GroupBy(_) => "group_by",
            OperatorSpec::Window(_) => "window",
        }
    }
}

/// `filter`: keeps records for which all conditions hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Id, and the name of the output stream.
    pub id: String,
    /// Input stream.
    pub input: String,
    /// Conditions, all of which must hold.
    #[serde(rename = "where")]
    pub conditions: Vec<Condition>,
}

/// One comparison of a field with a constant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Tick field.
    pub field: String,
    /// Comparison.
    pub op: CompareOp,
    /// Constant: a number, a string, or a list of them for `in`.
    pub value: serde_json::Value,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// At most.
    Le,
    /// Greater than.
    Gt,
    /// At least.
    Ge,
    /// One of a list.
    In,
}

/// `group_by`: re-keys by a field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBySpec {
    /// Id, and the name of the output stream.
    pub id: String,
    /// Input stream.
    pub input: String,
    /// Field whose value becomes the key.
    pub field: String,
}

/// `window`: event-time windows aggregated into bars.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Id, and the name of the output stream.
    pub id: String,
    /// Input stream.
    pub input: String,
    /// Tumbling window sizes, e.g. `[1s, 1m, 5m]`.
    #[serde(default)]
    pub tumbling: Vec<DurationLit>,
    /// Hopping windows: size and advance.
    #[serde(default)]
    pub hopping: Vec<HoppingSpec>,
    /// Session windows: a gap of inactivity closes the session.
    pub session: Option<SessionSpec>,
    /// How long after a window's end ticks are still accepted.
    #[serde(default)]
    pub grace: DurationLit,
    /// What each bar holds: names, or single-key maps for field aggregates (`{max: price}`).
    pub aggregates: Vec<Aggregate>,
    /// When bars are emitted.
    #[serde(default)]
    pub emit: Emit,
    /// Topic that receives ticks for windows already closed.
    pub late_topic: Option<String>,
}

/// A hopping window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoppingSpec {
    /// Window length.
    pub size: DurationLit,
    /// Distance between window starts.
    pub advance: DurationLit,
}

/// A session window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Inactivity that ends a session.
    pub gap: DurationLit,
}

/// Emit policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// Once, when the window closes.
    #[default]
    Final,
    /// The current bar, at most once per interval per key while the window is open.
    Update(DurationLit),
}

/// Aggregates a bar can hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Price of the earliest tick by event time (ties by offset).
    Open,
    /// Highest price.
    High,
    /// Lowest price.
    Low,
    /// Price of the latest tick by event time (ties by offset).
    Close,
    /// Sum of sizes.
    Volume,
    /// Volume-weighted average price.
    Vwap,
    /// Number of ticks.
    TradeCount,
    /// Sum of price times size.
    Turnover,
    /// Minimum of a numeric field.
    Min(String),
    /// Maximum of a numeric field.
    Max(String),
    /// Sum of a numeric field.
    Sum(String),
    /// Mean of a numeric field.
    Mean(String),
}

impl Aggregate {
    /// For a field aggregate, its name in a bar's `extras` (`max_price`); `None` for the
    /// standard ones, which every bar carries.
    pub fn extra_name(&self) -> Option<String> {
        match self {
            Aggregate::Min(f) => Some(format!("min_{f}")),
            Aggregate::Max(f) => Some(format!("max_{f}")),
            Aggregate::Sum(f) => Some(format!("sum_{f}")),
            Aggregate::Mean(f) => Some(format!("mean_{f}")),
            _ => None,
        }
    }
}

/// A stream written to Kafka.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// Stream to write.
    pub input: String,
    /// Topic; `{resolution}` is replaced by the window's resolution (`bars.{resolution}`).
    pub topic: String,
    /// Value format.
    #[serde(default)]
    pub format: ValueFormat,
}

/// A duration as written (`5m`), with its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DurationLit {
    /// The text in the YAML, used in names such as `bars.5m`.
    pub text: String,
    /// The value.
    pub value: Duration,
}

impl<'de> Deserialize<'de> for DurationLit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let value = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration like 500ms, 5s, 1m, 1h ({e})"
            ))
        })?;
        Ok(Self { text, value })
    }
}

impl fmt::Display for DurationLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Every problem `tickflow validate` found, each located.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ValidationErrors(pub Vec<ConfigError>);

/// Numeric fields that `min`, `max`, `sum` and `mean` aggregate.
pub const AGGREGATABLE: [&str; 2] = ["price", "size"];

/// Tick fields a topology may refer to, and whether they are numeric.
const TICK_FIELDS: [(&str, bool); 9] = [
    ("symbol", false),
    ("venue", false),
    ("price", true),
    ("size", true),
    ("event_time", true),
    ("trade_id", true),
    ("side", false),
    ("conditions", false),
    ("currency", false),
];

impl TopologySpec {
    /// Parses and validates the topology in `text` (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, ValidationErrors> {
        let spec: TopologySpec =
            super::parse_yaml(file, text).map_err(|e| ValidationErrors(vec![e]))?;
        let problems = spec.validate();
        if problems.is_empty() {
            return Ok(spec);
        }
        let at = Locations::of(text);
        let errors = problems
            .into_iter()
            .map(|(field, message)| {
                let (line, column) = at.find(&field);
                ConfigError::Invalid {
                    file: file.into(),
                    line,
                    column,
                    field,
                    message,
                }
            })
            .collect();
        Err(ValidationErrors(errors))
    }

    /// Reads and validates a topology file.
    pub fn load(path: &std::path::Path) -> Result<Self, ValidationErrors> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            ValidationErrors(vec![ConfigError::Read {
                file: path.display().to_string(),
                source,
            }])
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Every semantic problem, as (field path, message); no IO.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.application.is_empty()
            || !self
                .application
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            out.push((
                "application".into(),
                "must be non-empty and use only letters, digits, `.`, `_` and `-`".into(),
            ));
        }
        if self.sources.is_empty() {
            out.push(("sources".into(), "at least one source is needed".into()));
        }
        for (name, s) in &self.sources {
            for (field, value) in [("key", &s.key), ("event_time", &s.event_time)] {
                if !TICK_FIELDS.iter().any(|(f, _)| f == value) {
                    out.push((format!("sources.{name}.{field}"), unknown_field(value)));
                }
            }
        }
        let streams = self.check_ids(&mut out);
        for (i, op) in self.operators.iter().enumerate() {
            let path = format!("operators[{i}].{}", op.kind());
            if !streams.contains_key(op.input()) {
                out.push((
                    format!("{path}.input"),
                    unknown_stream(op.input(), &streams),
                ));
            }
            match &op.0 {
                OperatorSpec::Filter(f) => check_filter(&path, f, &mut out),
                OperatorSpec::GroupBy(g) => {
                    check_field(&format!("{path}.field"), &g.field, false, &mut out)
                }
                OperatorSpec::Window(w) => check_window(&path, w, &mut out),
            }
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            if !streams.contains_key(sink.input.as_str()) {
                out.push((
                    format!("sinks[{i}].input"),
                    unknown_stream(&sink.input, &streams),
                ));
            }
            if sink.topic.is_empty() {
                out.push((format!("sinks[{i}].topic"), "must not be empty".into()));
            }
        }
        out.extend(self.lake.iter().flat_map(LakeSpec::validate));
        if let Some(cycle) = self.find_cycle() {
            let i = self
                .operators
                .iter()
                .position(|o| o.id() == cycle[0])
                .unwrap_or(0);
            let kind = self.operators.get(i).map_or("", |o| o.kind());
            out.push((
                format!("operators[{i}].{kind}.input"),
                format!("operators form a cycle: {}", cycle.join(" -> ")),
            ));
        }
        if out.is_empty() {
            self.check_runnable(&mut out);
        }
        out
    }

    /// The shape `tickflow run` runs, so that `validate` never passes a topology that `run`
    /// refuses: one source, then a chain of operators (each stream read by one operator, at
    /// most one `group_by`) ending in a window, whose bars a sink writes. Checked once the
    /// rest is valid, so that these messages never pile onto a broken graph.
    fn check_runnable(&self, out: &mut Vec<(String, String)>) {
        if self.sources.len() != 1 {
            out.push((
                "sources".into(),
                "exactly one source is supported by `tickflow run` for now".into(),
            ));
            return;
        }
        let Some(source) = self.sources.keys().next() else {
            return;
        };
        let path = |i: usize| format!("operators[{i}].{}", self.operators[i].kind());
        let (mut stream, mut grouped) = (source.as_str(), false);
        loop {
            let readers: Vec<usize> = (0..self.operators.len())
                .filter(|i| self.operators[*i].input() == stream)
                .collect();
            let Some(&i) = readers.first() else {
                let at = if stream == source {
                    format!("sources.{source}")
                } else {
                    format!(
                        "{}.id",
                        path(
                            self.operators
                                .iter()
                                .position(|o| o.id() == stream)
                                .unwrap_or(0)
                        )
                    )
                };
                out.push((at, format!("no window operator follows `{stream}`: the chain from the source must end in a window")));
                return;
            };
            if let Some(&second) = readers.get(1) {
                out.push((
                    format!("{}.input", path(second)),
                    format!("stream `{stream}` is already read by operator `{}`; a stream read by two operators is not supported yet", self.operators[i].id()),
                ));
                return;
            }
            match &self.operators[i].0 {
                OperatorSpec::GroupBy(_) if grouped => {
                    out.push((
                        path(i),
                        "only one group_by per topology is supported".into(),
                    ));
                    return;
                }
                OperatorSpec::GroupBy(_) => grouped = true,
                OperatorSpec::Window(w) => {
                    if !self.sinks.iter().any(|s| s.input == w.id) {
                        out.push((
                            format!("{}.id", path(i)),
                            format!("no sink writes the bars of window `{}`", w.id),
                        ));
                    }
                    return;
                }
                OperatorSpec::Filter(_) => {}
            }
            stream = self.operators[i].id();
        }
    }

    /// Stream names (sources and operator ids) with where each is defined; reports clashes.
    fn check_ids(&self, out: &mut Vec<(String, String)>) -> HashMap<&str, String> {
        let mut streams: HashMap<&str, String> = self
            .sources
            .keys()
            .map(|k| (k.as_str(), format!("sources.{k}")))
            .collect();
        for (i, op) in self.operators.iter().enumerate() {
            let path = format!("operators[{i}].{}.id", op.kind());
            if op.id().is_empty() {
                out.push((path, "must not be empty".into()));
            } else if let Some(first) = streams.get(op.id()) {
                out.push((
                    path,
                    format!("stream `{}` is already defined at {first}", op.id()),
                ));
            } else {
                streams.insert(op.id(), path);
            }
        }
        streams
    }

    /// A cycle among operators, as the ids along it, if there is one.
    fn find_cycle(&self) -> Option<Vec<String>> {
        let input_of: HashMap<&str, &str> =
            self.operators.iter().map(|o| (o.id(), o.input())).collect();
        for op in &self.operators {
            let start = op.id();
            let mut seen = vec![start];
            let mut at = start;
            while let Some(next) = input_of.get(at) {
                if *next == start {
                    let mut ids: Vec<String> = seen.iter().rev().map(|s| s.to_string()).collect();
                    ids.push(ids[0].clone());
                    return Some(ids);
                }
                if seen.contains(next) {
                    break;
                }
                seen.push(next);
                at = next;
            }
        }
        None
    }
}

impl crate::error::Classified for ValidationErrors {
    fn class(&self) -> crate::error::ErrorClass {
        // Problems of a topology file.
        crate::error::ErrorClass::User
    }
}

fn unknown_field(name: &str) -> String {
    let known: Vec<&str> = TICK_FIELDS.iter().map(|(f, _)| *f).collect();
    format!(
        "unknown tick field `{name}`, expected one of {}",
        known.join(", ")
    )
}

fn unknown_stream(name: &str, streams: &HashMap<&str, String>) -> String {
    let known: BTreeSet<&str> = streams.keys().copied().collect();
    format!(
        "stream `{name}` is not defined; defined streams: {}",
        known.into_iter().collect::<Vec<_>>().join(", ")
    )
}

fn check_field(path: &str, field: &str, numeric: bool, out: &mut Vec<(String, String)>) {
    match TICK_FIELDS.iter().find(|(f, _)| *f == field) {
        None => out.push((path.into(), unknown_field(field))),
        Some((_, is_num)) if numeric && !is_num => {
            out.push((path.into(), format!("field `{field}` is not numeric")))
        }
        Some(_) => {}
    }
}

fn check_filter(path: &str, f: &FilterSpec, out: &mut Vec<(String, String)>) {
    if f.conditions.is_empty() {
        out.push((
            format!("{path}.where"),
            "needs at least one condition".into(),
        ));
    }
    for (i, c) in f.conditions.iter().enumerate() {
        let at = format!("{path}.where[{i}]");
        let numeric = TICK_FIELDS.iter().any(|(n, num)| *n == c.field && *num);
        check_field(&format!("{at}.field"), &c.field, false, out);
        let scalar_ok = |v: &serde_json::Value| {
            if numeric {
                v.is_number()
            } else {
                v.is_string()
            }
        };
        let ok = match (c.op, &c.value) {
            (CompareOp::In, serde_json::Value::Array(vs)) => {
                !vs.is_empty() && vs.iter().all(scalar_ok)
            }
            (CompareOp::In, _) => false,
            (_, v) => scalar_ok(v),
        };
        if !ok {
            let kind = if numeric { "a number" } else { "a string" };
            let shape = if c.op == CompareOp::In {
                format!("a non-empty list of {kind}s")
            } else {
                kind.to_string()
            };
            out.push((
                format!("{at}.value"),
                format!("must be {shape} for field `{}`", c.field),
            ));
        }
    }
}

fn check_window(path: &str, w: &WindowSpec, out: &mut Vec<(String, String)>) {
    let kinds = [
        !w.tumbling.is_empty(),
        !w.hopping.is_empty(),
        w.session.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        out.push((
            path.into(),
            "give exactly one of tumbling, hopping or session".into(),
        ));
    }
    for (i, d) in w.tumbling.iter().enumerate() {
        if d.value.is_zero() {
            out.push((
                format!("{path}.tumbling[{i}]"),
                "window size must be positive".into(),
            ));
        }
    }
    for (i, h) in w.hopping.iter().enumerate() {
        if h.size.value.is_zero() || h.advance.value.is_zero() || h.advance.value > h.size.value {
            out.push((
                format!("{path}.hopping[{i}]"),
                "need 0 < advance <= size".into(),
            ));
        }
    }
    if let Some(s) = &w.session
        && s.gap.value.is_zero()
    {
        out.push((format!("{path}.session.gap"), "must be positive".into()));
    }
    let mut seen = BTreeSet::new();
    for (i, size) in w.tumbling.iter().enumerate() {
        if !seen.insert(size.value) {
            out.push((
                format!("{path}.tumbling[{i}]"),
                format!("window size {size} is listed twice"),
            ));
        }
    }
    if w.aggregates.is_empty() {
        out.push((
            format!("{path}.aggregates"),
            "needs at least one aggregate".into(),
        ));
    }
    for (i, a) in w.aggregates.iter().enumerate() {
        if let Aggregate::Min(f) | Aggregate::Max(f) | Aggregate::Sum(f) | Aggregate::Mean(f) = a {
            let at = format!("{path}.aggregates[{i}]");
            check_field(&at, f, true, out);
            if !AGGREGATABLE.contains(&f.as_str())
                && TICK_FIELDS.iter().any(|(n, num)| n == f && *num)
            {
                out.push((
                    at,
                    format!(
                        "field aggregates are computed over {}, not `{f}`",
                        AGGREGATABLE.join(" and ")
                    ),
                ));
            }
        }
        if w.aggregates[..i].contains(a) {
            out.push((
                format!("{path}.aggregates[{i}]"),
                "aggregate is listed twice".into(),
            ));
        }
    }
    if let Emit::Update(d) = &w.emit
        && d.value.is_zero()
    {
        out.push((
            format!("{path}.emit"),
            "update interval must be positive".into(),
        ));
    }
}

#[cfg(test)]
mod tests;
