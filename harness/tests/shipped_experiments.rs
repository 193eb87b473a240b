//! Every experiment file in `experiments/` validates: its grid's plugins accept their
//! configurations and every field is in range (a tuning file, with its search spaces at their
//! middles). Files that need a real dataset or pretrained
//! weights are checked against stand-ins (an empty directory, an empty file) at the paths they
//! name, so the check runs without downloads; what those hold is checked when a cell loads them.

mod common;

use std::path::Path;

use common::{dmlbench, root, run};

/// `text` with every `root: "..."` and `weights: Some("...")` path moved under `stand_ins`,
/// where an empty directory or file now stands.
fn with_stand_ins(text: &str, stand_ins: &Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let quoted = |prefix: &str| trimmed.strip_prefix(prefix).and_then(|rest| rest.split('"').next());
        if let Some(path) = quoted("root: \"") {
            let stand_in = stand_ins.join(path);
            std::fs::create_dir_all(&stand_in).unwrap();
            out.push_str(&line.replacen(path, &stand_in.display().to_string(), 1));
        } else if let Some(path) = quoted("weights: Some(\"") {
            let stand_in = stand_ins.join(path);
            std::fs::create_dir_all(stand_in.parent().unwrap()).unwrap();
            std::fs::write(&stand_in, b"").unwrap();
            out.push_str(&line.replacen(path, &stand_in.display().to_string(), 1));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[test]
fn every_shipped_experiment_validates() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(root().join("experiments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("mlrc-cub-published.ron")), "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Synthetic datasets are generated on first use; their roots need no stand-in.
        let text = if text.contains("synthetic:") { text } else { with_stand_ins(&text, dir.path()) };
        let copy = dir.path().join(file.file_name().unwrap());
        std::fs::write(&copy, &text).unwrap();
        let (code, stdout, stderr) = if text.contains("Tune(") {
            // A tuning file: `tune --no-run` checks it whole and writes its first trials.
            run(dmlbench().arg("tune").arg(&copy).arg("--no-run").arg("--results").arg(dir.path().join("results")))
        } else {
            run(dmlbench().arg("run").arg(&copy).arg("--list-cells"))
        };
        assert_eq!(code, 0, "{}:\n{stderr}", file.display());
        assert!(!stdout.trim().is_empty(), "{}: no cells", file.display());
    }
}

#[test]
fn the_mlrc_files_cross_validate_every_loss_in_four_folds() {
    for dataset in ["cub", "cars", "sop", "cub-published", "cars-published", "sop-published"] {
        let file = root().join(format!("experiments/mlrc-{dataset}.ron"));
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("mlrc.ron");
        std::fs::write(&copy, with_stand_ins(&text, dir.path())).unwrap();
        let (code, stdout, stderr) = run(dmlbench().arg("run").arg(&copy).arg("--list-cells"));
        assert_eq!(code, 0, "{stderr}");
        // 13 grid entries, one seed, four folds.
        // One seed for the published values, five for the tuned ones' final runs.
        let seeds = if dataset.ends_with("published") { 1 } else { 5 };
        let cells: Vec<&str> = stdout.lines().filter(|l| l.contains("-fold")).collect();
        assert_eq!(cells.len(), 13 * 4 * seeds, "{stdout}");
        assert!(stdout.contains("arcface-seed0-fold3"), "{stdout}");
    }
}
