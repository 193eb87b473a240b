//! `dmlbench tune EXPERIMENT.ron`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::HostArgs;
use super::run::absolute;
use crate::experiment::Overrides;
use crate::tune::{TuneOptions, TuneOutcome, tune};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench tune experiments/tune-default.ron
  dmlbench tune experiments/tune-default.ron --final-seeds 0,1,2,3,4
  dmlbench tune experiments/mine.ron --no-run     # write the next trials, run them on a cluster:
  dmlbench sweep results/mine-tuning/experiments/trials.ron --slurm --wait
  dmlbench tune experiments/mine.ron --no-run     # ... until it writes final.ron, then sweep that

Fields written as Tune(Uniform(a, b)), Tune(LogUniform(a, b)), Tune(Int(a, b)) or
Tune(Choice([...])) in a grid entry's loss_config or miner_config, or in training.optimizer,
are searched; `tuning: (trials: N, metric: \"map_at_r\", sampler: Default, batch: 1, seed: 0)`
sets the budget per grid entry. Trials train on the first seed and are scored on validation
data only (the test split is never loaded): their records go to <RESULTS>/<name>-tuning/.
Then the best trial of each entry runs with the experiment's seeds and the test split, as
<RESULTS>/<name>/, each record naming the trials behind it. Stopping and running again
continues with the same proposals.")]
pub struct TuneArgs {
    /// The experiment file with search spaces
    experiment: PathBuf,
    /// Results directory
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Seeds of the final runs instead of the file's (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "SEEDS")]
    final_seeds: Option<Vec<u64>>,
    /// Write the trials to run (or, at the end, the final runs) and stop without training
    #[arg(long)]
    no_run: bool,
    /// Train this many epochs instead of the file's
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Device instead of the file's `training.device`
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
}

pub fn run(args: TuneArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let root = host.project_root()?;
    let registry = host.open_registry();
    let options = TuneOptions {
        results: absolute(&args.results)?,
        root,
        final_seeds: args.final_seeds,
        no_run: args.no_run,
        overrides: Overrides { epochs: args.epochs, device: args.device, ..Overrides::default() },
    };
    match tune(&args.experiment, &registry, &options)? {
        TuneOutcome::TrialsPending { trials } => {
            println!(
                "cells to run: `dmlbench run {0}` (or `dmlbench sweep {0} --slurm --wait`), then `dmlbench tune {1}` again",
                trials.display(),
                args.experiment.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TuneOutcome::Done { final_file, summaries, all_completed } => {
            for (index, summary) in &summaries {
                let scored = summary.trials.iter().filter(|(_, s)| s.is_some()).count();
                let best = summary.trials.iter().find(|(t, _)| *t == summary.best).and_then(|(_, s)| *s);
                let chosen: Vec<String> = summary.chosen.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                println!(
                    "grid[{index}]: best of {scored} trials {} (validation {} {:.4}): {}",
                    summary.best,
                    summary.metric,
                    best.unwrap_or(f64::NAN),
                    chosen.join(", ")
                );
            }
            println!(
                "final runs: {} (render with `dmlbench leaderboard {}`)",
                final_file.display(),
                options.results.display()
            );
            Ok(if all_completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
