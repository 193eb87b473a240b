//! The command line: parsing in [`Cli`], one module per command.
//!
//! Every command returns an exit code: 0 on success, 1 when a check or a run found failures
//! (a plugin failing `plugins check`, a corrupt image, a failed cell), 2 when the command
//! itself could not be carried out (a missing file, an unknown plugin, a bad argument). An
//! error is printed once, with its chain of causes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use dmlbench_host::{HostOptions, Registry, plugin_path_dirs};

mod batch_input;
mod cell;
mod data;
mod download;
mod embed;
mod eval;
mod leaderboard;
mod loss;
mod mine;
mod plugins;
mod run;
mod state;
mod status;
mod sweep;
mod tune;

/// Deep metric learning benchmarks: losses and miners as plugins, leaderboards you can trust.
#[derive(Debug, Parser)]
#[command(name = "dmlbench", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Examples:
  dmlbench run
  dmlbench leaderboard
  dmlbench plugins list
  dmlbench plugins check contrastive
  dmlbench loss contrastive --embeddings e.npy --labels l.npy --miner batch_hard --json
  dmlbench data synth --format cub --out data/synthetic-cub
  dmlbench data download cub
  dmlbench weights download resnet50
  dmlbench eval --embeddings e.npy --labels l.npy --k 1,2,4,8")]
pub struct Cli {
    #[command(flatten)]
    host: HostArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where plugins come from; shared by every command that loads them.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Project root holding plugins/ [default: the nearest ancestor of the current directory
    /// with plugins/ and Cargo.toml]
    #[arg(long, global = true, value_name = "DIR", env = "DMLBENCH_ROOT")]
    root: Option<PathBuf>,
    /// Do not build stale plugin crates; skip them instead
    #[arg(long, global = true)]
    no_build: bool,
}

impl HostArgs {
    /// The project root: `--root`, or the nearest ancestor with plugins/ and Cargo.toml.
    pub fn project_root(&self) -> anyhow::Result<PathBuf> {
        dmlbench_host::resolve_root(self.root.as_deref()).ok_or_else(|| {
            anyhow::anyhow!("no project root found (a directory with plugins/ and Cargo.toml); pass --root")
        })
    }

    /// Finds, builds and loads the plugins.
    pub fn open_registry(&self) -> Registry {
        Registry::open(&HostOptions {
            root: self.root.clone(),
            build: !self.no_build,
            plugin_path: plugin_path_dirs(),
            load_in_child_first: true,
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train and test every cell of an experiment (default: experiments/default.ron).
    Run(run::RunArgs),
    /// Submit an experiment's cells to a Slurm cluster as an array job.
    Sweep(sweep::SweepArgs),
    /// Tune the Tune(...) fields of an experiment on validation data, then run the best values.
    Tune(tune::TuneArgs),
    /// Where each cell of an experiment stands: completed, failed, running, queued, pending.
    Status(status::StatusArgs),
    /// List, show, check and create loss and miner plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Evaluate a loss (and optionally a miner) on saved embeddings: value and gradient.
    Loss(loss::LossArgs),
    /// Run a miner on saved embeddings and print its tuples.
    Mine(mine::MineArgs),
    /// Datasets: generate synthetic ones, download and check real ones.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Pretrained weights: download torchvision's ImageNet ResNets.
    #[command(subcommand)]
    Weights(download::WeightsCommand),
    /// Embed a dataset split with a trained checkpoint or a pretrained backbone.
    Embed(embed::EmbedArgs),
    /// Retrieval and clustering metrics of saved embeddings.
    Eval(eval::EvalArgs),
    /// Render leaderboards (terminal, Markdown, HTML, JSON) from result records.
    Leaderboard(leaderboard::LeaderboardArgs),
    /// Train one cell, reporting progress as JSON lines (`dmlbench run` starts this itself).
    #[command(hide = true)]
    Cell(cell::CellArgs),
    /// Run one plugin job sent on stdin (dmlbench starts this itself; see
    /// `dmlbench_host::isolated`).
    #[command(name = "plugin-job", hide = true)]
    PluginJob,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args, &cli.host),
        Command::Sweep(args) => sweep::run(args, &cli.host),
        Command::Tune(args) => tune::run(args, &cli.host),
        Command::Status(args) => status::run(args, &cli.host),
        Command::Cell(args) => cell::run(args, &cli.host),
        Command::Plugins(command) => plugins::run(command, &cli.host),
        Command::Loss(args) => loss::run(args, &cli.host),
        Command::Mine(args) => mine::run(args, &cli.host),
        Command::Data(command) => data::run(command, &cli.host),
        Command::Weights(command) => download::weights(command, &cli.host),
        Command::Embed(args) => embed::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Leaderboard(args) => leaderboard::run(args, &cli.host),
        Command::PluginJob => return dmlbench_host::isolated::serve(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", dmlbench_host::errors::describe(error.as_ref()));
            ExitCode::from(2)
        }
    }
}
