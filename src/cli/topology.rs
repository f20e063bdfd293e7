//! `tickflow validate` and `tickflow graph`: check and draw a topology without running it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::config::TopologySpec;
use crate::topology::Graph;

/// Flags of `tickflow validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Topology YAML file.
    pub file: PathBuf,
}

/// Runs `tickflow validate`: every problem, each with file:line:column, or `ok`.
pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    // The problems found are validate's answer (exit code 1), not a failure to run it.
    let spec = TopologySpec::load(&args.file).map_err(|e| anyhow::Error::msg(e.to_string()))?;
    println!(
        "{}: ok (application {}, {} sources, {} operators, {} sinks)",
        args.file.display(),
        spec.application,
        spec.sources.len(),
        spec.operators.len(),
        spec.sinks.len()
    );
    Ok(())
}

/// Output formats of `tickflow graph`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// One line per edge.
    Text,
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

/// Flags of `tickflow graph`.
#[derive(Debug, Clone, Args)]
pub struct GraphArgs {
    /// Topology YAML file.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: GraphFormat,
}

/// Runs `tickflow graph`.
pub fn graph(args: GraphArgs) -> anyhow::Result<()> {
    let g = Graph::of(&TopologySpec::load(&args.file)?);
    let out = match args.format {
        GraphFormat::Text => g.to_text(),
        GraphFormat::Mermaid => g.to_mermaid(),
        GraphFormat::Dot => g.to_dot(),
    };
    print!("{out}");
    Ok(())
}
