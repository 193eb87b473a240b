//! `dmlbench tune` end to end on tiny synthetic data: trials that never read the test split
//! (its images are moved away while they run), objectives from validation records, resuming
//! with the same proposals, and final runs whose records name the trials behind them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::experiment::tuning_experiment;
use common::{dmlbench, run};
use dmlbench_eval::MetricId;
use dmlbench_record::{CellRecord, CellStatus, Selection, load_all};

const TRIALS: usize = 3;

/// The test images of a CUB-format dataset at `root`: those of the second half of its classes
/// (the metric-learning split, by class).
fn test_images(root: &Path) -> Vec<PathBuf> {
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
    let pairs = |name: &str| -> Vec<(String, String)> {
        read(name)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.trim().to_string())))
            .collect()
    };
    let classes = read("classes.txt").lines().count();
    let paths: std::collections::HashMap<String, String> = pairs("images.txt").into_iter().collect();
    pairs("image_class_labels.txt")
        .into_iter()
        .filter(|(_, class)| class.parse::<usize>().unwrap() > classes / 2)
        .map(|(id, _)| root.join("images").join(&paths[&id]))
        .collect()
}

fn records(dir: &Path) -> Vec<(PathBuf, CellRecord)> {
    let (records, errors) = load_all(&[dir.to_path_buf()]);
    assert!(errors.is_empty(), "{errors:?}");
    records
}

/// `dmlbench tune FILE --results RESULTS`.
fn tune_command(file: &Path, results: &Path) -> Command {
    let mut command = dmlbench();
    command.arg("tune").arg(file).arg("--results").arg(results);
    command
}

/// `dmlbench tune FILE --results RESULTS`, which must succeed.
fn tune_to_the_end(file: &Path, results: &Path) {
    let (code, stdout, stderr) = run(&mut tune_command(file, results));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}

/// The proposals of the tuning in `results`.
fn proposals(results: &Path) -> String {
    std::fs::read_to_string(results.join("tn-tuning/experiments/proposals.json")).unwrap()
}

#[test]
fn trials_never_read_the_test_split_and_the_best_values_are_run_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = tuning_experiment(dir.path());
    let data = dir.path().join("data-16x8");
    let (code, _, stderr) = run(dmlbench()
        .args(["data", "synth", "--format", "cub", "--classes", "16", "--per-class", "8"])
        .args(["--size", "32", "--seed", "1", "--out"])
        .arg(&data));
    assert_eq!(code, 0, "{stderr}");
    // Move every test image away: a trial that touched the test split would fail.
    let hidden = dir.path().join("hidden");
    let images = test_images(&data);
    assert_eq!(images.len(), 64, "8 test classes × 8 images");
    for (i, image) in images.iter().enumerate() {
        std::fs::create_dir_all(&hidden).unwrap();
        std::fs::rename(image, hidden.join(i.to_string())).unwrap();
    }
    let results = dir.path().join("results");
    let (code, stdout, stderr) = run(&mut tune_command(&file, &results));
    assert_eq!(code, 1, "the final runs need the test images: {stdout}\n{stderr}");

    let trials = records(&results.join("tn-tuning"));
    assert_eq!(trials.len(), 2 * TRIALS * 2, "2 entries × 3 trials × 2 folds");
    for (path, record) in &trials {
        assert_eq!(record.status, CellStatus::Completed, "{}", path.display());
        assert!(record.validation_only && record.final_metrics.is_none() && record.initial_test.is_none());
        assert!(record.epochs.iter().all(|e| e.test.is_none() && e.validation.is_some()), "{}", path.display());
        assert_eq!(record.cell.seed, 0, "trials run the first seed");
    }
    let finals = records(&results.join("tn"));
    assert!(!finals.is_empty() && finals.iter().all(|(_, r)| matches!(r.status, CellStatus::Failed { .. })));

    // With the test images back, a second run trains no trial again and completes the finals.
    for (i, image) in images.iter().enumerate() {
        std::fs::rename(hidden.join(i.to_string()), image).unwrap();
    }
    let proposed = proposals(&results);
    let (code, stdout, stderr) = run(&mut tune_command(&file, &results));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(records(&results.join("tn-tuning")), trials, "the trials were not run again");
    assert_eq!(proposals(&results), proposed);

    // Each entry's best trial, from the trials' own validation records.
    let objective = |loss: &str, variant: &str| {
        let folds: Vec<f64> = trials
            .iter()
            .filter(|(_, r)| r.cell.loss == loss && r.cell.variant == variant)
            .map(|(_, r)| {
                let Selection::Best { epoch: Some(e), .. } = r.selection else { panic!("{:?}", r.selection) };
                MetricId::MapAtR.get(r.epochs[e - 1].validation.as_ref().unwrap()).unwrap()
            })
            .collect();
        assert_eq!(folds.len(), 2, "{variant}");
        folds.iter().sum::<f64>() / 2.0
    };
    let finals = records(&results.join("tn"));
    let combined = finals.iter().filter(|(_, r)| r.folds.is_some()).count();
    assert_eq!((finals.len(), combined), (2 * 2 * 2 + 4, 4), "2 entries × 2 seeds × 2 folds, and each seed's record");
    for (_, record) in &finals {
        assert_eq!(record.status, CellStatus::Completed);
        let tuning = record.tuning.as_ref().expect("a final record names its tuning");
        assert_eq!(tuning.experiment, "tn-tuning");
        assert_eq!(tuning.trials.len(), TRIALS);
        let scores: Vec<f64> = tuning.trials.iter().map(|(label, _)| objective(&record.cell.loss, label)).collect();
        for ((_, got), want) in tuning.trials.iter().zip(&scores) {
            assert!((got.unwrap() - want).abs() < 1e-12, "{got:?} vs {want}");
        }
        let best = (0..TRIALS).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
        assert_eq!(tuning.best, format!("t{best:03}"));
        let lr = &tuning.chosen["training.optimizer.lr"];
        assert!(record.config.contains(&format!("lr: {lr}")), "{}", record.config);
        if record.cell.loss == "contrastive" {
            let margin = &tuning.chosen["grid[0].loss_config.neg_margin"];
            assert!(record.config.contains(&format!("neg_margin: {margin}")), "{}", record.config);
        }
    }
    assert!(stdout.contains("grid[0]: best of 3 trials"), "{stdout}");

    // The leaderboard shows the final rows, marked as tuned, and no trial.
    let (code, board, stderr) = run(dmlbench().arg("leaderboard").arg(&results).args(["--format", "md"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(board.contains("contrastive (tuned): best of 3 trials"), "{board}");
    assert!(board.contains("## cub · tn") && !board.contains("## cub · tn-tuning"), "{board}");
}

#[test]
fn proposals_are_seeded_and_a_file_without_budget_or_validation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = tuning_experiment(dir.path());
    let propose = |results: &Path| {
        let (code, stdout, stderr) = run(tune_command(&file, results).arg("--no-run"));
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("tn-tuning/experiments/trials.ron"), "{stdout}");
        proposals(results)
    };
    let first = propose(&dir.path().join("a"));
    assert_eq!(propose(&dir.path().join("b")), first, "the same file and seed propose the same trials");
    let trials = std::fs::read_to_string(dir.path().join("a/tn-tuning/experiments/trials.ron")).unwrap();
    assert!(trials.contains("variant: \"t001\"") && trials.contains("test: false"), "{trials}");

    // A truncated proposals file is refused, naming it, never overwritten with new trials.
    let saved = dir.path().join("a/tn-tuning/experiments/proposals.json");
    std::fs::write(&saved, &first[..first.len() / 2]).unwrap();
    let (code, _, stderr) =
        run(dmlbench().arg("tune").arg(&file).arg("--results").arg(dir.path().join("a")).arg("--no-run"));
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("reading {}", saved.display())), "{stderr}");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), first[..first.len() / 2]);

    // `run` refuses a file with search spaces, naming the field; `--list-cells` checks it and
    // lists the cells of its final runs.
    let (code, _, stderr) = run(dmlbench().arg("run").arg(&file).arg("--results").arg(dir.path().join("c")));
    assert_ne!(code, 0);
    assert!(stderr.contains("training.optimizer.lr: a search space (Tune(...))"), "{stderr}");
    assert!(!dir.path().join("c/tn").exists(), "nothing ran");
    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&file).arg("--list-cells"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("is a tuning file"), "{stderr}");
    assert_eq!(stdout.lines().count(), 2 * 2 * 2, "2 entries × 2 seeds × 2 folds: {stdout}");
    assert!(stdout.contains("contrastive-seed1-fold1"), "{stdout}");

    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("validation: KFold(folds: 2),", "")).unwrap();
    let (code, _, stderr) = run(dmlbench().arg("tune").arg(&file).arg("--no-run"));
    assert_ne!(code, 0);
    assert!(stderr.contains("tuning scores trials on validation data only"), "{stderr}");
}

#[test]
fn a_tuning_killed_midway_continues_with_the_same_proposals() {
    let dir = tempfile::tempdir().unwrap();
    let file = tuning_experiment(dir.path());
    let uninterrupted = dir.path().join("a");
    tune_to_the_end(&file, &uninterrupted);

    // Killed once the first trial's first fold has a completed record, with trials to go.
    let killed = dir.path().join("b");
    let mut child = tune_command(&file, &killed).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let first = killed.join("tn-tuning/contrastive_t000_-seed0-fold0.ron");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !CellRecord::load(&first).is_ok_and(|r| r.status == CellStatus::Completed) {
        assert!(Instant::now() < deadline, "no trial completed in time");
        assert!(child.try_wait().unwrap().is_none(), "the tuning ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("tn/experiments").exists() && !killed.join("tn").join("contrastive-seed0.ron").exists());
    tune_to_the_end(&file, &killed);

    assert_eq!(proposals(&killed), proposals(&uninterrupted), "the same trials were proposed");
    let finals =
        |results: &Path| -> Vec<(String, Option<dmlbench_eval::Metrics>, Option<dmlbench_record::TuningSummary>)> {
            let mut list: Vec<_> = records(&results.join("tn"))
                .into_iter()
                .map(|(_, r)| (r.cell.id(), r.final_metrics, r.tuning))
                .collect();
            list.sort_by(|a, b| a.0.cmp(&b.0));
            list
        };
    assert_eq!(finals(&killed), finals(&uninterrupted), "the same final runs, with the same metrics");
}

/// A trial that failed (as one whose loss diverged does) keeps its failed record: the search
/// leaves it out, later rounds do not train it again, and the final records list it without
/// an objective.
#[test]
fn a_failed_trial_is_left_out_and_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = tuning_experiment(dir.path());
    let results = dir.path().join("results");
    // The first batch (two trials of each entry), run as a cluster would run it.
    let (code, stdout, stderr) = run(tune_command(&file, &results).arg("--no-run"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let trials_file = results.join("tn-tuning/experiments/trials.ron");
    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&trials_file).arg("--results").arg(&results));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(records(&results.join("tn-tuning")).len(), 2 * 2 * 2, "2 entries × 2 trials × 2 folds");

    let failed = results.join("tn-tuning/contrastive_t000_-seed0-fold0.ron");
    let mut record = CellRecord::load(&failed).unwrap();
    record.status = CellStatus::Failed { reason: "the loss is not finite (NaN) at epoch 1".into() };
    record.save(&failed).unwrap();
    let failed_bytes = std::fs::read(&failed).unwrap();

    tune_to_the_end(&file, &results);
    assert_eq!(std::fs::read(&failed).unwrap(), failed_bytes, "the failed trial was not run again");
    let trials = records(&results.join("tn-tuning"));
    assert_eq!(
        trials.len(),
        2 * TRIALS * 2,
        "every other trial ran: {:?}",
        trials.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    let finals = records(&results.join("tn"));
    let contrastive: Vec<_> = finals.iter().filter(|(_, r)| r.cell.loss == "contrastive").collect();
    assert!(!contrastive.is_empty());
    for (path, record) in contrastive {
        assert_eq!(record.status, CellStatus::Completed, "{}", path.display());
        let tuning = record.tuning.as_ref().unwrap();
        assert_eq!(tuning.trials[0], ("t000".to_string(), None), "{}", path.display());
        assert!(tuning.trials[1..].iter().all(|(_, score)| score.is_some()), "{:?}", tuning.trials);
        assert_ne!(tuning.best, "t000");
    }
}

/// Two tunings of the same file at once share its cells (each cell trains once, under its
/// lock) and write the same proposals: once both have ended and one more call has finished
/// what the other left running, the trials and final runs are those of a tuning alone.
#[test]
fn two_tunings_at_once_end_as_one_tuning_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = tuning_experiment(dir.path());
    let alone = dir.path().join("alone");
    tune_to_the_end(&file, &alone);

    let shared = dir.path().join("shared");
    let children: Vec<_> = (0..2)
        .map(|_| tune_command(&file, &shared).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tune_to_the_end(&file, &shared);

    assert_eq!(proposals(&shared), proposals(&alone));
    let outcomes = |results: &Path| -> Vec<(String, CellStatus, Option<dmlbench_eval::Metrics>, u32)> {
        let mut list: Vec<_> = [results.join("tn-tuning"), results.join("tn")]
            .iter()
            .flat_map(|d| records(d))
            .map(|(_, r)| (r.cell.id(), r.status, r.final_metrics, r.resumed))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    };
    assert_eq!(outcomes(&shared), outcomes(&alone), "every cell trained once, to the same result");
}
