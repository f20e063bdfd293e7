//! `tickflow test`: a topology's test cases, run in memory through the test driver.

use std::path::PathBuf;

use clap::Args;

use crate::config::TopologySpec;
use crate::topology::cases;

/// Flags of `tickflow test`.
#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Topology YAML file.
    pub topology: PathBuf,
    /// Cases YAML file: input ticks and the records each topic must hold.
    pub cases: PathBuf,
}

/// Runs `tickflow test`: `ok` or `FAILED` per case with each difference, then a summary;
/// an error (exit 1) if any case failed.
pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let spec = TopologySpec::load(&args.topology)?;
    let reports = cases::run_file(&spec, &args.cases)?;
    let mut failed = 0;
    for r in &reports {
        if r.failures.is_empty() {
            println!("ok      {}", r.name);
            continue;
        }
        failed += 1;
        println!("FAILED  {}", r.name);
        for f in &r.failures {
            println!("        {f}");
        }
    }
    println!("{} passed, {failed} failed", reports.len() - failed);
    if failed > 0 {
        anyhow::bail!("{failed} of {} cases failed", reports.len());
    }
    Ok(())
}
