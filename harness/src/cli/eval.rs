//! `dmlbench eval`.
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct EvalArgs {}
pub fn run(_args: EvalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet built")
}
