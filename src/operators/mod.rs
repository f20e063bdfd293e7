//! Operators: pure, synchronous transformations of ticks. They never see downstream: input
//! arrives as an argument and output leaves through an [`Output`] list. Everything an operator
//! emits is a deterministic function of its input sequence (event times and offsets), never of
//! wall-clock time, so a replay after a crash reproduces the same records.

mod accumulator;
mod filter;
mod sanity;
mod window;

pub use accumulator::Accumulator;
pub use filter::Filter;
pub use sanity::{Rejection, Sanity};
pub use window::{StoredWindow, WindowChange, WindowDef, WindowId, WindowOperator};

use crate::codec::{Bar, Reason};

/// Errors building an operator from its spec (the runtime does not support it yet, or the spec
/// is inconsistent despite validation: a bug).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The operator or window kind is not supported by the runtime.
    #[error("operator {id}: {what} is not supported by `tickflow run` yet")]
    Unsupported { id: String, what: String },
}

impl crate::error::Classified for OpError {
    fn class(&self) -> crate::error::ErrorClass {
        // An operator the topology asks for that cannot be built.
        crate::error::ErrorClass::User
    }
}

/// What an operator emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A bar: final when its window closed, or an update while it is open.
    Bar(Bar),
    /// A tick that arrived after its window (at one resolution) had closed.
    Late {
        /// Offset of the late tick in its partition.
        offset: i64,
        /// Resolution whose window had closed.
        resolution: String,
        /// Human-readable explanation.
        detail: String,
    },
    /// A tick that no window took because it would overflow a sum (volume, turnover, count):
    /// bad data, for the dead-letter topic.
    Rejected {
        /// Offset of the tick in its partition.
        offset: i64,
        /// Why (`Overflow`).
        reason: Reason,
        /// Human-readable explanation.
        detail: String,
    },
}
