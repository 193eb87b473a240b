//! `dmlbench run` end to end on tiny synthetic data: records, skipping finished cells,
//! resuming a killed run, a crashing plugin costing one cell, and experiment files with
//! several mistakes reported at once.

mod common;

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::path::Path;
use std::time::{Duration, Instant};

use common::experiment::{
    Size, experiment, experiment_sized, kill_after_first_epoch, record, result_of, run_to_the_end, spawn_run,
};
use common::{build_cdylib, dmlbench, run};
use dmlbench_record::{CellRecord, CellStatus};

/// Changes the experiment file: `anchor` becomes `replacement`.
fn edit(file: &Path, anchor: &str, replacement: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(anchor), "{} has no '{anchor}'", file.display());
    std::fs::write(file, text.replace(anchor, replacement)).unwrap();
}

/// Why a cell failed, from its record; panics when it did not fail.
fn failure_reason(record: &CellRecord) -> String {
    match &record.status {
        CellStatus::Failed { reason } => reason.clone(),
        other => panic!("the cell did not fail: {other:?}"),
    }
}

#[test]
fn run_writes_complete_records_and_skips_finished_cells() {
    let dir = tempfile::tempdir().unwrap();
    let file =
        experiment(dir.path(), "tiny", 2, r#"(loss: "cross_entropy"), (loss: "contrastive", miner: "batch_hard")"#);
    let results = dir.path().join("results");
    let (_, stderr) = run_to_the_end(&file, &results);
    assert!(stderr.contains("generating the synthetic cub dataset"), "{stderr}");

    let ce = record(&results, "tiny", "cross_entropy-seed0");
    assert_eq!(ce.status, CellStatus::Completed);
    assert_eq!(ce.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(ce.final_metrics.as_ref(), ce.epochs[1].test.as_ref(), "Last selection reports the last epoch");
    assert!(ce.initial_test.is_some(), "the untrained baseline is recorded");
    let metrics = ce.final_metrics.as_ref().unwrap();
    assert_eq!(metrics.recall_at_k.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert!(metrics.nmi.is_some());
    // 4 test classes × 8 images, every query has other members of its class.
    assert_eq!((metrics.queries, metrics.skipped_queries), (32, 0));
    assert_eq!((ce.dataset.train_images, ce.dataset.train_classes, ce.dataset.test_images), (32, 4, 32));
    let epoch = &ce.epochs[0];
    assert_eq!(epoch.images, 32, "one epoch is one pass over the training images");
    let t = &epoch.timing;
    assert!(t.forward_s > 0.0 && t.backward_s > 0.0 && t.eval_s > 0.0 && t.total_s >= t.forward_s + t.backward_s);
    assert!(epoch.images_per_second > 0.0 && ce.peak_rss_bytes > 0);
    assert_eq!(ce.plugins[0].id, "cross_entropy");
    assert_eq!(ce.environment.backend, "flex");

    let pairwise = record(&results, "tiny", "contrastive+batch_hard-seed0");
    assert_eq!(pairwise.status, CellStatus::Completed);
    assert_eq!(pairwise.plugins.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["contrastive", "batch_hard"]);
    assert!(pairwise.epochs[0].plugin_stats.contains_key("miner.triplets"), "{:?}", pairwise.epochs[0].plugin_stats);

    // Every miner's tuples are counted the same way, and every plugin's library is
    // fingerprinted.
    assert!(pairwise.epochs[0].plugin_stats["mined.tuples"] > 0.0, "{:?}", pairwise.epochs[0].plugin_stats);
    assert!(pairwise.plugins.iter().chain(&ce.plugins).all(|p| p.library.len() == 16), "{:?}", pairwise.plugins);

    // Running again does no work.
    let (code, stdout, _) = run(dmlbench().arg("run").arg(&file).arg("--results").arg(&results));
    assert_eq!(code, 0);
    assert!(stdout.contains("2 cell(s) were already complete and skipped"), "{stdout}");
    assert_eq!(record(&results, "tiny", "cross_entropy-seed0"), ce);

    // A record written by another build of batch_hard is stale: its cell, and only its cell,
    // runs again, saying why; --keep-stale keeps it.
    let path = results.join("tiny").join("contrastive+batch_hard-seed0.ron");
    let make_stale = || {
        let mut stale = CellRecord::load(&path).unwrap();
        stale.plugins[1].library = "0123456789abcdef".into();
        stale.save(&path).unwrap();
    };
    make_stale();
    let (code, stdout, stderr) = run(dmlbench().arg("leaderboard").arg(&results).arg("--mark-stale"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("stale: batch_hard changed since"), "{stdout}");
    let (_, plain, _) = run(dmlbench().arg("leaderboard").arg(&results));
    assert!(!plain.contains("stale"), "only --mark-stale looks at the plugins: {plain}");
    let mut keep = dmlbench();
    keep.arg("run").arg(&file).arg("--results").arg(&results).arg("--keep-stale");
    let (code, stdout, stderr) = run(&mut keep);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("2 cell(s) were already complete and skipped"), "{stdout}");
    assert_eq!(record(&results, "tiny", "contrastive+batch_hard-seed0").plugins[1].library, "0123456789abcdef");
    let (stdout, stderr) = run_to_the_end(&file, &results);
    assert!(
        stderr.contains("contrastive+batch_hard-seed0: batch_hard changed since this record: re-running"),
        "{stderr}"
    );
    assert!(stdout.contains("1 cell(s) were already complete and skipped"), "{stdout}");
    let rerun = record(&results, "tiny", "contrastive+batch_hard-seed0");
    assert_eq!(rerun.plugins[1].library, pairwise.plugins[1].library, "the new record has the current library");
    assert_eq!(rerun.resumed, 0, "trained again from the start, not finished from the old checkpoint");
    assert_eq!(record(&results, "tiny", "cross_entropy-seed0"), ce, "the other cell was left alone");
}

/// A plugin's code changes, not its configuration, id or version: the C loss is rebuilt with
/// another string in its extension. The next run trains again exactly the cells that used it,
/// from the start, and leaves the other loss's records as they were.
#[test]
fn a_plugin_rebuilt_with_other_code_re_runs_exactly_its_cells() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let library = plugins.join(format!("{DLL_PREFIX}c_center_pull{DLL_SUFFIX}"));
    common::compile_c_plugin(&["center_pull.c"], &library);
    let file = experiment(dir.path(), "rebuilt", 1, r#"(loss: "c_center_pull"), (loss: "cross_entropy")"#);
    edit(&file, "seeds: [0],", "seeds: [0, 1],");
    let results = dir.path().join("results");
    let run_with_plugins = || {
        let (code, stdout, stderr) =
            run(dmlbench().env("DMLBENCH_PLUGIN_PATH", &plugins).arg("run").arg(&file).arg("--results").arg(&results));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        (stdout, stderr)
    };
    run_with_plugins();
    let cells = ["c_center_pull-seed0", "c_center_pull-seed1", "cross_entropy-seed0", "cross_entropy-seed1"];
    let before: Vec<CellRecord> = cells.iter().map(|cell| record(&results, "rebuilt", cell)).collect();
    assert!(before.iter().all(|r| r.status == CellStatus::Completed), "{before:?}");

    let (stdout, _) = run_with_plugins();
    assert!(stdout.contains("4 cell(s) were already complete and skipped"), "nothing changed yet: {stdout}");

    common::compile_c_plugin_with(&["center_pull.c"], &["LANGUAGE=\"C11\""], &library);
    let (stdout, stderr) = run_with_plugins();
    for seed in 0..2 {
        let said = format!("c_center_pull-seed{seed}: c_center_pull changed since this record: re-running");
        assert!(stderr.contains(&said), "{stderr}");
    }
    assert!(!stderr.contains("cross_entropy changed"), "{stderr}");
    assert!(stdout.contains("2 cell(s) were already complete and skipped"), "{stdout}");
    for (cell, old) in cells.iter().zip(&before) {
        let new = record(&results, "rebuilt", cell);
        if cell.starts_with("c_center_pull") {
            assert_ne!(new.plugins[0].library, old.plugins[0].library, "{cell}: the record names the new library");
            assert_eq!((new.status.clone(), new.resumed), (CellStatus::Completed, 0), "{cell}: trained from the start");
            assert!(new.started_unix_s >= old.updated_unix_s, "{cell}: a new run, not the old record");
        } else {
            assert_eq!(&new, old, "{cell} used no changed plugin and was left alone");
        }
    }
}

#[test]
fn a_killed_run_resumes_from_its_checkpoint() {
    const EPOCHS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    // Many short epochs, so the kill lands well before the end whatever the machine's speed.
    let file = experiment(dir.path(), "resume", EPOCHS, r#"(loss: "cross_entropy")"#);
    let results = dir.path().join("results");
    let record_path = results.join("resume/cross_entropy-seed0.ron");
    let child = spawn_run(&file, &results, &["--cell", "cross_entropy-seed0"]);
    // Kill the cell once its first epoch is checkpointed and recorded (in the middle of a later
    // one): this test is about resuming.
    let progress = results.join("resume/checkpoints/cross_entropy-seed0/progress.ron");
    kill_after_first_epoch(child, &record_path, &progress);
    let interrupted = CellRecord::load(&record_path).expect("the record stays readable after a kill");
    assert_eq!(interrupted.status, CellStatus::Running);
    assert!(!interrupted.epochs.is_empty() && interrupted.epochs.len() < EPOCHS);

    run_to_the_end(&file, &results);
    let done = CellRecord::load(&record_path).unwrap();
    assert_eq!(done.status, CellStatus::Completed);
    assert_eq!(done.resumed, 1);
    assert_eq!(done.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), (1..=EPOCHS).collect::<Vec<_>>());
    assert_eq!(done.epochs[0], interrupted.epochs[0], "finished epochs are kept as they were");
    // No half-written checkpoint or temporary file is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(results.join("resume"))
        .unwrap()
        .chain(std::fs::read_dir(results.join("resume/checkpoints")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.ends_with(".new") || n.ends_with(".old"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A cell with a cross-batch memory killed after its first epoch resumes with the memory it
/// had, and ends with the record of a run never interrupted.
#[test]
fn a_cell_with_a_memory_resumes_with_its_memory() {
    const EPOCHS: usize = 4;
    let grid = r#"(loss: "contrastive", miner: "batch_hard", memory: Some((size: 40)), variant: "xbm")"#;
    let cell = "contrastive+batch_hard_xbm_-seed0";
    let reference_dir = tempfile::tempdir().unwrap();
    let file = experiment(reference_dir.path(), "memory", EPOCHS, grid);
    run_to_the_end(&file, &reference_dir.path().join("results"));
    let reference = record(&reference_dir.path().join("results"), "memory", cell);
    assert_eq!(reference.status, CellStatus::Completed);
    assert!(
        reference.config.contains("memory: Some((") && reference.config.contains("size: 40,"),
        "{}",
        reference.config
    );

    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "memory", EPOCHS, grid);
    let results = dir.path().join("results");
    let child = spawn_run(&file, &results, &[]);
    let record_path = results.join(format!("memory/{cell}.ron"));
    let memory_file = results.join(format!("memory/checkpoints/{cell}/memory.safetensors"));
    kill_after_first_epoch(child, &record_path, &memory_file);
    run_to_the_end(&file, &results);
    let resumed = record(&results, "memory", cell);
    assert_eq!(resumed.resumed, 1);
    assert_eq!(result_of(&resumed), result_of(&reference));
}

#[test]
fn a_memory_needs_plugins_that_take_references() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(
        dir.path(),
        "memory",
        1,
        r#"(loss: "cross_entropy", memory: Some((size: 64))), (loss: "contrastive", miner: "semihard", memory: Some((size: 8)))"#,
    );
    let (code, _, stderr) = run(dmlbench().arg("run").arg(&file));
    assert_eq!(code, 2, "{stderr}");
    for expected in [
        "grid[0].loss: loss 'cross_entropy' does not take reference embeddings",
        "grid[1].miner: miner 'semihard' does not take reference embeddings",
        "grid[1].memory.size: a memory of 8 cannot hold a batch of 16",
    ] {
        assert!(stderr.contains(expected), "missing '{expected}' in:\n{stderr}");
    }
}

/// A record file that is cut short, lags its checkpoint, or claims completion without all its
/// epochs never yields a wrong result: the next run rebuilds it from the checkpoint.
#[test]
fn a_damaged_record_is_rebuilt_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "damaged", 3, r#"(loss: "cross_entropy")"#);
    let results = dir.path().join("results");
    let record_path = results.join("damaged/cross_entropy-seed0.ron");
    let rerun = || {
        run_to_the_end(&file, &results);
        record(&results, "damaged", "cross_entropy-seed0")
    };
    let complete = rerun();
    assert_eq!(complete.status, CellStatus::Completed);

    // Cut to half its length (a torn copy, a full disk).
    let text = std::fs::read_to_string(&record_path).unwrap();
    std::fs::write(&record_path, &text[..text.len() / 2]).unwrap();
    assert_eq!(result_of(&rerun()), result_of(&complete), "a record cut in half");

    // One epoch behind its checkpoint, as a kill between the two writes leaves it.
    let mut lagging = complete.clone();
    lagging.epochs.truncate(2);
    lagging.status = CellStatus::Running;
    lagging.final_metrics = None;
    lagging.save(&record_path).unwrap();
    assert_eq!(result_of(&rerun()), result_of(&complete), "a record one epoch behind");

    // "Completed" without its first epochs or its untrained baseline is not complete.
    let mut hollow = complete.clone();
    hollow.epochs.remove(0);
    hollow.initial_test = None;
    hollow.save(&record_path).unwrap();
    let rebuilt = rerun();
    assert_eq!(result_of(&rebuilt), result_of(&complete), "a completed record missing epochs");
    assert!(rebuilt.resumed >= 1, "rebuilt from the checkpoint, not retrained");
}

/// A checkpoint that cannot be restored is kept aside, named in a warning, and the cell
/// trains again from the start to the same result.
#[test]
fn a_corrupt_checkpoint_restarts_the_cell_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "corrupt", 2, r#"(loss: "cross_entropy")"#);
    let results = dir.path().join("results");
    run_to_the_end(&file, &results);
    let complete = record(&results, "corrupt", "cross_entropy-seed0");

    let checkpoint = results.join("corrupt/checkpoints/cross_entropy-seed0");
    let weights = checkpoint.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::remove_file(results.join("corrupt/cross_entropy-seed0.ron")).unwrap();

    let (_, stderr) = run_to_the_end(&file, &results);
    assert!(
        stderr.contains("warning")
            && stderr.contains("cannot be restored")
            && stderr.contains("cross_entropy-seed0.corrupt"),
        "{stderr}"
    );
    assert!(
        results.join("corrupt/checkpoints/cross_entropy-seed0.corrupt/model.safetensors").is_file(),
        "the damaged checkpoint is kept"
    );
    let retrained = record(&results, "corrupt", "cross_entropy-seed0");
    assert_eq!(retrained.resumed, 0, "trained from the start");
    assert_eq!(result_of(&retrained).0, CellStatus::Completed);
    assert_eq!(retrained.final_metrics, complete.final_metrics, "the same seed gives the same result");
}

/// The process id in a cell's lock file, once the lock exists.
fn lock_holder(lock: &Path) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(lock).ok()?).ok()?;
    value.get("pid")?.as_u64().map(|pid| pid as u32)
}

fn process_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Two `dmlbench run` of one experiment into one directory at once (data generated on first
/// use included): both succeed, every cell is trained by one of them, and the records are
/// those of a single run.
#[test]
fn two_runs_at_once_share_the_cells_and_match_one_run() {
    let grid = r#"(loss: "cross_entropy"), (loss: "contrastive", miner: "batch_hard"), (loss: "spce")"#;
    let cells = ["cross_entropy-seed0", "contrastive+batch_hard-seed0", "spce-seed0"];
    let reference_dir = tempfile::tempdir().unwrap();
    let file = experiment(reference_dir.path(), "together", 4, grid);
    run_to_the_end(&file, &reference_dir.path().join("results"));

    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "together", 4, grid);
    let results = dir.path().join("results");
    let start = || {
        dmlbench()
            .arg("run")
            .arg(&file)
            .arg("--results")
            .arg(&results)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(), start());
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{stdout}\n{stderr}");
    }
    for cell in cells {
        let reference = record(&reference_dir.path().join("results"), "together", cell);
        let shared = record(&results, "together", cell);
        assert_eq!(result_of(&shared), result_of(&reference), "{cell}");
        assert_eq!(shared.resumed, 0, "{cell} was trained once, start to end");
        assert!(!results.join(format!("together/{cell}.ron.lock")).exists(), "{cell}'s lock is released");
    }
}

/// Killing `dmlbench run` (SIGKILL, no chance to clean up) takes its cell process with it,
/// so that no orphan trains on; the next run takes the dead process's lock over and resumes.
#[test]
fn a_killed_run_leaves_no_cell_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "orphan", 20, r#"(loss: "cross_entropy")"#);
    let results = dir.path().join("results");
    let lock = results.join("orphan/cross_entropy-seed0.ron.lock");
    let mut parent = spawn_run(&file, &results, &[]);
    let deadline = Instant::now() + Duration::from_secs(300);
    let cell_process = loop {
        if let Some(pid) = lock_holder(&lock) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the cell never took its lock");
        assert!(parent.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_ne!(cell_process, parent.id(), "the cell trains in a process of its own");
    parent.kill().unwrap();
    parent.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_exists(cell_process) {
        assert!(Instant::now() < deadline, "the cell process {cell_process} outlived its run");
        std::thread::sleep(Duration::from_millis(10));
    }
    run_to_the_end(&file, &results);
    assert_eq!(record(&results, "orphan", "cross_entropy-seed0").status, CellStatus::Completed);
}

/// SIGKILL at arbitrary moments, to the run, to its cell process or to both, several times
/// over, then a run to the end: the records are those of a run never interrupted.
#[test]
fn kills_at_any_moment_lose_nothing() {
    let grid = r#"(loss: "cross_entropy"), (loss: "contrastive", miner: "batch_hard")"#;
    let cells = ["cross_entropy-seed0", "contrastive+batch_hard-seed0"];
    let reference_dir = tempfile::tempdir().unwrap();
    let file = experiment(reference_dir.path(), "kills", 8, grid);
    let started = Instant::now();
    run_to_the_end(&file, &reference_dir.path().join("results"));
    // Kill moments are drawn within the time a whole run takes on this machine.
    let whole_run_ms = started.elapsed().as_millis() as u64;

    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "kills", 8, grid);
    let results = dir.path().join("results");
    // A fixed sequence of moments and targets, spread over data generation, model set-up,
    // training, checkpoint writes and evaluation.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % bound
    };
    for _ in 0..8 {
        let mut parent = spawn_run(&file, &results, &[]);
        std::thread::sleep(Duration::from_millis(next(whole_run_ms.max(1))));
        let cell_process = cells.iter().find_map(|cell| lock_holder(&results.join(format!("kills/{cell}.ron.lock"))));
        let target = next(3);
        if target != 1 {
            let _ = parent.kill();
        }
        if target != 0
            && let Some(pid) = cell_process
        {
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if target == 1 {
            // Only the cell was killed: its run records the failure and goes on; stop it too.
            let _ = parent.kill();
        }
        parent.wait().unwrap();
    }
    run_to_the_end(&file, &results);
    for cell in cells {
        let reference = record(&reference_dir.path().join("results"), "kills", cell);
        assert_eq!(result_of(&record(&results, "kills", cell)), result_of(&reference), "{cell}");
    }
}

#[test]
fn a_crashing_plugin_costs_one_cell() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let broken = build_cdylib("dmlbench-test-broken-plugins", "dmlbench_test_broken_plugins");
    std::fs::copy(&broken, plugins.join(format!("{DLL_PREFIX}broken{DLL_SUFFIX}"))).unwrap();
    let file = experiment(dir.path(), "crash", 1, r#"(loss: "panicking"), (loss: "contrastive")"#);
    let results = dir.path().join("results");
    let (code, stdout, _) =
        run(dmlbench().env("DMLBENCH_PLUGIN_PATH", &plugins).arg("run").arg(&file).arg("--results").arg(&results));
    assert_eq!(code, 1, "a failed cell makes the exit code 1");
    assert!(stdout.contains("FAILED"), "{stdout}");
    let failed = record(&results, "crash", "panicking-seed0");
    let reason = failure_reason(&failed);
    assert!(reason.contains("panicked") && reason.contains("deliberate"), "{reason}");
    assert_eq!(record(&results, "crash", "contrastive-seed0").status, CellStatus::Completed);
}

/// A loss that never returns holds its cell only for `training.stall_timeout`: the cell is
/// stopped and recorded as failed with that reason, and the next cell runs.
#[test]
fn a_hanging_plugin_is_stopped_after_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    common::compile_c_plugin_with(
        &["misbehaving.c"],
        &["PLUGIN_ID=\"c_hang\"", "HANG_IN_FORWARD"],
        &plugins.join(format!("{DLL_PREFIX}c_hang{DLL_SUFFIX}")),
    );
    let file = experiment(dir.path(), "stall", 1, r#"(loss: "c_hang"), (loss: "contrastive")"#);
    edit(&file, "workers: 1,", "workers: 1,\n        stall_timeout: 2.0,");
    let results = dir.path().join("results");
    let started = Instant::now();
    let (code, stdout, stderr) =
        run(dmlbench().env("DMLBENCH_PLUGIN_PATH", &plugins).arg("run").arg(&file).arg("--results").arg(&results));
    assert_eq!(code, 1, "a failed cell makes the exit code 1\n{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120), "the hang was not cut short");
    let stalled = record(&results, "stall", "c_hang-seed0");
    let reason = failure_reason(&stalled);
    assert!(reason.contains("no progress") && reason.contains("training.stall_timeout"), "{reason}");
    assert_eq!(record(&results, "stall", "contrastive-seed0").status, CellStatus::Completed);
}

/// `training.stall_timeout` must be a positive number of seconds.
#[test]
fn a_stall_timeout_that_is_not_positive_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "badstall", 1, r#"(loss: "contrastive")"#);
    edit(&file, "workers: 1,", "workers: 1,\n        stall_timeout: 0.0,");
    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&file).arg("--results").arg(dir.path().join("results")));
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("training.stall_timeout"), "{stderr}");
}

/// Holding out validation classes until one training class is left names the setting at fault
/// and the counts, not just "has 1".
#[test]
fn validation_classes_that_leave_one_training_class_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "heldout", 1, r#"(loss: "cross_entropy")"#);
    edit(&file, "format: cub,", "format: cub,\n        validation_classes: 0.8,");
    let results = dir.path().join("results");
    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&file).arg("--results").arg(&results));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let reason = failure_reason(&record(&results, "heldout", "cross_entropy-seed0"));
    assert!(
        reason.contains("4 training classes")
            && reason.contains("validation_classes (0.8) holds 3")
            && reason.contains("leaving 1"),
        "{reason}"
    );
}

#[test]
fn experiment_mistakes_are_reported_together_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.ron");
    std::fs::write(
        &file,
        r#"(
    name: "bad",
    dataset: (format: cub, root: "nowhere"),
    training: (epochs: 1, batch_size: 10, sampler: MPerClass(m: 4), optimizer: Sgd(lr: 0.1)),
    grid: [
        (loss: "no_such_loss"),
        (loss: "cross_entropy", miner: "batch_hard"),
        (loss: "contrastive", loss_config: (neg_margin: "high")),
    ],
)"#,
    )
    .unwrap();
    let (code, _, stderr) = run(dmlbench().arg("run").arg(&file).args(["--device", "cuda:0"]));
    assert_eq!(code, 2);
    for expected in [
        "6 problems",
        "training.device: device 'cuda:0': backend `cuda` is not compiled in: rebuild with `--features cuda`",
        "dataset.root",
        "training.batch_size: 10 is not divisible by the sampler's m = 4",
        "grid[0].loss: no loss plugin 'no_such_loss'",
        "grid[1].miner: loss 'cross_entropy' does not use mined tuples",
        "grid[2].loss_config",
    ] {
        assert!(stderr.contains(expected), "missing '{expected}' in:\n{stderr}");
    }
    // A syntax error names its line and column.
    std::fs::write(&file, "(name: \"x\",\n dataset: oops)").unwrap();
    let (code, _, stderr) = run(dmlbench().arg("run").arg(&file));
    assert_eq!(code, 2);
    assert!(stderr.contains("line 2, column"), "{stderr}");
}

/// Training must teach the network something that carries over to classes it never saw:
/// Recall@1 on the held-out classes, after training, well above the untrained network's.
#[test]
fn training_beats_the_untrained_network_on_unseen_classes() {
    let dir = tempfile::tempdir().unwrap();
    let size = Size { classes: 16, per_class: 10, channels: "[16, 32]", lr: 0.1, epochs: 16, seeds: "[0, 1, 2]" };
    let file = experiment_sized(dir.path(), "learns", size, r#"(loss: "contrastive", miner: "batch_hard")"#);
    let results = dir.path().join("results");
    run_to_the_end(&file, &results);
    let mut gains = Vec::new();
    for seed in 0..3 {
        let r = record(&results, "learns", &format!("contrastive+batch_hard-seed{seed}"));
        let before = r.initial_test.as_ref().expect("the untrained network is evaluated").recall_at_k[&1];
        let after = r.final_metrics.as_ref().expect("a completed cell has final metrics").recall_at_k[&1];
        // 8 unseen classes of 10 images: 80 queries, so one query is 1.25 points.
        assert_eq!(r.final_metrics.as_ref().unwrap().queries, 80);
        assert!(after > before, "seed {seed}: Recall@1 {before} before training, {after} after");
        gains.push(after - before);
    }
    let mean_gain = gains.iter().sum::<f64>() / gains.len() as f64;
    assert!(mean_gain >= 0.10, "mean Recall@1 gain {mean_gain} over seeds, per seed {gains:?}");
}

/// `dmlbench embed` on a trained checkpoint, then `dmlbench eval` on its output, reproduces
/// the metrics the run recorded: the saved model, the evaluation transform and the metrics
/// agree across the three commands.
#[test]
fn embed_and_eval_reproduce_the_recorded_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "embed", 2, r#"(loss: "cross_entropy")"#);
    let results = dir.path().join("results");
    run_to_the_end(&file, &results);
    let recorded =
        record(&results, "embed", "cross_entropy-seed0").final_metrics.expect("a completed cell has final metrics");

    let checkpoint = results.join("embed/checkpoints/cross_entropy-seed0/model.safetensors");
    let out = dir.path().join("emb");
    let data = dir.path().join("data-8x8");
    let (code, _, stderr) = run(dmlbench()
        .arg("embed")
        .arg("--checkpoint")
        .arg(&checkpoint)
        .args(["--format", "cub", "--image-size", "28", "--resize", "32", "--root"])
        .arg(&data)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, stderr) = run(dmlbench()
        .arg("eval")
        .arg("--embeddings")
        .arg(out.join("embeddings.npy"))
        .arg("--labels")
        .arg(out.join("labels.npy"))
        .args(["--k", "1,2", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["queries"], 32, "4 test classes of 8 images: {stdout}");
    for (key, k) in [("1", 1), ("2", 2)] {
        let from_eval = json["recall_at_k"][key].as_f64().unwrap();
        assert!(
            (from_eval - recorded.recall_at_k[&k]).abs() < 1e-9,
            "R@{k}: eval {from_eval}, record {}",
            recorded.recall_at_k[&k]
        );
    }
    let map = json["map_at_r"].as_f64().unwrap();
    assert!((map - recorded.map_at_r).abs() < 1e-6, "MAP@R: eval {map}, record {}", recorded.map_at_r);
}

/// The same cells trained on flex and on LibTorch agree: the initial weights, the batches and
/// the augmentations all come from the seed on the host, and the two backends compute the same
/// functions, so the losses of every epoch and the final metrics match closely.
#[cfg(feature = "tch")]
#[test]
fn libtorch_reproduces_the_run_on_flex() {
    let dir = tempfile::tempdir().unwrap();
    let file =
        experiment(dir.path(), "backends", 2, r#"(loss: "cross_entropy"), (loss: "contrastive", miner: "batch_hard")"#);
    for device in ["cpu", "tch"] {
        let results = dir.path().join(device);
        let (code, stdout, stderr) =
            run(dmlbench().arg("run").arg(&file).arg("--results").arg(&results).args(["--device", device]));
        assert_eq!(code, 0, "{device}: {stdout}\n{stderr}");
    }
    for cell in ["cross_entropy-seed0", "contrastive+batch_hard-seed0"] {
        let flex = record(&dir.path().join("cpu"), "backends", cell);
        let tch = record(&dir.path().join("tch"), "backends", cell);
        assert_eq!((flex.environment.backend.as_str(), tch.environment.backend.as_str()), ("flex", "libtorch"));
        assert_eq!(tch.status, CellStatus::Completed);
        let initial = |r: &CellRecord| r.initial_test.as_ref().unwrap().map_at_r;
        assert!(
            (initial(&tch) - initial(&flex)).abs() <= 1e-4,
            "{cell}: untrained MAP@R {} vs {}",
            initial(&tch),
            initial(&flex)
        );
        for (a, b) in tch.epochs.iter().zip(&flex.epochs) {
            assert!(
                (a.loss - b.loss).abs() <= 1e-3 * b.loss.abs().max(1.0),
                "{cell} epoch {}: loss {} vs {}",
                a.epoch,
                a.loss,
                b.loss
            );
        }
        let (a, b) = (tch.final_metrics.as_ref().unwrap(), flex.final_metrics.as_ref().unwrap());
        assert!((a.map_at_r - b.map_at_r).abs() <= 1e-2, "{cell}: MAP@R {} vs {}", a.map_at_r, b.map_at_r);
    }
}

/// `--smoke` trains one epoch: its records go to `<experiment>-smoke/`, so a smoke run in a
/// results directory never replaces or deletes the experiment's real records and checkpoints.
#[test]
fn a_smoke_run_never_touches_the_real_results() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "real", 2, r#"(loss: "cross_entropy")"#);
    let results = dir.path().join("results");
    run_to_the_end(&file, &results);
    let real = record(&results, "real", "cross_entropy-seed0");
    let checkpoint = results.join("real/checkpoints/cross_entropy-seed0");
    assert!(checkpoint.is_dir());

    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&file).arg("--results").arg(&results).arg("--smoke"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let smoke = record(&results, "real-smoke", "cross_entropy-seed0");
    assert_eq!(
        (smoke.status, smoke.epochs.len(), smoke.cell.recipe.as_str()),
        (CellStatus::Completed, 1, "real-smoke")
    );
    assert_eq!(record(&results, "real", "cross_entropy-seed0"), real, "the real record changed");
    assert!(checkpoint.is_dir(), "the real checkpoint was removed");
}

/// Cell ids keep only some characters, so two grid entries can map to one id; validation
/// rejects that, naming both entries, instead of letting one overwrite the other's record.
#[test]
fn grid_entries_whose_cell_ids_collide_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(
        dir.path(),
        "collide",
        1,
        r#"(loss: "cross_entropy", variant: "a b"), (loss: "cross_entropy", variant: "a_b")"#,
    );
    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&file).arg("--results").arg(dir.path().join("results")));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("grid[1]: its cell id 'cross_entropy_a_b_-seed0' is also grid[0]'s"), "{stderr}");
    assert!(!dir.path().join("results/collide").exists(), "nothing may run");
}

/// Optimiser constants out of range are validation errors naming their field, not runs that
/// "complete" with meaningless numbers or fail later blaming a plugin.
#[test]
fn optimiser_constants_are_validated_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    for (optimizer, expected) in [
        (
            "AdamW(lr: 0.01, beta1: 2.0, eps: -1.0)",
            vec![
                "training.optimizer.beta1: must be in [0, 1), got 2",
                "training.optimizer.eps: must be positive, got -1",
            ],
        ),
        ("AdamW(lr: 0.01, beta2: NaN)", vec!["training.optimizer.beta2: must be in [0, 1), got NaN"]),
        ("RmsProp(lr: 0.01, alpha: NaN)", vec!["training.optimizer.alpha: must be in [0, 1), got NaN"]),
    ] {
        let file = experiment(dir.path(), "optimiser", 1, r#"(loss: "cross_entropy")"#);
        edit(&file, "Sgd(lr: 0.05, momentum: 0.9, nesterov: true)", optimizer);
        let (code, stdout, stderr) =
            run(dmlbench().arg("run").arg(&file).arg("--results").arg(dir.path().join("results")));
        assert_eq!(code, 2, "{optimizer}: {stdout}\n{stderr}");
        for line in expected {
            assert!(stderr.contains(line), "{optimizer}: missing '{line}' in\n{stderr}");
        }
    }
}

/// A batch larger than the training classes × m cannot be filled, and the epoch would silently
/// be less than one pass: the cell fails, saying so and giving the largest batch.
#[test]
fn a_batch_that_the_classes_cannot_fill_fails_the_cell() {
    let dir = tempfile::tempdir().unwrap();
    // 8 classes: 4 for training, 4 images of each per batch at most.
    let file = experiment(dir.path(), "unfillable", 1, r#"(loss: "cross_entropy")"#);
    edit(&file, "batch_size: 16,", "batch_size: 32,");
    let results = dir.path().join("results");
    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&file).arg("--results").arg(&results));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let failed = record(&results, "unfillable", "cross_entropy-seed0");
    let reason = failure_reason(&failed);
    assert!(
        reason.contains("training.batch_size: 32 cannot be filled by MPerClass(m: 4) from 4 training classes"),
        "{reason}"
    );
    assert!(reason.contains("the largest batch is 16"), "{reason}");
    assert!(failed.epochs.is_empty());
}
