//! `dmlbench status [EXPERIMENT.ron | RESULTS_DIR]`: one line per cell.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use dmlbench_record::EXPERIMENT_COPY;

use super::HostArgs;
use super::run::{PlanArgs, absolute, load_plan};
use crate::cluster::status::{CellState, cell_states, status_lines};
use crate::experiment::Plan;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench status                                   # experiments/default.ron's cells in results/
  dmlbench status experiments/paper-cub.ron --results /shared/results
  dmlbench status results/paper-cub --watch         # the experiment copied beside its records

Each cell is completed (with its R@1), failed (with the reason), running (epochs done, last
R@1 and which process on which host), queued in Slurm (after `dmlbench sweep --slurm`), or
pending. The fold runs of a cross-validated cell share its line (`3 folds: 2 completed, 1
running (fold 2: ...)`); --every-fold lists them one by one. The exit code is 1 when any cell
failed. For a smoke run's records
(<results>/<name>-smoke), add --smoke.")]
pub struct StatusArgs {
    /// An experiment file, or the directory of an experiment's records (which holds a copy of
    /// its file) [default: experiments/default.ron under the project root]
    target: Option<PathBuf>,
    /// Results directory (with an experiment file)
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Refresh every few seconds until interrupted
    #[arg(long)]
    watch: bool,
    /// One line per fold run of a cross-validated cell, instead of one per cell
    #[arg(long)]
    every_fold: bool,
    #[command(flatten)]
    plan: PlanArgs,
}

pub fn run(args: StatusArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let root = host.project_root()?;
    let target = args.target.clone().unwrap_or_else(|| root.join("experiments/default.ron"));
    let (file, results) = experiment_and_results(&target, &args.results)?;
    let registry = host.open_registry();
    let plan = load_plan(&file, &root, &registry, &args.plan, true)?;
    let dir = plan.results_dir(&results);
    loop {
        let status = cell_states(&plan, &dir)?;
        let states = &status.cells;
        if args.watch {
            // Clear the screen and go home, as `watch` does.
            print!("\x1b[2J\x1b[H");
        }
        println!("{} ({})", plan.spec.name, dir.display());
        print_states(&plan, &dir, states, args.every_fold);
        if status.queue_unreadable {
            println!("(cells were submitted to Slurm, but squeue cannot be run here: queued tasks are not shown)");
        }
        if !args.watch {
            let failed = states.iter().any(|(_, s)| matches!(s, CellState::Failed { .. }));
            return Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS });
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// The experiment file and results directory `target` names: a file with `--results`, or a
/// records directory `<results>/<name>` holding the experiment's copy.
fn experiment_and_results(target: &Path, results: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    if target.is_dir() {
        let copy = target.join(EXPERIMENT_COPY);
        anyhow::ensure!(
            copy.is_file(),
            "{} holds no {EXPERIMENT_COPY}: give the experiment file instead (dmlbench status FILE --results DIR)",
            target.display()
        );
        let dir = absolute(target)?;
        let parent = dir.parent().context("a records directory has a parent")?.to_path_buf();
        return Ok((copy, parent));
    }
    Ok((target.to_path_buf(), absolute(results)?))
}

/// The cells and their states ([`status_lines`]: one line per cell, or per cross-validated
/// cell unless `every_fold`), then how many cells (fold runs each) stand where.
pub fn print_states(plan: &Plan, experiment_dir: &Path, states: &[(String, CellState)], every_fold: bool) {
    let lines = status_lines(plan, experiment_dir, states, every_fold);
    let width = lines.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
    for (id, text) in &lines {
        println!("  {id:width$}  {text}");
    }
    let counts: Vec<String> = ["completed", "running", "queued", "failed", "pending"]
        .into_iter()
        .map(|kind| format!("{} {kind}", states.iter().filter(|(_, s)| s.kind() == kind).count()))
        .collect();
    println!("{} cells: {}", states.len(), counts.join(", "));
}
