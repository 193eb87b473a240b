//! The command line: parsing in [`Cli`], one module per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod data;
mod eval;

/// Deep metric learning benchmarks: losses and miners as plugins, leaderboards you can trust.
#[derive(Debug, Parser)]
#[command(name = "dmlbench", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Datasets: generate synthetic ones, check real ones.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Retrieval and clustering metrics of saved embeddings.
    Eval(eval::EvalArgs),
}

/// Runs the command line and returns the process exit code: 0 on success, 1 when a check or
/// a run found failures, 2 when the command itself could not be carried out.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(command) => data::run(command),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
