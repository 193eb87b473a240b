//! `dmlbench sweep --slurm` and `dmlbench status` against a real Slurm controller: the one
//! `scripts/slurm-local.sh start` brings up (CI does, then sets DMLBENCH_REQUIRE_SLURM=1).
//! Without a controller these tests say so and pass, unless DMLBENCH_REQUIRE_SLURM=1 asks for
//! one.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::experiment::{experiment, record, result_of, run_to_the_end, tuning_experiment};
use common::{dmlbench, run};
use dmlbench_record::{CellRecord, CellStatus};

/// Whether a controller answers; panics when one is required and does not.
fn slurm_is_here() -> bool {
    let answers = Command::new("sinfo").arg("--noheader").output().is_ok_and(|o| o.status.success());
    if !answers {
        assert!(
            std::env::var("DMLBENCH_REQUIRE_SLURM").as_deref() != Ok("1"),
            "DMLBENCH_REQUIRE_SLURM=1 but no Slurm controller answers (start one: scripts/slurm-local.sh start)"
        );
        eprintln!("skipped: no Slurm controller answers here (scripts/slurm-local.sh start brings one up)");
    }
    answers
}

/// `dmlbench sweep FILE --slurm --results RESULTS ARGS...`: (exit code, stdout, stderr).
fn sweep(file: &Path, results: &Path, args: &[&str]) -> (i32, String, String) {
    run(dmlbench().arg("sweep").arg(file).arg("--slurm").arg("--results").arg(results).args(args))
}

#[test]
fn a_sweep_runs_every_cell_and_a_second_submits_nothing() {
    if !slurm_is_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file =
        experiment(dir.path(), "swept", 2, r#"(loss: "cross_entropy"), (loss: "contrastive", miner: "batch_hard")"#);
    let results = dir.path().join("results");

    // The dry run's script is one sbatch accepts.
    let (code, script, stderr) = sweep(&file, &results, &["--dry-run", "--time", "00:10:00"]);
    assert_eq!(code, 0, "{stderr}");
    let script_file = dir.path().join("dry-run.sh");
    std::fs::write(&script_file, &script).unwrap();
    let test_only = Command::new("sbatch").arg("--test-only").arg(&script_file).output().unwrap();
    assert!(test_only.status.success(), "sbatch --test-only: {}", String::from_utf8_lossy(&test_only.stderr));
    assert!(!results.join("swept/slurm").exists(), "a dry run writes nothing");

    let (code, stdout, stderr) = sweep(&file, &results, &["--wait", "--poll", "1"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("submitted 2 cells as Slurm array job"), "{stdout}");
    assert!(stdout.contains("2 cells: 2 completed"), "{stdout}");
    for cell in ["cross_entropy-seed0", "contrastive+batch_hard-seed0"] {
        assert_eq!(record(&results, "swept", cell).status, CellStatus::Completed, "{cell}");
    }
    let (code, stdout, stderr) = run(dmlbench().arg("status").arg(results.join("swept")));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("2 cells: 2 completed, 0 running, 0 queued, 0 failed, 0 pending"), "{stdout}");

    let (code, stdout, stderr) = sweep(&file, &results, &["--wait", "--poll", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("nothing to submit"), "{stdout}");
}

/// A task requeued in the middle of its cell resumes from the checkpoint and ends with the
/// record of a run never interrupted.
#[test]
fn a_requeued_task_resumes_its_cell() {
    if !slurm_is_here() {
        return;
    }
    const EPOCHS: usize = 12;
    let grid = r#"(loss: "contrastive", miner: "batch_hard")"#;
    let cell = "contrastive+batch_hard-seed0";
    let reference_dir = tempfile::tempdir().unwrap();
    let reference_file = experiment(reference_dir.path(), "requeue", EPOCHS, grid);
    run_to_the_end(&reference_file, &reference_dir.path().join("results"));
    let reference = record(&reference_dir.path().join("results"), "requeue", cell);

    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "requeue", EPOCHS, grid);
    let results = dir.path().join("results");
    let (code, stdout, stderr) = sweep(&file, &results, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let job = stdout.split("Slurm array job ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string();

    // Requeue once an epoch is checkpointed, while later ones train.
    let record_path = results.join(format!("requeue/{cell}.ron"));
    let progress = results.join(format!("requeue/checkpoints/{cell}/progress.ron"));
    let deadline = Instant::now() + Duration::from_secs(300);
    while !(CellRecord::load(&record_path).is_ok_and(|r| !r.epochs.is_empty()) && progress.is_file()) {
        assert!(Instant::now() < deadline, "no epoch checkpointed in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    let interrupted = CellRecord::load(&record_path).unwrap();
    assert!(interrupted.epochs.len() < EPOCHS, "the cell ended before it could be requeued");
    let requeue = Command::new("scontrol").args(["requeue", &format!("{job}_0")]).output().unwrap();
    assert!(requeue.status.success(), "scontrol requeue: {}", String::from_utf8_lossy(&requeue.stderr));

    // The requeued task runs again and completes the cell.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let queue = Command::new("squeue").args(["--noheader", "--jobs", &job]).output().unwrap();
        let in_queue = queue.status.success() && !String::from_utf8_lossy(&queue.stdout).trim().is_empty();
        if !in_queue && CellRecord::load(&record_path).is_ok_and(|r| r.status == CellStatus::Completed) {
            break;
        }
        assert!(Instant::now() < deadline, "the requeued task did not finish in time");
        std::thread::sleep(Duration::from_millis(500));
    }
    let done = record(&results, "requeue", cell);
    assert!(done.resumed >= 1, "the requeued task did not resume from the checkpoint");
    assert_eq!(result_of(&done), result_of(&reference));
    let log = std::fs::read_to_string(results.join(format!("requeue/slurm/{job}_0.out"))).unwrap();
    assert!(log.contains("(restart 1)"), "the task's output shows no second incarnation:\n{log}");
}

/// The README's loop: `tune --no-run` writes each batch of trials, a sweep runs it as one
/// array, until `tune` writes the final runs, which a last sweep runs.
#[test]
fn tuning_trials_run_as_arrays() {
    if !slurm_is_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = tuning_experiment(dir.path());
    let results = dir.path().join("results");
    let mut sweeps = 0;
    loop {
        let (code, stdout, stderr) =
            run(dmlbench().arg("tune").arg(&file).arg("--no-run").arg("--results").arg(&results));
        assert_eq!(code, 0, "{stderr}");
        let done = stdout.contains("final.ron");
        let next = results.join("tn-tuning/experiments").join(if done { "final.ron" } else { "trials.ron" });
        let (code, stdout, stderr) = sweep(&next, &results, &["--wait", "--poll", "1"]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        sweeps += 1;
        assert!(sweeps <= 4, "the tuning never wrote its final runs");
        if done {
            break;
        }
    }
    // Batches of 2 of 3 trials per entry: two arrays of trials, then the final runs.
    assert_eq!(sweeps, 3);
    for cell in ["contrastive-seed0", "contrastive-seed1", "cross_entropy-seed0", "cross_entropy-seed1"] {
        let record = record(&results, "tn", cell);
        assert_eq!(record.status, CellStatus::Completed, "{cell}");
        assert_eq!(record.tuning.as_ref().map(|t| t.trials.len()), Some(3), "{cell}");
    }
}
