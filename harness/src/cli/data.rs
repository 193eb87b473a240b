//! `dmlbench data`.
use std::process::ExitCode;
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {}
pub fn run(command: DataCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
