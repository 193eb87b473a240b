//! `dmlbench status [EXPERIMENT.ron | RESULTS_DIR]`: one line per cell.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use dmlbench_record::EXPERIMENT_COPY;

use super::HostArgs;
use super::run::{PlanArgs, absolute, load_plan};
use crate::cluster::status::{CellState, cell_states};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench status                                   # experiments/default.ron's cells in results/
  dmlbench status experiments/paper-cub.ron --results /shared/results
  dmlbench status results/paper-cub --watch         # the experiment copied beside its records

Each cell is completed (with its R@1), failed (with the reason), running (epochs done, last
R@1 and which process on which host), queued in Slurm (after `dmlbench sweep --slurm`), or
pending. The exit code is 1 when any cell failed. For a smoke run's records
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
        print_states(states, plan.spec.training.epochs);
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

/// The cells and their states, one line each.
pub fn print_states(states: &[(String, CellState)], epochs: usize) {
    let width = states.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
    for (id, state) in states {
        println!("  {id:width$}  {}", state.describe(epochs));
    }
    let count = |f: fn(&CellState) -> bool| states.iter().filter(|(_, s)| f(s)).count();
    println!(
        "{} cells: {} completed, {} running, {} queued, {} failed, {} pending",
        states.len(),
        count(|s| matches!(s, CellState::Completed { .. })),
        count(|s| matches!(s, CellState::Running { .. })),
        count(|s| matches!(s, CellState::Queued { .. })),
        count(|s| matches!(s, CellState::Failed { .. })),
        count(|s| matches!(s, CellState::Pending { .. })),
    );
}
