//! The `tickflow` command line: the only place that prints for humans, and the only place
//! where errors become `anyhow` reports.

mod catalog;
mod demo;
mod ops;
mod query;
mod run;
mod serve;
mod simulate;
mod tail;
mod test;
mod topology;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::AppConfig;
use crate::error::{Classified, ErrorClass};

/// tickflow: ticks to event-time OHLC/VWAP bars, exactly once, from Kafka to an S3 lake.
#[derive(Debug, Parser)]
#[command(name = "tickflow", version, about, long_about = None)]
pub struct Cli {
    /// Application config file [default: config/tickflow.yaml if present, else built-in defaults].
    #[arg(long, global = true, env = "TICKFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `warn,tickflow=debug`.
    #[arg(
        long,
        global = true,
        env = "TICKFLOW_LOG",
        default_value = "warn,tickflow=info"
    )]
    pub log: String,
    /// Log line format: `text`, or `json` (one JSON object per line, for CloudWatch and
    /// other collectors). Logs go to stderr, without colour codes unless it is a terminal.
    #[arg(
        long,
        global = true,
        env = "TICKFLOW_LOG_FORMAT",
        default_value = "text",
        value_parser = ["text", "json"]
    )]
    pub log_format: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on an embedded broker and registry, then show what happened.
    Demo(demo::DemoArgs),
    /// Run a topology: consume ticks, compute windowed bars, produce them to Kafka.
    Run(run::RunArgs),
    /// Produce simulated (or replayed) trade ticks to a Kafka topic.
    Simulate(simulate::SimulateArgs),
    /// Check a topology file and report every problem with file:line:column.
    Validate(topology::ValidateArgs),
    /// Run a topology's test cases (ticks in, expected bars out) in memory, without a broker;
    /// prints each difference and exits 1 if any case fails.
    Test(test::TestArgs),
    /// Print a topology's graph of topics and operators (text, Mermaid or DOT).
    Graph(topology::GraphArgs),
    /// Print records of a topic, decoded through the schema registry, as JSON lines.
    Tail(tail::TailArgs),
    /// Run SQL over the lake's tables (the embedded engine), e.g. a saved query in `queries/`.
    Query(query::QueryArgs),
    /// Recompute the bars from the lake's raw ticks and compare them with its bar tables;
    /// exits 1 on any difference.
    Reconcile(query::ReconcileArgs),
    /// Draw a candlestick chart (with volume) of a symbol's bars from the lake, as SVG or PNG.
    Chart(query::ChartArgs),
    /// Show an application's tasks as the broker sees them: owner, positions, lag, stream
    /// time and event-time lag per input partition.
    Status(ops::StatusArgs),
    /// Make an application start over from the beginning of its input with empty state
    /// (Kafka Streams' application reset); a dry run unless `--execute`.
    Reset(ops::ResetArgs),
    /// Manage the lake's tables in the catalog (`catalog sync`).
    Catalog(catalog::CatalogArgs),
    /// Serve the built-in Confluent-compatible schema registry.
    Registry(serve::RegistryArgs),
    /// Serve the embedded Kafka-protocol broker (Tansu) for local work and tests.
    #[cfg(feature = "embedded-broker")]
    Broker(serve::BrokerArgs),
}

/// Runs the command line and turns errors into a message and an exit code: the class of the
/// first classified error in the chain (user 2, external 3, internal 70), else 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log, &cli.log_format) {
        eprintln!("error: --log / TICKFLOW_LOG {:?}: {e}", cli.log);
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::error::report(e.chain()));
            class_of(&e).map_or(ExitCode::FAILURE, |c| ExitCode::from(c.exit_code()))
        }
    }
}

/// The class of the outermost error in `e`'s chain whose type knows its class.
fn class_of(e: &anyhow::Error) -> Option<ErrorClass> {
    e.chain().find_map(classify)
}

fn classify(e: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    macro_rules! first_of {
        ($($t:ty),* $(,)?) => {
            $(if let Some(x) = e.downcast_ref::<$t>() {
                return Some(x.class());
            })*
        };
    }
    first_of!(
        UsageError,
        crate::config::ConfigError,
        crate::config::topology::ValidationErrors,
        crate::operators::OpError,
        crate::topology::plan::PlanError,
        crate::kafka::KafkaError,
        crate::kafka::auth::TokenError,
        crate::kafka::SinkError,
        crate::codec::CodecError,
        crate::codec::registry::RegistryError,
        crate::state::StateError,
        crate::lake::LakeError,
        crate::catalog::CatalogError,
        crate::query::QueryError,
        crate::sim::SimError,
        crate::source::SourceError,
        crate::sink::lake::LakeSinkError,
        crate::topology::runtime::RuntimeError,
        crate::topology::driver::DriverError,
        crate::topology::cases::CasesError,
    );
    #[cfg(feature = "embedded-broker")]
    first_of!(crate::broker::BrokerError);
    None
}

/// Sets up logging to stderr with `filter` (an error if it does not parse: a typo must not
/// silence the logs) in `format` (`text` or `json`).
fn init_logging(filter: &str, format: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map_err(|e| e.to_string())?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args, load_config(&cli.config)?).await,
            Command::Run(args) => run::run(args, load_config(&cli.config)?).await,
            Command::Simulate(args) => simulate::run(args, load_config(&cli.config)?).await,
            Command::Validate(args) => topology::validate(args),
            Command::Graph(args) => topology::graph(args),
            Command::Test(args) => test::run(args),
            Command::Tail(args) => tail::run(args, load_config(&cli.config)?).await,
            Command::Query(args) => query::run(args, load_config(&cli.config)?).await,
            Command::Reconcile(args) => query::reconcile(args, load_config(&cli.config)?).await,
            Command::Chart(args) => query::chart(args, load_config(&cli.config)?).await,
            Command::Status(args) => ops::status(args, load_config(&cli.config)?).await,
            Command::Reset(args) => ops::reset(args, load_config(&cli.config)?).await,
            Command::Catalog(args) => catalog::run(args, load_config(&cli.config)?).await,
            Command::Registry(args) => serve::registry(args, load_config(&cli.config)?).await,
            #[cfg(feature = "embedded-broker")]
            Command::Broker(args) => serve::broker(args).await,
        }
    })
}

/// A command asked for what its arguments or topology cannot give (a missing flag, a
/// topology without the section it needs): the user's to fix, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

impl Classified for UsageError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

/// A [`UsageError`] saying `message`.
fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

fn load_config(path: &Option<PathBuf>) -> anyhow::Result<AppConfig> {
    Ok(AppConfig::load(path.as_deref())?)
}

/// Formats UTC microseconds as RFC 3339 with millisecond precision.
pub(crate) fn fmt_micros(t: i64) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::kafka::KafkaError;
    use crate::lake::LakeError;
    use crate::sink::lake::LakeSinkError;
    use crate::topology::engine::CommitStep;
    use crate::topology::runtime::RuntimeError;

    /// Every error type that says its class is one `classify` knows: a new module's error
    /// type left out of the list would exit with 1 whatever its class.
    #[test]
    fn every_classified_error_type_is_listed() {
        fn classified(path: &std::path::Path, found: &mut Vec<String>) {
            if path.is_dir() {
                for entry in std::fs::read_dir(path).unwrap() {
                    classified(&entry.unwrap().path(), found);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(path).unwrap();
                for (i, _) in text.match_indices("Classified for ") {
                    let rest = &text[i + "Classified for ".len()..];
                    let name = rest.split(|c: char| !c.is_alphanumeric()).next().unwrap();
                    // (This test's own text names no type.)
                    if !name.is_empty() {
                        found.push(name.to_string());
                    }
                }
            }
        }
        let mut found = Vec::new();
        classified(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
            &mut found,
        );
        assert!(found.len() >= 20, "{found:?}");
        let this = include_str!("mod.rs");
        let list = &this[this.find("fn classify").unwrap()..this.find("fn init_logging").unwrap()];
        let listed = |name: &str| {
            list.lines()
                .map(|l| l.trim().trim_end_matches([',', ')', ';']))
                .any(|l| l == name || l.ends_with(&format!("::{name}")))
        };
        let missing: Vec<&String> = found.iter().filter(|n| !listed(n)).collect();
        assert!(missing.is_empty(), "not in classify: {missing:?}");
    }

    /// The outermost classified error decides, through contexts and wrappers; anything else
    /// is exit code 1.
    #[test]
    fn errors_map_to_exit_codes_by_class() {
        let config = ConfigError::Env {
            var: "TICKFLOW_X".into(),
            field: "x".into(),
            message: "unknown".into(),
        };
        let e = anyhow::Error::from(config).context("loading the configuration");
        assert_eq!(class_of(&e), Some(ErrorClass::User));
        let kafka = KafkaError::Unreachable {
            servers: "b:9092".into(),
            timeout: std::time::Duration::from_secs(1),
            message: "refused".into(),
        };
        let e = anyhow::Error::from(RuntimeError::Kafka(kafka));
        assert_eq!(class_of(&e), Some(ErrorClass::External));
        let e = anyhow::Error::from(LakeSinkError::Lake(LakeError::Parquet("bug".into())));
        assert_eq!(class_of(&e), Some(ErrorClass::Internal));
        let e = anyhow::Error::from(RuntimeError::Crashed(CommitStep::AfterFlush));
        assert_eq!(class_of(&e).map(ErrorClass::exit_code), Some(70));
        assert_eq!(class_of(&anyhow::anyhow!("3 bars differ")), None);
        let e = usage("give the SQL or --file".into()).context("tickflow query");
        assert_eq!(class_of(&e).map(ErrorClass::exit_code), Some(2));
    }
}
