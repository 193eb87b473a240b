//! `dmlbench run [EXPERIMENT.ron]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use super::HostArgs;
use crate::experiment::{self, Overrides};
use crate::report::record::CellStatus;
use crate::train::runner::{CellOutcome, RunOptions, describe, run_plan, run_single};
use dmlbench_host::parent::follow_parent;
use dmlbench_host::resolve_root;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench run                                   # experiments/default.ron, synthetic data made on first use
  dmlbench run experiments/paper-cub.ron
  dmlbench run experiments/paper-cub.ron --device tch-cuda:0   # a binary built with --features tch
  dmlbench run --smoke --results /tmp/smoke      # one epoch, first seed, into /tmp/smoke/default-smoke/
  dmlbench run experiments/paper-sop.ron --list-cells
  dmlbench run experiments/paper-sop.ron --cell cross_entropy-seed0   # one cell, e.g. a Slurm array task

Each cell trains in its own process and writes results/<experiment>/<cell>.ron after every
epoch, with a checkpoint. Running again skips completed cells and resumes interrupted ones
from their last checkpoint; Ctrl-C or a kill leaves every file consistent. The exit code is 1
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
    /// Progress as JSON lines on stdout (what `run` reads from its cell processes)
    #[arg(long, value_enum, hide = true)]
    events: Option<EventsFormat>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EventsFormat {
    Json,
}

pub fn run(args: RunArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let root = resolve_root(host.root.as_deref())
        .context("no project root found (a directory with plugins/ and Cargo.toml); pass --root")?;
    let file = args.experiment.clone().unwrap_or_else(|| root.join("experiments/default.ron"));
    let registry = host.open_registry();
    let overrides = Overrides {
        epochs: if args.smoke { Some(1) } else { args.epochs },
        device: args.device.clone(),
        smoke: args.smoke,
        create_timeout: args.create_timeout,
        skip_plugin_creation: args.events.is_some(),
    };
    let mut plan = experiment::load(&file, &root, &registry, &overrides).map_err(|e| {
        for problem in registry.problems() {
            eprintln!("warning: skipped plugin {}: {}", problem.path.display(), problem.reason);
        }
        anyhow::Error::new(e)
    })?;
    if args.smoke {
        let first = plan.spec.seeds[0];
        plan.cells.retain(|c| c.key.seed == first);
    }
    if args.list_cells {
        for cell in &plan.cells {
            println!("{}", cell.key.id());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let results =
        if args.results.is_absolute() { args.results.clone() } else { std::env::current_dir()?.join(&args.results) };
    for id in &args.cells {
        anyhow::ensure!(
            plan.cell(id).is_some(),
            "no cell '{id}' in {}; see `dmlbench run {} --list-cells`",
            file.display(),
            file.display()
        );
    }

    if !args.cells.is_empty() && (args.events.is_some() || args.cells.len() == 1) {
        // One cell (or a few) in this process: a cell process of `run`, or a cluster task.
        if args.events.is_some() {
            follow_parent();
        }
        let mut all_completed = true;
        for id in &args.cells {
            let cell = plan.cell(id).expect("checked above");
            match run_single(&plan, cell, &registry, &results, args.events.is_some())? {
                CellOutcome::Record(record) => {
                    if args.events.is_none() {
                        println!("{id}: {}", describe(&record));
                    }
                    all_completed &= record.status == CellStatus::Completed;
                }
                CellOutcome::Busy(owner) => {
                    if args.events.is_none() {
                        println!("{id}: left alone, {owner} is training it");
                    }
                }
            }
        }
        return Ok(if all_completed { ExitCode::SUCCESS } else { ExitCode::from(1) });
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
            println!("  {id}: {}", dmlbench_host::errors::escape_terminal(owner));
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
