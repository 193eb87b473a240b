//! `dmlbench cell FILE --cell ID --results DIR`: one cell of an experiment as a child process
//! of `dmlbench run`, which starts it and reads its progress. Hidden from help: a person runs
//! one cell with `dmlbench run FILE --cell ID`.
//!
//! The process prints one JSON [`Event`](crate::train::cell::Event) per line on stdout and
//! ends when its parent does. The parent validated the same file just before, so the
//! plugins' `create` calls of validation are left out here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use dmlbench_host::parent::follow_parent;
use dmlbench_record::CellStatus;

use super::HostArgs;
use super::run::{PlanArgs, absolute, load_plan};
use crate::train::runner::{CellOutcome, run_single};

#[derive(Debug, Args)]
pub struct CellArgs {
    /// Experiment file
    experiment: PathBuf,
    /// The cell to train
    #[arg(long = "cell", value_name = "ID")]
    cell: String,
    /// Results directory; the record goes to <RESULTS>/<experiment name>/
    #[arg(long)]
    results: PathBuf,
    #[command(flatten)]
    plan: PlanArgs,
}

pub fn run(args: CellArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    follow_parent();
    let root = host.project_root()?;
    let registry = host.open_registry();
    let plan = load_plan(&args.experiment, &root, &registry, &args.plan, true)?;
    let cell =
        plan.cell(&args.cell).with_context(|| format!("no cell '{}' in {}", args.cell, args.experiment.display()))?;
    let completed = match run_single(&plan, cell, &registry, &absolute(&args.results)?, true)? {
        CellOutcome::Record(record) => record.status == CellStatus::Completed,
        CellOutcome::Busy(_) => true,
    };
    Ok(if completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
