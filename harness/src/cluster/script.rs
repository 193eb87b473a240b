//! The Slurm array job script of a sweep: one array task per cell.
//!
//! Each task runs `dmlbench run EXPERIMENT --cell ID` for the cell its index names. Tasks ask
//! to be requeued (`--requeue`) and to be warned before their time limit (`--signal=B:USR1@S`,
//! sent to the batch shell): on the warning the task requeues itself, Slurm ends it, and the
//! requeued task resumes the cell from its last checkpoint (a lock left by the earlier
//! incarnation is taken over at once: see `train::lock::SlurmTask`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Slurm's own options, as `sbatch` names them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time` (Slurm's formats: `MM`, `HH:MM:SS`, `D-HH`...).
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--gpus-per-task`.
    pub gpus_per_task: Option<u32>,
    /// `--mem` (`16G`, `64000M`...).
    pub mem: Option<String>,
    /// At most this many tasks at once (the array's `%N`).
    pub throttle: Option<u32>,
    /// Seconds before the time limit at which a task requeues itself.
    pub grace_s: u32,
    /// Further `#SBATCH` options, from the experiment file and the command line.
    pub extra: Vec<String>,
}

/// What every task runs, besides its cell.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskCommand {
    /// The dmlbench executable.
    pub dmlbench: PathBuf,
    /// The project root.
    pub root: PathBuf,
    /// The experiment file.
    pub experiment: PathBuf,
    /// The results directory (`--results`).
    pub results: PathBuf,
    /// Further `dmlbench run` arguments (`--device`, `--smoke`, `--epochs`).
    pub run_args: Vec<String>,
}

/// The script for `cells`, named `job_name`, writing task output under `log_dir`.
pub fn array_script(
    job_name: &str,
    cells: &[String],
    log_dir: &Path,
    options: &SlurmOptions,
    task: &TaskCommand,
) -> String {
    assert!(!cells.is_empty(), "an array job needs at least one cell");
    let mut s = String::from("#!/bin/bash\n");
    let mut line = |option: String| writeln!(s, "#SBATCH {option}").expect("writing to a String");
    line(format!("--job-name={job_name}"));
    let throttle = options.throttle.map_or(String::new(), |n| format!("%{n}"));
    line(format!("--array=0-{}{throttle}", cells.len() - 1));
    line(format!("--output={}", log_dir.join("%A_%a.out").display()));
    line("--open-mode=append".into());
    line("--requeue".into());
    line(format!("--signal=B:USR1@{}", options.grace_s));
    let optional = [
        ("partition", options.partition.clone()),
        ("account", options.account.clone()),
        ("time", options.time.clone()),
        ("cpus-per-task", options.cpus_per_task.map(|n| n.to_string())),
        ("gpus-per-task", options.gpus_per_task.map(|n| n.to_string())),
        ("mem", options.mem.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            line(format!("--{name}={value}"));
        }
    }
    for extra in &options.extra {
        line(extra.trim().to_string());
    }
    let quoted: Vec<String> = cells.iter().map(|c| quote(c)).collect();
    let mut command = vec![
        quote(&task.dmlbench.to_string_lossy()),
        "--root".into(),
        quote(&task.root.to_string_lossy()),
        "--no-build".into(),
        "run".into(),
        quote(&task.experiment.to_string_lossy()),
        "--results".into(),
        quote(&task.results.to_string_lossy()),
        "--cell".into(),
        "\"$cell\"".into(),
    ];
    command.extend(task.run_args.iter().map(|a| quote(a)));
    write!(
        s,
        r#"
# Written by `dmlbench sweep`: one task per cell of {experiment}.
set -u
cells=({cells})
cell="${{cells[$SLURM_ARRAY_TASK_ID]}}"
task="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
echo "dmlbench: task $task (restart ${{SLURM_RESTART_COUNT:-0}}) trains $cell on $(hostname)"

# Near the time limit Slurm sends USR1 to this shell: requeue the task, which resumes the cell
# from its last checkpoint once Slurm has ended this incarnation.
trap 'echo "dmlbench: time limit near, requeuing $task"; scontrol requeue "$task"' USR1

{command} &
child=$!
# `wait` returns early when the trap runs; keep waiting until the cell's run has ended.
while true; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || exit "$status"
done
"#,
        experiment = task.experiment.display(),
        cells = quoted.join(" "),
        command = command.join(" "),
    )
    .expect("writing to a String");
    s
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:+=%@,".contains(c)) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> TaskCommand {
        TaskCommand {
            dmlbench: "/opt/dmlbench/bin/dmlbench".into(),
            root: "/home/me/bench".into(),
            experiment: "/home/me/bench/experiments/paper cub.ron".into(),
            results: "/scratch/results".into(),
            run_args: vec!["--device".into(), "tch-cuda:0".into()],
        }
    }

    #[test]
    fn options_become_sbatch_lines_and_cells_an_array() {
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            time: Some("04:00:00".into()),
            gpus_per_task: Some(1),
            throttle: Some(4),
            grace_s: 300,
            extra: vec!["--qos=high".into()],
            ..SlurmOptions::default()
        };
        let cells = ["cross_entropy-seed0".to_string(), "contrastive+batch_hard-seed0".into(), "x[y]-seed1".into()];
        let script = array_script("dmlbench-cub", &cells, Path::new("/scratch/results/cub/slurm"), &options, &task());
        let sbatch: Vec<&str> = script.lines().filter(|l| l.starts_with("#SBATCH")).collect();
        assert_eq!(
            sbatch,
            [
                "#SBATCH --job-name=dmlbench-cub",
                "#SBATCH --array=0-2%4",
                "#SBATCH --output=/scratch/results/cub/slurm/%A_%a.out",
                "#SBATCH --open-mode=append",
                "#SBATCH --requeue",
                "#SBATCH --signal=B:USR1@300",
                "#SBATCH --partition=gpu",
                "#SBATCH --time=04:00:00",
                "#SBATCH --gpus-per-task=1",
                "#SBATCH --qos=high",
            ]
        );
        assert!(script.contains("cells=(cross_entropy-seed0 contrastive+batch_hard-seed0 'x[y]-seed1')"), "{script}");
        assert!(
            script.contains(
                "/opt/dmlbench/bin/dmlbench --root /home/me/bench --no-build run \
                 '/home/me/bench/experiments/paper cub.ron' --results /scratch/results --cell \"$cell\" \
                 --device tch-cuda:0 &"
            ),
            "{script}"
        );
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(quote("plain-name_1.ron"), "plain-name_1.ron");
        assert_eq!(quote("it's here"), r"'it'\''s here'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }
}
