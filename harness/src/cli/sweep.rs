//! `dmlbench sweep EXPERIMENT.ron --slurm`: the experiment's cells as a Slurm array job.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use super::HostArgs;
use super::run::{PlanArgs, absolute, load_plan};
use super::status::print_states;
use crate::cluster::queue::{Submission, SubmissionLog};
use crate::cluster::script::{SlurmOptions, TaskCommand, array_script};
use crate::cluster::status::{CellState, cell_states};
use crate::train::unix_seconds;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench sweep experiments/paper-cub.ron --slurm --partition gpu --gpus-per-task 1 --time 08:00:00 --device tch-cuda:0
  dmlbench sweep experiments/paper-cub.ron --slurm --dry-run        # print the script, submit nothing
  dmlbench sweep --slurm --smoke --wait                             # the default experiment, one epoch, until done
  dmlbench sweep experiments/mining.ron --slurm --throttle 8 --sbatch=--qos=low

One array task per cell that is neither completed nor running nor queued, so sweeping again
submits only what is left. The script goes to <RESULTS>/<experiment>/slurm/, task output to
slurm/<job>_<task>.out beside it. Tasks request requeue and a USR1 signal --grace seconds
before their time limit, on which they requeue themselves; a requeued task resumes its cell
from the last checkpoint. `dmlbench status` shows where every cell stands.")]
pub struct SweepArgs {
    /// Experiment file [default: experiments/default.ron under the project root]
    experiment: Option<PathBuf>,
    /// Results directory, on a file system every node shares
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Submit to Slurm with sbatch (the scheduler dmlbench supports)
    #[arg(long)]
    slurm: bool,
    /// Slurm partition
    #[arg(long)]
    partition: Option<String>,
    /// Slurm account
    #[arg(long)]
    account: Option<String>,
    /// Time limit per task, in Slurm's format (e.g. 08:00:00, 2-00)
    #[arg(long)]
    time: Option<String>,
    /// CPUs per task
    #[arg(long, value_name = "N")]
    cpus_per_task: Option<u32>,
    /// GPUs per task
    #[arg(long, value_name = "N")]
    gpus_per_task: Option<u32>,
    /// Memory per node, in Slurm's format (e.g. 32G)
    #[arg(long)]
    mem: Option<String>,
    /// At most this many tasks at once (the array's %N)
    #[arg(long, value_name = "N")]
    throttle: Option<u32>,
    /// Seconds before the time limit at which a task requeues itself
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    grace: u32,
    /// A further #SBATCH option (repeatable), after the experiment file's `slurm.sbatch`
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    sbatch: Vec<String>,
    /// Print the script and submit nothing
    #[arg(long)]
    dry_run: bool,
    /// Wait until every task has ended; exit code 1 if any cell is not completed
    #[arg(long)]
    wait: bool,
    /// Seconds between looks at the queue while waiting
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    poll: f64,
    #[command(flatten)]
    plan: PlanArgs,
}

pub fn run(args: SweepArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    if !args.slurm {
        bail!("say which scheduler to submit to: --slurm (the one dmlbench supports)");
    }
    anyhow::ensure!(args.poll.is_finite() && args.poll > 0.0, "--poll must be a positive number of seconds");
    let root = host.project_root()?;
    let file = absolute(&args.experiment.clone().unwrap_or_else(|| root.join("experiments/default.ron")))?;
    // Builds stale plugins once here, so that the tasks (run with --no-build) find them built.
    let registry = host.open_registry();
    let plan = load_plan(&file, &root, &registry, &args.plan, false)?;
    let results = absolute(&args.results)?;
    let dir = plan.results_dir(&results);
    let slurm_dir = dir.join("slurm");

    let to_submit: Vec<String> = cell_states(&plan, &dir)?
        .cells
        .iter()
        .filter(|(_, state)| state.needs_submitting())
        .map(|(id, _)| id.clone())
        .collect();
    let job_name = format!("dmlbench-{}", plan.spec.name);
    if to_submit.is_empty() {
        println!("nothing to submit: every cell of {} is completed, running or queued", plan.spec.name);
    } else {
        let options = SlurmOptions {
            partition: args.partition.clone(),
            account: args.account.clone(),
            time: args.time.clone(),
            cpus_per_task: args.cpus_per_task,
            gpus_per_task: args.gpus_per_task,
            mem: args.mem.clone(),
            throttle: args.throttle,
            grace_s: args.grace,
            extra: plan.spec.slurm.sbatch.iter().chain(&args.sbatch).cloned().collect(),
        };
        let task = TaskCommand {
            dmlbench: std::env::current_exe().context("locating the dmlbench executable")?,
            root: root.clone(),
            experiment: file.clone(),
            results: results.clone(),
            run_args: args.plan.as_run_args(),
        };
        let script = array_script(&job_name, &to_submit, &slurm_dir, &options, &task);
        if args.dry_run {
            print!("{script}");
            return Ok(ExitCode::SUCCESS);
        }
        std::fs::create_dir_all(&slurm_dir).with_context(|| format!("creating {}", slurm_dir.display()))?;
        crate::train::runner::copy_experiment(&plan, &dir)?;
        let script_path = slurm_dir.join(format!("{}-{}.sh", plan.spec.name, unix_seconds()));
        std::fs::write(&script_path, &script).with_context(|| format!("writing {}", script_path.display()))?;
        let job_id = submit(&script_path)?;
        SubmissionLog::in_dir(&slurm_dir).append(Submission {
            job_id: job_id.clone(),
            cells: to_submit.clone(),
            script: script_path.clone(),
            submitted_unix_s: unix_seconds(),
        })?;
        println!("submitted {} cells as Slurm array job {job_id} ({})", to_submit.len(), script_path.display());
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let poll = Duration::from_secs_f64(args.poll);
    loop {
        let status = cell_states(&plan, &dir)?;
        if status.queue_unreadable {
            bail!("squeue cannot be run here, so the tasks cannot be followed");
        }
        let states = &status.cells;
        if !states.iter().any(|(_, s)| s.in_progress()) {
            print_states(&plan, &dir, states, false);
            let all_done = states.iter().all(|(_, s)| matches!(s, CellState::Completed { .. }));
            return Ok(if all_done { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        std::thread::sleep(poll);
    }
}

/// `sbatch --parsable SCRIPT`: the job id.
fn submit(script: &std::path::Path) -> anyhow::Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .context("running sbatch (is Slurm's client installed here?)")?;
    if !output.status.success() {
        bail!("sbatch refused {}: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout.trim().split(';').next().unwrap_or_default().to_string();
    anyhow::ensure!(!id.is_empty() && id.chars().all(|c| c.is_ascii_digit()), "sbatch printed no job id: {stdout}");
    Ok(id)
}
