//! Class-disjoint k-fold cross-validation (`dataset.validation: KFold(folds: k)`) end to end:
//! one run per fold with disjoint validation classes, each fold's saved test embeddings
//! reproducing its own metrics, and the cell's record holding both MLRC numbers, checked
//! against the embeddings combined here by a plain loop.

mod common;

use std::path::Path;

use common::experiment::{Size, experiment_sized, record, run_to_the_end};
use common::{dmlbench, run};
use dmlbench_datasets::npy;
use dmlbench_eval::{EvalInput, EvalOptions, evaluate};
use dmlbench_record::{CellRecord, CellStatus};

const FOLDS: usize = 2;

/// A tiny cross-validated experiment: 16 synthetic classes (8 for training), 2 folds, the
/// epoch chosen by validation MAP@R.
fn cross_validated(dir: &Path) -> std::path::PathBuf {
    let file = experiment_sized(
        dir,
        "cv",
        Size { classes: 16, per_class: 8, channels: "[8, 16]", lr: 0.05, epochs: 2, seeds: "[0]" },
        r#"(loss: "cross_entropy")"#,
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .replace(
            "transforms: (resize: 32, crop: 28),",
            "transforms: (resize: 32, crop: 28),\n        validation: KFold(folds: 2),",
        )
        .replace("evaluation: (k: [1, 2],", "evaluation: (selection: Best(metric: \"map_at_r\"), k: [1, 2],");
    std::fs::write(&file, text).unwrap();
    file
}

/// Row i of every fold model's embeddings, each L2-normalised, one after the other.
fn concatenated(models: &[npy::Embeddings]) -> Vec<f32> {
    let mut out = Vec::new();
    for i in 0..models[0].n {
        for m in models {
            let row = m.row(i);
            let norm = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            out.extend(row.iter().map(|&v| (f64::from(v) / norm) as f32));
        }
    }
    out
}

#[test]
fn folds_validate_on_disjoint_classes_and_the_cell_reports_both_mlrc_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let file = cross_validated(dir.path());
    let results = dir.path().join("results");

    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&file).arg("--list-cells"));
    assert_eq!(code, 0, "{stderr}");
    for fold in 0..FOLDS {
        assert!(stdout.contains(&format!("cross_entropy-seed0-fold{fold}")), "{stdout}");
    }

    let (_, stderr) = run_to_the_end(&file, &results);
    assert!(stderr.contains("cross_entropy-seed0: 2 folds combined"), "{stderr}");

    let folds: Vec<CellRecord> =
        (0..FOLDS).map(|f| record(&results, "cv", &format!("cross_entropy-seed0-fold{f}"))).collect();
    let options = EvalOptions { k: vec![1, 2], seed: 0, ..EvalOptions::default() };
    let mut models = Vec::new();
    let mut labels = Vec::new();
    for (f, fold) in folds.iter().enumerate() {
        assert_eq!(fold.status, CellStatus::Completed);
        assert_eq!(fold.cell.fold, Some(f as u32));
        // Each fold's validation curve is kept, epoch by epoch.
        assert!(fold.epochs.iter().all(|e| e.validation.is_some()), "fold {f} lacks validation metrics");
        assert_eq!((fold.dataset.train_classes, fold.dataset.validation_classes.len()), (8, 4), "fold {f}");
        // The saved test embeddings are the selected model's: they give the fold's metrics.
        let base = results.join("cv/embeddings").join(fold.cell.id());
        let (embeddings, fold_labels) = npy::read_embeddings_and_labels(
            &base.with_extension("npy"),
            &results.join("cv/embeddings").join(format!("{}.labels.npy", fold.cell.id())),
        )
        .unwrap();
        assert_eq!(embeddings.n, fold.dataset.test_images);
        let own = evaluate(&EvalInput::self_retrieval(&embeddings.data, &fold_labels, embeddings.d), &options).unwrap();
        assert_eq!(Some(&own), fold.final_metrics.as_ref(), "fold {f}'s saved embeddings");
        models.push(embeddings);
        labels = fold_labels;
    }
    // The folds' validation classes are disjoint and together all the training classes.
    let mut all: Vec<i64> = folds.iter().flat_map(|f| f.dataset.validation_classes.clone()).collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (8, 8), "{all:?}");

    let cell = record(&results, "cv", "cross_entropy-seed0");
    assert_eq!((cell.status.clone(), cell.cell.fold), (CellStatus::Completed, None));
    let summary = cell.folds.as_ref().expect("the cell's record holds its folds");
    assert_eq!(summary.count, FOLDS);
    assert_eq!(summary.cells, vec!["cross_entropy-seed0-fold0", "cross_entropy-seed0-fold1"]);
    let d = models.iter().map(|m| m.d).sum::<usize>();
    let want = evaluate(&EvalInput::self_retrieval(&concatenated(&models), &labels, d), &options).unwrap();
    assert_eq!(summary.concatenated, want, "the concatenated embeddings' metrics");
    assert_eq!(cell.final_metrics.as_ref(), Some(&want), "the record reports the concatenated numbers");
    let finals: Vec<f64> = folds.iter().map(|f| f.final_metrics.as_ref().unwrap().map_at_r).collect();
    assert!((summary.separate.map_at_r - finals.iter().sum::<f64>() / FOLDS as f64).abs() < 1e-12);
    let r1: Vec<f64> = folds.iter().map(|f| f.final_metrics.as_ref().unwrap().recall_at_k[&1]).collect();
    assert!((summary.separate.recall_at_k[&1] - r1.iter().sum::<f64>() / FOLDS as f64).abs() < 1e-12);
    assert_eq!(cell.epochs.len(), 2, "the mean epochs of the folds");
    assert!(folds[0].config.contains("fold: Some(0)"), "{}", folds[0].config);
    assert!(!cell.config.contains("fold:"), "the cell's configuration is the folds' shared one: {}", cell.config);
    assert_eq!(cell.config, folds[1].config.replace("    fold: Some(1),\n", "").trim_end());

    // The leaderboard shows the cell, not its folds, and says what its numbers are.
    let (code, stdout, stderr) = run(dmlbench().arg("leaderboard").arg(&results).args(["--format", "md"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Cross-validated: 2 fold models per seed"), "{stdout}");
    let rows = stdout.lines().filter(|l| l.starts_with("| cross_entropy")).count();
    assert_eq!(rows, 1, "{stdout}");
    let r1_cell = format!("{:.1}", want.recall_at_k[&1] * 100.0);
    assert!(stdout.contains(&r1_cell), "R@1 {r1_cell} of the concatenated embeddings: {stdout}");

    // So does `dmlbench status`, with --every-fold for the fold runs.
    let status = |extra: &[&str]| {
        let (code, stdout, stderr) =
            run(dmlbench().arg("status").arg(&file).arg("--results").arg(&results).args(extra));
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let r1_status = format!("{:.2}%", want.recall_at_k[&1] * 100.0);
    let grouped = status(&[]);
    assert!(
        grouped.contains(&format!("cross_entropy-seed0  completed, 2 folds, R@1 {r1_status} (concatenated)")),
        "{grouped}"
    );
    assert!(!grouped.contains("-fold") && grouped.contains("2 cells: 2 completed, 0 running"), "{grouped}");
    let every = status(&["--every-fold"]);
    assert!(
        every.contains("cross_entropy-seed0-fold0  completed, R@1") && every.contains("-fold1  completed"),
        "{every}"
    );

    // Running again skips the folds and keeps the combined record, even without the fold
    // embeddings (working files a commit of the results leaves out); without the record, it
    // is written again, the same.
    std::fs::rename(results.join("cv/embeddings"), dir.path().join("embeddings")).unwrap();
    let (stdout, _) = run_to_the_end(&file, &results);
    assert!(stdout.contains("2 cell(s) were already complete and skipped"), "{stdout}");
    assert_eq!(record(&results, "cv", "cross_entropy-seed0"), cell);
    std::fs::rename(dir.path().join("embeddings"), results.join("cv/embeddings")).unwrap();
    std::fs::remove_file(results.join("cv/cross_entropy-seed0.ron")).unwrap();
    run_to_the_end(&file, &results);
    assert_eq!(record(&results, "cv", "cross_entropy-seed0"), cell);

    // A fold that failed is counted on the cell's line with its reason; the exit code says so.
    let fold1 = results.join("cv/cross_entropy-seed0-fold1.ron");
    let mut failed = CellRecord::load(&fold1).unwrap();
    failed.status = CellStatus::Failed { reason: "the loss is not finite".into() };
    failed.save(&fold1).unwrap();
    let (code, stdout, _) = run(dmlbench().arg("status").arg(&file).arg("--results").arg(&results));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("cross_entropy-seed0  2 folds: 1 completed, 1 failed (fold 1: the loss is not finite)"),
        "{stdout}"
    );
}

#[test]
fn fold_settings_are_checked_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = cross_validated(dir.path());
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("validation: KFold(folds: 2),", "validation: KFold(folds: 1),\n        validation_classes: 0.2,"),
    )
    .unwrap();
    let (code, _, stderr) = run(dmlbench().arg("run").arg(&file).arg("--list-cells"));
    assert_ne!(code, 0);
    assert!(stderr.contains("dataset.validation.folds: must be 2–20, got 1"), "{stderr}");
    assert!(stderr.contains("dataset.validation: cross-validation holds out its own folds"), "{stderr}");

    // More folds than training classes is named at run time, with the dataset's class count.
    std::fs::write(&file, text.replace("KFold(folds: 2)", "KFold(folds: 12)")).unwrap();
    let results = dir.path().join("results");
    let (code, _, _) = run(dmlbench().arg("run").arg(&file).arg("--results").arg(&results));
    assert_ne!(code, 0);
    let failed = record(&results, "cv", "cross_entropy-seed0-fold0");
    match failed.status {
        CellStatus::Failed { reason } => {
            assert!(reason.contains("8 training classes, too few for dataset.validation: KFold(folds: 12)"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
