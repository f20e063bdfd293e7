//! The pipeline `tickflow run` builds from a validated topology: source → filters →
//! (group_by → repartition topic → filters) → window → bar topics.

use std::borrow::Cow;

use super::repartition_topic;
use crate::codec::Tick;
use crate::config::topology::{OperatorSpec, ProcessingGuarantee, TopologySpec, WindowSpec};
use crate::operators::{Filter, OpError, Sanity, WindowDef};
use crate::state::changelog::changelog_topic;

/// Errors turning a topology into a runnable pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An operator or window kind the runtime does not run.
    #[error(transparent)]
    Unsupported(#[from] OpError),
    /// The topology's shape is not runnable (e.g. no window operator).
    #[error("topology {application}: {message}")]
    Shape {
        application: String,
        message: String,
    },
}

impl crate::error::Classified for PlanError {
    fn class(&self) -> crate::error::ErrorClass {
        // A topology the engine cannot run.
        crate::error::ErrorClass::User
    }
}

/// Re-keying through an internal topic.
#[derive(Debug, Clone)]
pub struct GroupBy {
    /// Operator id.
    pub id: String,
    /// Tick field that becomes the key.
    pub field: String,
    /// The internal repartition topic (`<application>-<id>-repartition`).
    pub topic: String,
}

/// What one run of a topology is made of.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Application id.
    pub application: String,
    /// Whether commits are Kafka transactions.
    pub guarantee: ProcessingGuarantee,
    /// Input topic.
    pub input_topic: String,
    /// Key field of the source.
    pub source_key: String,
    /// Quiet time after which the engine appends a watermark to an input partition.
    pub idle_watermark: Option<std::time::Duration>,
    /// Checks every source tick must pass (bad ones go to the dead-letter topic).
    pub sanity: Sanity,
    /// Filters before the group_by (all of them when there is none).
    pub filters: Vec<Filter>,
    /// Re-keying, if the topology has a `group_by`.
    pub group_by: Option<GroupBy>,
    /// Filters between the group_by and the window.
    pub regrouped_filters: Vec<Filter>,
    /// The window operator's spec.
    pub window: WindowSpec,
    /// Resolutions of the window operator.
    pub defs: Vec<WindowDef>,
    /// For each resolution, the topics its bars go to.
    pub bar_topics: Vec<Vec<String>>,
    /// Topic for late ticks.
    pub late_topic: String,
    /// Topic for records that cannot be processed.
    pub dlq_topic: String,
}

impl Plan {
    /// Works out the pipeline of a validated topology.
    pub fn of(spec: &TopologySpec) -> Result<Self, PlanError> {
        let shape = |message: &str| PlanError::Shape {
            application: spec.application.clone(),
            message: message.into(),
        };
        let [(source_name, source)] = spec.sources.iter().collect::<Vec<_>>()[..] else {
            return Err(shape(
                "exactly one source is supported by `tickflow run` for now",
            ));
        };
        let mut stream = source_name.as_str();
        let (mut filters, mut regrouped_filters, mut group_by) = (Vec::new(), Vec::new(), None);
        let window = loop {
            let mut readers = spec.operators.iter().filter(|o| o.input() == stream);
            let op = readers
                .next()
                .ok_or_else(|| shape("no window operator reads the source"))?;
            if readers.next().is_some() {
                return Err(shape("a stream read by two operators is not supported yet"));
            }
            match &op.0 {
                OperatorSpec::Filter(f) if group_by.is_some() => {
                    regrouped_filters.push(Filter::new(f))
                }
                OperatorSpec::Filter(f) => filters.push(Filter::new(f)),
                OperatorSpec::Window(w) => break w.clone(),
                OperatorSpec::GroupBy(_) if group_by.is_some() => {
                    return Err(shape("only one group_by per topology is supported"));
                }
                OperatorSpec::GroupBy(g) => {
                    group_by = Some(GroupBy {
                        id: g.id.clone(),
                        field: g.field.clone(),
                        topic: repartition_topic(&spec.application, &g.id),
                    })
                }
            }
            stream = op.id();
        };
        let defs = WindowDef::from_spec(&window)?;
        let sinks: Vec<_> = spec.sinks.iter().filter(|s| s.input == window.id).collect();
        if sinks.is_empty() {
            return Err(shape("no sink writes the window operator's bars"));
        }
        let bar_topics = defs
            .iter()
            .map(|d| {
                sinks
                    .iter()
                    .map(|s| s.topic.replace("{resolution}", &d.name))
                    .collect()
            })
            .collect();
        let dlq_topic = format!("{}.dlq", spec.application);
        Ok(Self {
            application: spec.application.clone(),
            guarantee: spec.processing_guarantee,
            input_topic: source.topic.clone(),
            source_key: source.key.clone(),
            idle_watermark: source.idle_watermark.as_ref().map(|d| d.value),
            sanity: Sanity {
                max_skew: source.max_event_time_skew.value.as_micros() as i64,
                max_ahead: source.max_event_time_ahead.value.as_micros() as i64,
            },
            filters,
            group_by,
            regrouped_filters,
            late_topic: window
                .late_topic
                .clone()
                .unwrap_or_else(|| dlq_topic.clone()),
            defs,
            window,
            bar_topics,
            dlq_topic,
        })
    }

    /// The field bars are keyed by: the group_by field, else the source key.
    pub fn window_key(&self) -> &str {
        self.group_by
            .as_ref()
            .map_or(self.source_key.as_str(), |g| g.field.as_str())
    }

    /// Id of the operator whose store a task keeps: the group_by's for forwarding tasks, else
    /// the window's.
    pub fn store_of(&self, forwarding: bool) -> &str {
        match (&self.group_by, forwarding) {
            (Some(g), true) => &g.id,
            _ => &self.window.id,
        }
    }

    /// The changelog topic of every store.
    pub fn changelog_topics(&self) -> Vec<String> {
        let mut stores = vec![self.store_of(false)];
        if self.group_by.is_some() {
            stores.push(self.store_of(true));
        }
        stores
            .into_iter()
            .map(|s| changelog_topic(&self.application, s))
            .collect()
    }

    /// The topics the engine's tasks consume, each with its tasks' changelog: the source
    /// topic, then a `group_by`'s repartition topic. A task is one partition of one of them.
    pub fn task_inputs(&self) -> Vec<(String, String)> {
        let changelog = |forwarding| changelog_topic(&self.application, self.store_of(forwarding));
        let mut out = vec![(self.input_topic.clone(), changelog(self.group_by.is_some()))];
        if let Some(g) = &self.group_by {
            out.push((g.topic.clone(), changelog(false)));
        }
        out
    }

    /// Every topic the application writes results to (not the repartition topic).
    pub fn output_topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.bar_topics.iter().flatten().cloned().collect();
        t.push(self.late_topic.clone());
        t.push(self.dlq_topic.clone());
        t.sort();
        t.dedup();
        t
    }

    /// Every topic the engine produces to: the output topics and the repartition topic.
    pub fn produced_topics(&self) -> Vec<String> {
        let internal = self.group_by.iter().map(|g| g.topic.clone());
        self.output_topics().into_iter().chain(internal).collect()
    }
}

/// The value of tick field `field` as a record key. Validation admits only tick fields;
/// numbers print in Rust's shortest round-trip form and conditions join with commas.
pub fn key_of<'a>(tick: &'a Tick, field: &str) -> Cow<'a, str> {
    match field {
        "symbol" => Cow::Borrowed(&tick.symbol),
        "venue" => Cow::Borrowed(&tick.venue),
        "side" => Cow::Borrowed(&tick.side),
        "currency" => Cow::Borrowed(&tick.currency),
        "price" => Cow::Owned(tick.price.to_string()),
        "size" => Cow::Owned(tick.size.to_string()),
        "event_time" => Cow::Owned(tick.event_time.to_string()),
        "trade_id" => Cow::Owned(tick.trade_id.to_string()),
        "conditions" => Cow::Owned(tick.conditions.join(",")),
        other => unreachable!("validation admits only tick fields, not `{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "application: a\nsources:\n  t: { topic: in }\noperators:\n  - filter: { id: f1, input: t, where: [{ field: size, op: ge, value: 100 }] }\n  - group_by: { id: g, input: f1, field: venue }\n  - filter: { id: f2, input: g, where: [{ field: side, op: eq, value: B }] }\n  - window: { id: w, input: f2, tumbling: [1m], aggregates: [vwap] }\nsinks:\n  - { input: w, topic: \"out.{resolution}\" }\n";

    #[test]
    fn group_by_splits_filters_around_the_repartition_topic() {
        let plan = Plan::of(&TopologySpec::parse("t.yaml", SPEC).unwrap()).unwrap();
        let g = plan.group_by.as_ref().unwrap();
        assert_eq!(
            (g.topic.as_str(), g.field.as_str()),
            ("a-g-repartition", "venue")
        );
        assert_eq!((plan.filters.len(), plan.regrouped_filters.len()), (1, 1));
        assert_eq!(plan.window_key(), "venue");
        assert_eq!(plan.bar_topics, vec![vec!["out.1m".to_string()]]);
    }

    #[test]
    fn keys_of_every_field_kind() {
        let tick = Tick {
            symbol: "AAPL".into(),
            venue: "XNAS".into(),
            price: 187.25,
            size: 300,
            event_time: 7,
            trade_id: 9,
            side: "B".into(),
            conditions: vec!["@".into(), "F".into()],
            currency: "USD".into(),
        };
        let keys: Vec<_> = ["symbol", "venue", "price", "size", "conditions"]
            .map(|f| key_of(&tick, f).into_owned())
            .into();
        assert_eq!(keys, ["AAPL", "XNAS", "187.25", "300", "@,F"]);
    }
}
