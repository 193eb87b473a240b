//! `dmlbench run [EXPERIMENT.ron]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use dmlbench_host::Registry;
use dmlbench_record::CellStatus;

use super::HostArgs;
use crate::experiment::{self, Overrides, Plan};
use crate::train::runner::{CellOutcome, RunOptions, describe, run_plan, run_single};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench run                                   # experiments/default.ron, synthetic data made on first use
  dmlbench run experiments/paper-cub.ron
  dmlbench run experiments/paper-cub.ron --device tch-cuda:0   # a binary built with --features tch
  dmlbench run --smoke --results /tmp/smoke      # one epoch, first seed, into /tmp/smoke/default-smoke/
  dmlbench run experiments/paper-sop.ron --list-cells
  dmlbench run experiments/paper-sop.ron --cell cross_entropy-seed0   # one cell, e.g. a Slurm array task
  dmlbench run --keep-stale                      # keep records whose plugins' code changed since

Each cell trains in its own process and writes results/<experiment>/<cell>.ron after every
epoch, with a checkpoint. Running again skips completed cells and resumes interrupted ones
from their last checkpoint; a completed cell whose configuration or plugin code changed since
is run again (not for a new dmlbench build alone, which records only note); Ctrl-C or a kill leaves every file consistent. The exit code is 1
when any cell failed. Render the results with `dmlbench leaderboard`.")]
pub struct RunArgs {
    /// Experiment file [default: experiments/default.ron under the project root]
    experiment: Option<PathBuf>,
    /// Results directory; records go to <RESULTS>/<experiment name>/
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Run only this cell (repeatable); see --list-cells
    #[arg(long = "cell", value_name = "ID")]
    cells: Vec<String>,
    /// List the cell ids of the experiment and exit
    #[arg(long)]
    list_cells: bool,
    #[command(flatten)]
    plan: PlanArgs,
}

/// What changes an experiment file before it is validated: shared by `run` and the cell
/// processes it starts, which receive the same values.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// One epoch and the first seed only, a quick check that every cell runs; records go to
    /// <RESULTS>/<experiment name>-smoke/, never over the real results
    #[arg(long)]
    smoke: bool,
    /// Train this many epochs instead of the file's
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Device instead of the file's `training.device`: cpu, cuda:N (build with --features
    /// cuda), tch or tch-cuda:N (--features tch)
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Seconds each plugin's `create` may take while the experiment is validated, in a child
    /// process, before it is killed and the file reported invalid [default: 30]
    #[arg(long, value_name = "SECONDS", env = "DMLBENCH_CREATE_TIMEOUT", value_parser = dmlbench_host::isolated::parse_seconds)]
    create_timeout: Option<std::time::Duration>,
    /// Keep completed records whose plugins' code changed since they were written [default:
    /// run those cells again, saying which plugin changed]
    #[arg(long)]
    keep_stale: bool,
}

impl PlanArgs {
    /// The same overrides as `dmlbench run` arguments, for the tasks of a sweep.
    pub fn as_run_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.smoke {
            args.push("--smoke".to_string());
        }
        if let Some(epochs) = self.epochs {
            args.extend(["--epochs".to_string(), epochs.to_string()]);
        }
        if let Some(device) = &self.device {
            args.extend(["--device".to_string(), device.clone()]);
        }
        if self.keep_stale {
            args.push("--keep-stale".to_string());
        }
        args
    }
}

/// Reads and validates `file` with the overrides of `args`; a smoke run keeps the first seed
/// only. `skip_plugin_creation`: see [`Overrides::skip_plugin_creation`].
pub fn load_plan(
    file: &Path,
    root: &Path,
    registry: &Registry,
    args: &PlanArgs,
    skip_plugin_creation: bool,
) -> anyhow::Result<Plan> {
    let overrides = Overrides {
        epochs: if args.smoke { Some(1) } else { args.epochs },
        device: args.device.clone(),
        smoke: args.smoke,
        create_timeout: args.create_timeout,
        skip_plugin_creation,
        keep_stale: args.keep_stale,
    };
    let mut plan = experiment::load(file, root, registry, &overrides).map_err(|e| {
        for problem in registry.problems() {
            eprintln!("warning: skipped plugin {}: {}", problem.path.display(), problem.reason);
        }
        anyhow::Error::new(e)
    })?;
    if args.smoke {
        let first = plan.spec.seeds[0];
        plan.cells.retain(|c| c.key.seed == first);
    }
    Ok(plan)
}

/// `path` made absolute against the working directory, so that cell processes (started in
/// another directory) and records name the same place.
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}

pub fn run(args: RunArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let root = host.project_root()?;
    let file = args.experiment.clone().unwrap_or_else(|| root.join("experiments/default.ron"));
    let registry = host.open_registry();
    if args.list_cells
        && let Some(plan) = crate::tune::template_plan(&file, &root, &registry, &Overrides::default())?
    {
        eprintln!(
            "{} is a tuning file: `dmlbench tune` runs its trials, then these cells with the values chosen",
            file.display()
        );
        for cell in &plan.cells {
            println!("{}", cell.key.id());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let plan = load_plan(&file, &root, &registry, &args.plan, false)?;
    if args.list_cells {
        for cell in &plan.cells {
            println!("{}", cell.key.id());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let results = absolute(&args.results)?;
    for id in &args.cells {
        anyhow::ensure!(
            plan.cell(id).is_some(),
            "no cell '{id}' in {}; see `dmlbench run {} --list-cells`",
            file.display(),
            file.display()
        );
    }

    if let [id] = args.cells.as_slice() {
        // One cell in this process, with a progress bar: a cluster task.
        let cell = plan.cell(id).expect("checked above");
        return Ok(match run_single(&plan, cell, &registry, &results, false)? {
            CellOutcome::Record(record) => {
                println!("{id}: {}", describe(&record));
                if record.status == CellStatus::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) }
            }
            CellOutcome::Busy(owner) => {
                println!("{id}: left alone, {} is training it", dmlbench_abi::escape_terminal(&owner));
                ExitCode::SUCCESS
            }
        });
    }

    let options = RunOptions { results: results.clone(), only: args.cells.clone(), root };
    let summary = run_plan(&plan, &options)?;
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(["cell", "status"]);
    for (id, record) in &summary.cells {
        table.add_row([id.clone(), record.as_ref().map_or_else(|| "no record".into(), describe)]);
    }
    println!("{table}");
    if summary.skipped > 0 {
        println!("{} cell(s) were already complete and skipped", summary.skipped);
    }
    if !summary.busy.is_empty() {
        println!("{} cell(s) are being trained by other processes and were left to them:", summary.busy.len());
        for (id, owner) in &summary.busy {
            println!("  {id}: {}", dmlbench_abi::escape_terminal(owner));
        }
        println!("run this command again once they finish to see them here");
    }
    println!(
        "records in {}; render them with `dmlbench leaderboard {}`",
        plan.results_dir(&results).display(),
        results.display()
    );
    Ok(if summary.all_completed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
