//! The validated topology as a graph of topics and operators (what `tickflow graph` prints),
//! and running it: the engine core (`engine`, `routing`, `task`) driven either by Kafka
//! (`runtime`) or in memory (`driver`, over `memory`), through the `edge` traits.

pub mod cases;
pub mod driver;
pub mod edge;
pub mod engine;
pub mod identity;
pub mod memory;
pub mod plan;
mod replay;
pub mod reset;
mod routing;
pub mod runtime;
mod task;

use std::collections::HashMap;
use std::fmt::Write;

use crate::config::topology::{OperatorSpec, TopologySpec, WindowSpec};

/// The internal topic a `group_by` operator repartitions through, named like Kafka Streams'.
pub fn repartition_topic(application: &str, operator: &str) -> String {
    format!("{application}-{operator}-repartition")
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A Kafka topic the application reads or writes.
    Topic,
    /// An internal topic the application owns (repartitioning).
    InternalTopic,
    /// An operator.
    Operator,
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Topic name or operator id.
    pub name: String,
    /// Details shown next to the name.
    pub detail: String,
}

/// Topics and operators with the edges records flow along.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Application id.
    pub application: String,
    /// Nodes, in definition order.
    pub nodes: Vec<Node>,
    /// Edges as (from, to) node indexes.
    pub edges: Vec<(usize, usize)>,
}

impl Graph {
    /// Builds the graph of a validated topology.
    pub fn of(spec: &TopologySpec) -> Self {
        let mut g = Graph {
            application: spec.application.clone(),
            nodes: Vec::new(),
            edges: Vec::new(),
        };
        let mut topics: HashMap<String, usize> = HashMap::new();
        let mut stream_end: HashMap<&str, usize> = HashMap::new();
        for (name, s) in &spec.sources {
            let t = g.topic(&mut topics, &s.topic, NodeKind::Topic);
            stream_end.insert(name, t);
        }
        let ops: Vec<(usize, &OperatorSpec)> = spec
            .operators
            .iter()
            .map(|o| (g.add(NodeKind::Operator, o.id(), describe(o)), &o.0))
            .collect();
        for (node, op) in &ops {
            let out = match op {
                OperatorSpec::GroupBy(_) => {
                    let topic = repartition_topic(&spec.application, op.id());
                    let t = g.topic(&mut topics, &topic, NodeKind::InternalTopic);
                    g.edges.push((*node, t));
                    t
                }
                _ => *node,
            };
            stream_end.insert(op.id(), out);
        }
        for (node, op) in &ops {
            if let Some(from) = stream_end.get(op.input()) {
                g.edges.push((*from, *node));
            }
            if let OperatorSpec::Window(w) = op
                && let Some(late) = &w.late_topic
            {
                let t = g.topic(&mut topics, late, NodeKind::Topic);
                g.edges.push((*node, t));
            }
        }
        for sink in &spec.sinks {
            let window = spec.operators.iter().find_map(|o| match &o.0 {
                OperatorSpec::Window(w) if w.id == sink.input => Some(w),
                _ => None,
            });
            for topic in sink_topics(&sink.topic, window) {
                let t = g.topic(&mut topics, &topic, NodeKind::Topic);
                if let Some(from) = stream_end.get(sink.input.as_str()) {
                    g.edges.push((*from, t));
                }
            }
        }
        g
    }

    fn add(&mut self, kind: NodeKind, name: &str, detail: String) -> usize {
        self.nodes.push(Node {
            kind,
            name: name.into(),
            detail,
        });
        self.nodes.len() - 1
    }

    fn topic(&mut self, topics: &mut HashMap<String, usize>, name: &str, kind: NodeKind) -> usize {
        if let Some(i) = topics.get(name) {
            return *i;
        }
        let i = self.add(kind, name, String::new());
        topics.insert(name.into(), i);
        i
    }

    fn label(&self, i: usize) -> String {
        let n = &self.nodes[i];
        match n.kind {
            NodeKind::Topic => format!("topic {}", n.name),
            NodeKind::InternalTopic => format!("internal topic {}", n.name),
            NodeKind::Operator => format!("{} ({})", n.name, n.detail),
        }
    }

    /// One line per edge.
    pub fn to_text(&self) -> String {
        let mut s = format!("application {}\n", self.application);
        for (a, b) in &self.edges {
            let _ = writeln!(s, "  {} --> {}", self.label(*a), self.label(*b));
        }
        s
    }

    /// A Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut s = String::from("flowchart LR\n");
        for (i, n) in self.nodes.iter().enumerate() {
            let label = self.label(i).replace('"', "'");
            let _ = match n.kind {
                NodeKind::Operator => writeln!(s, "  n{i}[\"{label}\"]"),
                _ => writeln!(s, "  n{i}[(\"{label}\")]"),
            };
        }
        for (a, b) in &self.edges {
            let _ = writeln!(s, "  n{a} --> n{b}");
        }
        s
    }

    /// A Graphviz digraph.
    pub fn to_dot(&self) -> String {
        let mut s = format!("digraph \"{}\" {{\n  rankdir=LR;\n", self.application);
        for (i, n) in self.nodes.iter().enumerate() {
            let shape = if n.kind == NodeKind::Operator {
                "box"
            } else {
                "cylinder"
            };
            let label = self.label(i).replace('"', "'");
            let _ = writeln!(s, "  n{i} [shape={shape}, label=\"{label}\"];");
        }
        for (a, b) in &self.edges {
            let _ = writeln!(s, "  n{a} -> n{b};");
        }
        s.push_str("}\n");
        s
    }
}

/// The topics a sink writes: `{resolution}` expands to each window size of its input.
fn sink_topics(topic: &str, window: Option<&WindowSpec>) -> Vec<String> {
    match window {
        Some(w) if topic.contains("{resolution}") => resolutions(w)
            .into_iter()
            .map(|r| topic.replace("{resolution}", &r))
            .collect(),
        _ => vec![topic.to_string()],
    }
}

/// Resolution names of a window operator: its sizes as written (`1m`, `5m`), `5m-every-1m`
/// for hopping windows, `session` for session windows.
pub fn resolutions(w: &WindowSpec) -> Vec<String> {
    let mut out: Vec<String> = w.tumbling.iter().map(|d| d.text.clone()).collect();
    out.extend(
        w.hopping
            .iter()
            .map(|h| format!("{}-every-{}", h.size, h.advance)),
    );
    if w.session.is_some() {
        out.push("session".into());
    }
    out
}

fn describe(op: &OperatorSpec) -> String {
    match op {
        OperatorSpec::Filter(f) => format!("filter, {} conditions", f.conditions.len()),
        OperatorSpec::GroupBy(g) => format!("group_by {}", g.field),
        OperatorSpec::Window(w) => {
            format!("window {}; grace {}", resolutions(w).join(", "), w.grace)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(path: &str) -> Graph {
        Graph::of(&TopologySpec::load(std::path::Path::new(path)).unwrap())
    }

    #[test]
    fn flagship_graph() {
        let text = graph("topologies/ohlc_vwap.yaml").to_text();
        assert_eq!(
            text,
            "application ohlc-vwap\n\
             \x20 topic ticks.raw --> bars (window 1s, 1m, 5m, 1h; grace 5s)\n\
             \x20 bars (window 1s, 1m, 5m, 1h; grace 5s) --> topic ticks.late\n\
             \x20 bars (window 1s, 1m, 5m, 1h; grace 5s) --> topic bars.1s\n\
             \x20 bars (window 1s, 1m, 5m, 1h; grace 5s) --> topic bars.1m\n\
             \x20 bars (window 1s, 1m, 5m, 1h; grace 5s) --> topic bars.5m\n\
             \x20 bars (window 1s, 1m, 5m, 1h; grace 5s) --> topic bars.1h\n"
        );
    }

    #[test]
    fn group_by_goes_through_a_repartition_topic() {
        let g = graph("topologies/venue_vwap.yaml");
        let text = g.to_text();
        assert!(
            text.contains(
                "by_venue (group_by venue) --> internal topic venue-vwap-by_venue-repartition"
            ),
            "{text}"
        );
        assert!(text.contains("internal topic venue-vwap-by_venue-repartition --> venue_vwap (window 5m-every-1m; grace 10s)"), "{text}");
        let mermaid = g.to_mermaid();
        assert!(
            mermaid.starts_with("flowchart LR\n")
                && mermaid.matches("-->").count() == g.edges.len()
        );
        let dot = g.to_dot();
        assert!(
            dot.starts_with("digraph \"venue-vwap\" {")
                && dot.matches("->").count() == g.edges.len()
        );
    }
}
