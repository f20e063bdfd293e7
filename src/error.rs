//! What kind of failure an error is: the user's to fix (configuration, topology, a query), an
//! external service's (Kafka, the registry, S3, Glue, Athena, the disk), or tickflow's own (a
//! bug). Each module's error type says which; the CLI turns it into the exit code, so that a
//! supervisor can tell "fix the config" from "retry later".

/// The kind of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Wrong input from the user: configuration, topology, arguments, SQL. Retrying the same
    /// command fails the same way. Exit code 2.
    User,
    /// A service or resource outside tickflow failed or is unreachable. Retrying later may
    /// succeed. Exit code 3.
    External,
    /// tickflow itself failed (a bug). Exit code 70 (`EX_SOFTWARE`).
    Internal,
}

impl ErrorClass {
    /// The process exit code of a command that failed with an error of this class. (Exit code
    /// 1 is for a command that ran and found a problem: `reconcile` differences, failing
    /// `test` cases, `validate` findings.)
    pub const fn exit_code(self) -> u8 {
        match self {
            ErrorClass::User => 2,
            ErrorClass::External => 3,
            ErrorClass::Internal => 70,
        }
    }
}

/// An error that knows its class.
pub trait Classified {
    /// The kind of this failure.
    fn class(&self) -> ErrorClass;
}
