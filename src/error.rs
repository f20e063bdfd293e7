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

/// Any error, kept as the source of one of tickflow's where its type varies (a library's
/// generic error, one of several libraries).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error that knows its class.
pub trait Classified {
    /// The kind of this failure.
    fn class(&self) -> ErrorClass;
}

/// One line for an error and its causes, outermost first, joined by ": ". A cause the line
/// already tells is left out (its text, or its text after a leading "label: "): many error
/// types (tickflow's own `"avro: {0}"`, DataFusion's) both print their source and return it
/// from `source()`, and a user must not read the same sentence three times.
pub fn report<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut line = String::new();
    for cause in chain {
        let text = cause.to_string();
        let detail = text
            .split_once(": ")
            .map_or(text.as_str(), |(_, rest)| rest);
        if text.is_empty() || line.contains(&text) || line.contains(detail) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::report;

    #[derive(Debug, thiserror::Error)]
    #[error("disk full")]
    struct Io;

    /// Prints its source and returns it, as `#[from]` with `{0}` does.
    #[derive(Debug, thiserror::Error)]
    #[error("writing a file: {0}")]
    struct Echoes(#[from] Io);

    /// Prints its source's detail under a label of its own, as DataFusion's SQL errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("SQL error: ParserError(\"Expected: a statement\")")]
    struct Relabels(#[source] Parser);

    #[derive(Debug, thiserror::Error)]
    #[error("sql parser error: Expected: a statement")]
    struct Parser;

    /// Returns its source without printing it.
    #[derive(Debug, thiserror::Error)]
    #[error("landing partition 3")]
    struct Quiet(#[source] Echoes);

    #[test]
    fn each_cause_is_printed_once() {
        let e = anyhow::Error::new(Quiet(Echoes(Io))).context("lake sink");
        assert_eq!(
            report(e.chain()),
            "lake sink: landing partition 3: writing a file: disk full"
        );
        // anyhow's own chain repeats the echoed cause.
        assert_eq!(
            format!("{e:#}"),
            "lake sink: landing partition 3: writing a file: disk full: disk full"
        );
        let e = anyhow::Error::new(Relabels(Parser)).context("running the query");
        assert_eq!(
            report(e.chain()),
            "running the query: SQL error: ParserError(\"Expected: a statement\")"
        );
    }
}
