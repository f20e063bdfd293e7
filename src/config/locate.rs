//! Where each node of a YAML document is: line and column by dotted field path, so that errors
//! found after parsing (an undefined stream, a cycle) still point at the line to fix.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, Span, SpannedEventReceiver};

/// Line and column (both 1-based) of every node, keyed by path (`operators[1].window.input`).
#[derive(Debug, Default)]
pub struct Locations {
    /// Each node's position: a map entry's key, else the node itself.
    at: HashMap<String, (usize, usize)>,
    /// Each node's own position (a map entry's value, not its key).
    values: HashMap<String, (usize, usize)>,
}

impl Locations {
    /// Indexes `text`; a document that does not parse yields an empty index.
    pub fn of(text: &str) -> Self {
        let mut recv = Receiver::default();
        let _ = Parser::new_from_str(text).load(&mut recv, false);
        Self {
            at: recv.at,
            values: recv.values,
        }
    }

    /// The position of the node at `path` itself (for a map entry: its value), if there is one.
    pub fn value(&self, path: &str) -> Option<(usize, usize)> {
        self.values.get(path).copied()
    }

    /// The position of `path` (for a map entry: its key), if there is one.
    pub fn get(&self, path: &str) -> Option<(usize, usize)> {
        self.at.get(path).copied()
    }

    /// The position of `path`, or of its nearest ancestor that exists, or 1:1.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.at.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Receiver {
    stack: Vec<Frame>,
    at: HashMap<String, (usize, usize)>,
    values: HashMap<String, (usize, usize)>,
}

impl Receiver {
    /// The path of the node about to start, or `None` when the event is a mapping key.
    fn child_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key: Some(k) }) => Some(join(path, k)),
            Some(Frame::Seq { path, index }) => Some(format!("{path}[{index}]")),
        }
    }

    /// The node that just ended was a value: move the parent on.
    fn advance(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn record(&mut self, path: String, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        self.values.insert(path.clone(), pos);
        self.at.entry(path).or_insert(pos);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'input> SpannedEventReceiver<'input> for Receiver {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let mark = span.start;
        match ev {
            Event::Scalar(value, ..) => match self.child_path() {
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let full = join(path, &value);
                        *key = Some(value.into_owned());
                        self.at.entry(full).or_insert((mark.line(), mark.col() + 1));
                    }
                }
                Some(path) => {
                    self.record(path, mark);
                    self.advance();
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.child_path().unwrap_or_default();
                self.record(path.clone(), mark);
                self.stack.push(match ev {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, index: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.advance();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_point_at_keys() {
        let text = "a:\n  b: 1\n  list:\n    - x: 2\n    - y: [3, 4]\nc: z\n";
        let l = Locations::of(text);
        assert_eq!(l.find("a.b"), (2, 3));
        assert_eq!(l.find("a.list[0].x"), (4, 7));
        assert_eq!(l.find("a.list[1].y"), (5, 7));
        assert_eq!(l.find("c"), (6, 1));
        assert_eq!(l.find("a.list[1].y.nothing"), (5, 7));
        assert_eq!(l.find("nowhere"), (1, 1));
        assert_eq!(l.value("a.b"), Some((2, 6)));
        assert_eq!(l.value("a.list[1].y"), Some((5, 10)));
        assert_eq!(l.get("c"), Some((6, 1)));
        assert_eq!(l.value("c"), Some((6, 4)));
    }
}
