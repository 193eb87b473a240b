//! `dmlbench leaderboard` end to end: records of the default experiment in, tables
//! out, with intervals and best marks checked against hand computations, and `--check`
//! catching a record edited without regenerating the committed leaderboards.

mod leaderboard_fixture;

use std::path::Path;
use std::process::{Command, Output};

use dmlbench_leaderboard::table::Leaderboard;
use dmlbench_leaderboard::{html, markdown};
use dmlbench_record::CellRecord;
use leaderboard_fixture::{FAILURE, write_records};
use serde_json::Value;

fn dmlbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmlbench")).args(args).output().expect("dmlbench runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 output")
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

// Hand computations for the fixture, with t_{0.975,2} = 4.302653 and √3 = 1.7320508.
//
// Recall@1
//   cross_entropy          0.60 0.62 0.67  mean 0.63   s = √(0.0026/2) = 0.0360555
//                                          h = 4.302653 · 0.0360555 / 1.7320508 = 0.0895669
//                                          interval [0.5404331, 0.7195669]    → 63.0 ± 9.0
//   contrastive+batch_hard 0.55 0.56 0.57  mean 0.56   s = 0.01   h = 0.0248414
//                                          interval [0.5351586, 0.5848414]    → 56.0 ± 2.5
//                                          0.5848 ≥ 0.5404: overlaps the best → marked
//   multi_similarity+…     0.40 0.41 0.42  mean 0.41   h = 0.0248414
//                                          upper end 0.4348 < 0.5404           → not marked
// MAP@R
//   cross_entropy          0.300 0.310 0.320  mean 0.310  h = 0.0248414   → 31.0 ± 2.5
//   contrastive+batch_hard 0.315 0.316 0.317  mean 0.316  s = 0.001
//                                             h = 0.00248414              → 31.6 ± 0.2 (best)
//   cross_entropy's upper end 0.3348 ≥ 0.3135, contrastive's lower end: marked although
//   its mean is 0.6 points lower; multi_similarity (0.20 0.21 0.22, upper end 0.2348): not.
const CE_R1: (f64, f64, f64) = (0.63, 0.036_055_5, 0.089_566_9);
const CONTRASTIVE_R1: (f64, f64, f64) = (0.56, 0.01, 0.024_841_4);
const MS_R1: (f64, f64, f64) = (0.41, 0.01, 0.024_841_4);
const CE_MAP: (f64, f64, f64) = (0.31, 0.01, 0.024_841_4);
const CONTRASTIVE_MAP: (f64, f64, f64) = (0.316, 0.001, 0.002_484_14);

fn row<'a>(json: &'a Value, method: &str) -> &'a Value {
    json["tables"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == method)
        .unwrap_or_else(|| panic!("no row {method}"))
}

fn assert_summary(metric: &Value, (mean, sd, half_width): (f64, f64, f64), best: bool, what: &str) {
    assert!((metric["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{what}: mean {metric}");
    assert!((metric["sd"].as_f64().unwrap() - sd).abs() < 1e-7, "{what}: sd {metric}");
    assert!((metric["half_width"].as_f64().unwrap() - half_width).abs() < 1e-7, "{what}: half-width {metric}");
    assert_eq!(metric["n"], 3, "{what}");
    assert_eq!(metric["best"], best, "{what}: best mark");
}

#[test]
fn json_has_raw_means_intervals_and_best_marks_by_the_interval_rule() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path());
    let out = dmlbench(&["leaderboard", arg(dir.path()), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let table = &json["tables"][0];
    assert_eq!((table["dataset"].as_str(), table["recipe"].as_str()), (Some("cub"), Some("default")));
    assert_eq!(json["tables"].as_array().unwrap().len(), 1);
    assert_eq!(
        table["columns"],
        serde_json::json!([
            "recall_at_1",
            "recall_at_2",
            "recall_at_4",
            "recall_at_8",
            "map_at_r",
            "r_precision",
            "nmi"
        ])
    );
    // Rows by mean Recall@1, then the rows without one by name.
    let methods: Vec<&str> = table["rows"].as_array().unwrap().iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "cross_entropy",
            "contrastive+batch_hard",
            "multi_similarity+multi_similarity",
            "snca",
            "triplet_margin+semihard"
        ]
    );

    assert_summary(&row(&json, "cross_entropy")["metrics"]["recall_at_1"], CE_R1, true, "CE R@1");
    assert_summary(
        &row(&json, "contrastive+batch_hard")["metrics"]["recall_at_1"],
        CONTRASTIVE_R1,
        true,
        "contrastive R@1",
    );
    assert_summary(&row(&json, "multi_similarity+multi_similarity")["metrics"]["recall_at_1"], MS_R1, false, "MS R@1");
    assert_summary(&row(&json, "cross_entropy")["metrics"]["map_at_r"], CE_MAP, true, "CE MAP@R");
    assert_summary(
        &row(&json, "contrastive+batch_hard")["metrics"]["map_at_r"],
        CONTRASTIVE_MAP,
        true,
        "contrastive MAP@R",
    );
    assert_eq!(row(&json, "multi_similarity+multi_similarity")["metrics"]["map_at_r"]["best"], false);

    // The failed and the running cells: no metrics, their status and the full reason.
    let failed = row(&json, "triplet_margin+semihard");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["metrics"]["recall_at_1"], Value::Null);
    assert_eq!(failed["cells"][0]["reason"], FAILURE);
    // Printed to standard output, links are relative to the current directory.
    let link = failed["cells"][0]["record"].as_str().unwrap();
    assert!(link.ends_with("/default/triplet_margin+semihard-seed0.ron") && !link.starts_with('/'), "{link}");
    let running = row(&json, "snca");
    assert_eq!(
        (running["status"].as_str(), running["status_line"].as_str()),
        (Some("running"), Some("running: epoch 2/4"))
    );

    // Time per epoch (every epoch 300 s) and peak memory (max over seeds 3000, 3100, 3200 MiB).
    let ce = row(&json, "cross_entropy");
    assert_eq!(ce["epoch_seconds"]["mean"], 300.0);
    assert_eq!(ce["peak_rss_bytes"], 3200u64 << 20);
    assert_eq!(ce["epochs"], serde_json::json!({"min": 4, "max": 4}));
    assert_eq!(json["experiments"][0]["file"], "experiments/default.ron");
}

#[test]
fn markdown_shows_percentages_intervals_and_bold_best_values() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path());
    let out_path = dir.path().join("LEADERBOARD.md");
    let out = dmlbench(&["leaderboard", arg(dir.path()), "--format", "md", "--out", arg(&out_path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let md = std::fs::read_to_string(&out_path).unwrap();
    assert!(md.contains("## cub · default"));
    assert!(md.contains("| method | R@1 | R@2 | R@4 | R@8 | MAP@R | R-prec | NMI | seeds | s/epoch | img/s | peak MiB | epochs | backend | status | records |"), "{md}");
    // R@2, R@4, R@8 add 0.10, 0.15, 0.18 to every seed: same spread, shifted means.
    // R-precision = MAP@R + 0.1; NMI 0.70 0.71 0.72 / 0.66 0.67 0.68 / 0.60 0.61 0.62.
    // NMI: cross_entropy [0.6852, 0.7348] is the best; contrastive [0.6452, 0.6948] overlaps it.
    let ce = "| cross_entropy | **63.0 ± 9.0** | **73.0 ± 9.0** | **78.0 ± 9.0** | **81.0 ± 9.0** | **31.0 ± 2.5** | **41.0 ± 2.5** | **71.0 ± 2.5** | 3 | 300 |";
    let contrastive = "| contrastive+batch_hard | **56.0 ± 2.5** | **66.0 ± 2.5** | **71.0 ± 2.5** | **74.0 ± 2.5** | **31.6 ± 0.2** | **41.6 ± 0.2** | **67.0 ± 2.5** | 3 | 250 |";
    let ms = "| multi_similarity+multi_similarity | 41.0 ± 2.5 | 51.0 ± 2.5 | 56.0 ± 2.5 | 59.0 ± 2.5 | 21.0 ± 2.5 | 31.0 ± 2.5 | 61.0 ± 2.5 | 3 | 360 |";
    for line in [ce, contrastive, ms] {
        assert!(md.contains(line), "missing {line}\n{md}");
    }
    // Failed: the first line of the reason (81 characters), cut to 80; running: its progress.
    // Records are linked by seed.
    assert!(
        md.contains("| failed: loss plugin triplet_margin: the gradient has a NaN in row 3 (batch 12 of epoch… |"),
        "{md}"
    );
    assert!(!md.contains("caused by"));
    assert!(md.contains("running: epoch 2/4"));
    assert!(md.contains(
        "[0](default/cross_entropy-seed0.ron) [1](default/cross_entropy-seed1.ron) [2](default/cross_entropy-seed2.ron)"
    ));
    assert!(md.contains("| `f70dfa8c0ffee` | 0.1.0 | 11 |"), "{md}");
}

#[test]
fn terminal_tables_mark_best_values_with_a_star_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path());
    let out = dmlbench(&["leaderboard", arg(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("cub · default (11 records)"), "{text}");
    let line = |method: &str| {
        text.lines().find(|l| l.contains(&format!(" {method} "))).unwrap_or_else(|| panic!("no row {method}\n{text}"))
    };
    // Every accuracy column of these two is marked (see the hand computations above) …
    assert!(line("cross_entropy").contains("63.0 ± 9.0 *"), "{text}");
    assert_eq!(line("cross_entropy").matches(" *").count(), 7, "{text}");
    assert_eq!(line("contrastive+batch_hard").matches(" *").count(), 7, "{text}");
    // … and none of multi_similarity's.
    assert!(line("multi_similarity+multi_similarity").contains("41.0 ± 2.5"), "{text}");
    assert!(!line("multi_similarity+multi_similarity").contains('*'), "{text}");
    assert!(line("snca").contains("running: epoch 2/4"), "{text}");
}

fn check(dir: &Path) -> Output {
    dmlbench(&["leaderboard", arg(dir), "--check"])
}

fn write_committed(dir: &Path) {
    for (format, name) in [("md", markdown::FILE_NAME), ("html", html::FILE_NAME)] {
        let out = dmlbench(&["leaderboard", arg(dir), "--format", format, "--out", arg(&dir.join(name))]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

#[test]
fn check_passes_when_up_to_date_and_fails_with_a_diff_after_a_record_is_edited() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_records(dir.path());

    // Nothing committed yet: both files are missing, which is a difference.
    let missing = check(dir.path());
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stdout(&missing).contains("LEADERBOARD.md: missing") && stdout(&missing).contains("index.html: missing"),
        "{}",
        stdout(&missing)
    );

    write_committed(dir.path());
    let fresh = check(dir.path());
    assert_eq!(fresh.status.code(), Some(0), "{}{}", stdout(&fresh), stderr(&fresh));
    assert!(stdout(&fresh).contains("up to date with 11 records"));

    // Edit cross_entropy seed 2: Recall@1 0.67 → 0.70. Then 0.60 0.62 0.70: mean 0.64,
    // deviations −0.04 −0.02 0.06, s = √(0.0056/2) = 0.0529150,
    // h = 4.302653 · 0.0529150 / 1.7320508 = 0.131449 → "64.0 ± 13.1".
    let edited = paths.iter().find(|p| p.ends_with("default/cross_entropy-seed2.ron")).unwrap();
    let mut record = CellRecord::load(edited).unwrap();
    record.final_metrics.as_mut().unwrap().recall_at_k.insert(1, 0.70);
    record.save(edited).unwrap();
    let stale = check(dir.path());
    assert_eq!(stale.status.code(), Some(1));
    let diff = stdout(&stale);
    let md = dir.path().join("LEADERBOARD.md").display().to_string();
    assert!(
        diff.contains(&format!("--- {md} (committed)"))
            && diff.contains(&format!("+++ {md} (rendered from the records)")),
        "{diff}"
    );
    assert!(diff.contains("index.html (committed)"), "{diff}");
    assert!(diff.contains("\n-| cross_entropy | **63.0 ± 9.0** |"), "{diff}");
    assert!(diff.contains("\n+| cross_entropy | **64.0 ± 13.1** |"), "{diff}");
    assert!(stderr(&stale).contains("out of date"));

    // Regenerating brings it back in line.
    write_committed(dir.path());
    assert_eq!(check(dir.path()).status.code(), Some(0));
}

#[test]
fn rendering_in_process_equals_what_the_command_writes() {
    // The page the command writes is exactly the library's rendering with links relative to
    // the results directory: what `--check` compares against.
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path());
    write_committed(dir.path());
    let (records, errors) = dmlbench_record::load_all(&[dir.path().to_path_buf()]);
    assert!(errors.is_empty());
    let board = Leaderboard::from_records(records);
    assert_eq!(std::fs::read_to_string(dir.path().join("index.html")).unwrap(), html::render(&board, dir.path()));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("LEADERBOARD.md")).unwrap(),
        markdown::render(&board, dir.path())
    );
}

#[test]
fn duplicate_cells_keep_the_newest_record_and_warn() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_records(dir.path());
    // A copy of cross_entropy seed 0 from an older version of the experiment, elsewhere.
    let original = paths.iter().find(|p| p.ends_with("default/cross_entropy-seed0.ron")).unwrap();
    let mut old = CellRecord::load(original).unwrap();
    old.experiment.fingerprint = "00000000000000aa".into();
    old.updated_unix_s -= 86_400;
    old.final_metrics.as_mut().unwrap().recall_at_k.insert(1, 0.10);
    let old_path = dir.path().join("older-run/default/cross_entropy-seed0.ron");
    old.save(&old_path).unwrap();

    let out = dmlbench(&["leaderboard", arg(dir.path()), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.contains("older-run/default/cross_entropy-seed0.ron") && warning.contains("fingerprints differ"),
        "{warning}"
    );
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The old 0.10 is not averaged in: still 0.60 0.62 0.67.
    assert_summary(&row(&json, "cross_entropy")["metrics"]["recall_at_1"], CE_R1, true, "CE R@1");
    assert_eq!(json["superseded"][0]["fingerprint_differs"], true);
}

#[test]
fn unreadable_records_are_reported_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path());
    let broken = dir.path().join("default/broken.ron");
    std::fs::write(&broken, "(format_version: 1, cell: ???)").unwrap();
    let out = dmlbench(&["leaderboard", arg(dir.path()), "--format", "md"]);
    // The tables are still rendered; the exit code says something could not be read.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("broken.ron") && stderr(&out).contains("not a valid result record"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("| cross_entropy | **63.0 ± 9.0**"));

    let missing = dmlbench(&["leaderboard", arg(&dir.path().join("nowhere"))]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("nowhere: no such results directory"), "{}", stderr(&missing));
}

#[test]
fn the_page_shows_the_experiment_file_and_its_copy_is_not_a_record() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path());
    let out = dmlbench(&["leaderboard", arg(dir.path()), "--format", "html"]);
    assert!(out.status.success(), "the experiment copy is not an unreadable record: {}", stderr(&out));
    let page = stdout(&out);
    assert!(
        page.contains("<pre>// the fixture&#39;s experiment\n(name: &quot;default&quot;, seeds: [0, 1, 2]"),
        "{page}"
    );

    // A copy that no longer matches the records' fingerprint is not shown as theirs.
    std::fs::write(dir.path().join("default/experiment.ron"), "(name: \"default\", seeds: [7])").unwrap();
    let page = stdout(&dmlbench(&["leaderboard", arg(dir.path()), "--format", "html"]));
    assert!(!page.contains("seeds: [7]") && !page.contains("fixture&#39;s experiment"));
}
