//! `filter`: keeps ticks for which every condition holds.

use crate::codec::Tick;
use crate::config::topology::{CompareOp, Condition, FilterSpec};

/// A constant to compare with.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Number(f64),
    Text(String),
}

/// One compiled condition.
#[derive(Debug, Clone, PartialEq)]
struct Compiled {
    field: String,
    op: CompareOp,
    values: Vec<Operand>,
}

/// A compiled filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    conditions: Vec<Compiled>,
}

fn operand(v: &serde_json::Value) -> Operand {
    match v.as_f64() {
        Some(n) => Operand::Number(n),
        None => Operand::Text(
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        ),
    }
}

fn compile(c: &Condition) -> Compiled {
    let values = match &c.value {
        serde_json::Value::Array(vs) => vs.iter().map(operand).collect(),
        v => vec![operand(v)],
    };
    Compiled {
        field: c.field.clone(),
        op: c.op,
        values,
    }
}

/// The value of a tick field, as a number or as text.
fn field(t: &Tick, name: &str) -> Operand {
    match name {
        "price" => Operand::Number(t.price),
        "size" => Operand::Number(t.size as f64),
        "event_time" => Operand::Number(t.event_time as f64),
        "trade_id" => Operand::Number(t.trade_id as f64),
        "symbol" => Operand::Text(t.symbol.clone()),
        "venue" => Operand::Text(t.venue.clone()),
        "side" => Operand::Text(t.side.clone()),
        "currency" => Operand::Text(t.currency.clone()),
        _ => Operand::Text(t.conditions.join(",")),
    }
}

fn compare(a: &Operand, b: &Operand) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Operand::Number(x), Operand::Number(y)) => x.partial_cmp(y),
        (Operand::Text(x), Operand::Text(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Filter {
    /// Compiles a validated filter spec.
    pub fn new(spec: &FilterSpec) -> Self {
        Self {
            conditions: spec.conditions.iter().map(compile).collect(),
        }
    }

    /// Whether `tick` passes every condition.
    pub fn keeps(&self, tick: &Tick) -> bool {
        use std::cmp::Ordering::*;
        self.conditions.iter().all(|c| {
            let v = field(tick, &c.field);
            let ord = compare(&v, &c.values[0]);
            match c.op {
                CompareOp::Eq => ord == Some(Equal),
                CompareOp::Ne => ord != Some(Equal),
                CompareOp::Lt => ord == Some(Less),
                CompareOp::Le => matches!(ord, Some(Less | Equal)),
                CompareOp::Gt => ord == Some(Greater),
                CompareOp::Ge => matches!(ord, Some(Greater | Equal)),
                CompareOp::In => c.values.iter().any(|x| compare(&v, x) == Some(Equal)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_all_hold() {
        let spec: FilterSpec = serde_saphyr::from_str(
            "id: f\ninput: t\nwhere:\n  - {field: venue, op: in, value: [XNAS, XNYS]}\n  - {field: size, op: ge, value: 100}\n",
        )
        .unwrap();
        let f = Filter::new(&spec);
        let mut t = Tick {
            symbol: "A".into(),
            venue: "XNAS".into(),
            price: 1.0,
            size: 100,
            event_time: 0,
            trade_id: 1,
            side: "B".into(),
            conditions: vec![],
            currency: "USD".into(),
        };
        assert!(f.keeps(&t));
        t.size = 99;
        assert!(!f.keeps(&t));
        t.size = 300;
        t.venue = "FINR".into();
        assert!(!f.keeps(&t));
    }
}
