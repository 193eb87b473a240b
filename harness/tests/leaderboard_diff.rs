//! `dmlbench leaderboard diff` end to end, on copies of the committed results: in the head,
//! spce's Recall@1 falls and arcface's plugin code changed. Every format names exactly those
//! two rows, with both intervals, and `--fail-on-regression` fails on spce alone.

use std::path::Path;
use std::process::{Command, Output};

use dmlbench_record::CellRecord;
use serde_json::Value;

fn dmlbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmlbench")).args(args).output().expect("dmlbench runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Copies the committed records of the default and proxies experiments into `dir`.
fn copy_committed(dir: &Path) {
    copy_committed_experiment(dir, "default");
    copy_committed_experiment(dir, "proxies");
}

/// Copies the committed records of `experiment` into `dir/experiment`.
fn copy_committed_experiment(dir: &Path, experiment: &str) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results").join(experiment);
    std::fs::create_dir_all(dir.join(experiment)).unwrap();
    // Only the files: a checkout where the experiment ran also holds checkpoints/ and logs/.
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(experiment).join(entry.file_name())).unwrap();
        }
    }
}
fn edit(path: &Path, change: impl FnOnce(&mut CellRecord)) {
    let mut record = CellRecord::load(path).unwrap();
    change(&mut record);
    record.save(path).unwrap();
}

/// The committed records (base) and a copy (head) in which spce's final Recall@1 is 0.4024,
/// 0.4124 and 0.4224 for seeds 0, 1 and 2, and arcface's two seeds ran other plugin code.
///
/// Base spce, from results/default/spce-seed{0,1,2}.ron: 0.7825, 0.705, 0.74; mean 0.7425,
/// s = √(0.0030125 / 2) = 0.0388104, h = 4.302653 · 0.0388104 / √3 = 0.0964110 → 74.2 ± 9.6,
/// interval [0.6461, 0.8389]. Head spce: mean 0.4124, s = 0.01, h = 0.0248414 → 41.2 ± 2.5,
/// interval [0.3876, 0.4372]: apart, lower by 0.7425 − 0.4124 = 0.3301 → -33.0 points.
fn base_and_head() -> (tempfile::TempDir, tempfile::TempDir) {
    let (base, head) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_committed(base.path());
    copy_committed(head.path());
    for (seed, r1) in [0.4024, 0.4124, 0.4224].into_iter().enumerate() {
        edit(&head.path().join(format!("default/spce-seed{seed}.ron")), |record| {
            let metrics = record.final_metrics.as_mut().unwrap();
            metrics.recall_at_k.insert(1, r1);
            metrics.precision_at_1 = r1;
        });
    }
    for seed in 0..2 {
        edit(&head.path().join(format!("proxies/arcface-seed{seed}.ron")), |record| {
            record.plugins[0].library = "0123456789abcdef".into();
        });
    }
    (base, head)
}

#[test]
fn the_terminal_diff_names_the_moved_rows_with_both_intervals() {
    let (base, head) = base_and_head();
    let out = dmlbench(&["leaderboard", "diff", arg(base.path()), arg(head.path())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    // 15 default records and 16 proxies records on each side.
    assert!(text.contains("(31 records). Head: "), "{text}");
    assert!(text.contains("cub · default: 1 moved, 4 unchanged\n"), "{text}");
    assert!(text.contains("cub · proxies: 1 moved, 7 unchanged\n"), "{text}");
    let r1 = text.lines().find(|l| l.contains("│ spce")).expect("spce is listed");
    for part in ["R@1", "74.2 ± 9.6", "41.2 ± 2.5", "-33.0", "lower: the intervals do not overlap"] {
        assert!(r1.contains(part), "{part} not in {r1}");
    }
    let arcface = text.lines().find(|l| l.contains("│ arcface")).expect("arcface is listed");
    // From the LEADERBOARD.md row of arcface: 40.2 ± 117.5 on both sides.
    for part in ["loss:arcface code changed", "40.2 ± 117.5", "unchanged"] {
        assert!(arcface.contains(part), "{part} not in {arcface}");
    }
    // No other row is listed: a listed row's first line starts with its method.
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("│ "))
        .filter_map(|l| l.split(' ').next())
        .filter(|m| !m.is_empty() && *m != "method")
        .collect();
    assert_eq!(listed, ["spce", "arcface"], "{text}");
    // The other rows, in the head's order (best Recall@1 first).
    assert!(
        text.contains(
            "Unchanged: contrastive+batch_hard, multi_similarity+multi_similarity, triplet_margin+semihard, cross_entropy.\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("Regressions (Recall@1 lower, intervals apart): spce (cub · default).\n"), "{text}");
}

#[test]
fn the_markdown_diff_is_a_pull_request_comment() {
    let (base, head) = base_and_head();
    let comment = head.path().join("diff.md");
    let out = dmlbench(&[
        "leaderboard",
        "diff",
        arg(base.path()),
        arg(head.path()),
        "--format",
        "md",
        "--out",
        arg(&comment),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::read_to_string(&comment).unwrap();
    assert!(md.starts_with("## Leaderboard changes\n"), "{md}");
    assert!(md.contains("2 rows moved, added or removed."), "{md}");
    assert!(md.contains("### cub · default: 1 moved, 4 unchanged\n"), "{md}");
    assert!(
        md.contains("| spce |  | R@1 | 74.2 ± 9.6 | 41.2 ± 2.5 | -33.0 | **lower: the intervals do not overlap** |\n"),
        "{md}"
    );
    assert!(
        md.contains("| arcface | loss:arcface code changed | R@1 | 40.2 ± 117.5 | 40.2 ± 117.5 | 0.0 | unchanged |\n"),
        "{md}"
    );
    let first_lines: Vec<&str> =
        md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("|  |") && !l.starts_with("| method")).collect();
    assert_eq!(first_lines.len(), 2, "{md}");
}

#[test]
fn the_json_diff_has_raw_intervals_and_verdicts() {
    let (base, head) = base_and_head();
    let out = dmlbench(&["leaderboard", "diff", arg(base.path()), arg(head.path()), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let moved: Vec<(String, String)> = json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (t["recipe"].as_str().unwrap().to_string(), r["method"].as_str().unwrap().to_string()))
        })
        .collect();
    assert_eq!(moved, [("default".to_string(), "spce".to_string()), ("proxies".into(), "arcface".into())]);
    let spce = &json["tables"][0]["rows"][0];
    let r1 = &spce["metrics"]["recall_at_1"];
    assert!((r1["base"]["mean"].as_f64().unwrap() - 0.7425).abs() < 1e-12, "{r1}");
    assert!((r1["base"]["half_width"].as_f64().unwrap() - 0.096_411_0).abs() < 1e-6, "{r1}");
    assert!((r1["head"]["mean"].as_f64().unwrap() - 0.4124).abs() < 1e-12, "{r1}");
    assert!((r1["head"]["half_width"].as_f64().unwrap() - 0.024_841_4).abs() < 1e-6, "{r1}");
    assert!((r1["difference"].as_f64().unwrap() + 0.3301).abs() < 1e-12, "{r1}");
    assert_eq!((r1["overlap"].as_bool(), r1["verdict"].as_str()), (Some(false), Some("lower")));
    assert_eq!(spce["metrics"]["recall_at_2"]["verdict"], "unchanged");
    assert_eq!(json["tables"][1]["rows"][0]["plugins_changed"], serde_json::json!(["loss:arcface"]));
    assert_eq!(json["regressions"], serde_json::json!([{"dataset": "cub", "recipe": "default", "method": "spce"}]));
}

#[test]
fn fail_on_regression_fails_only_when_recall_at_1_falls_with_intervals_apart() {
    let (base, head) = base_and_head();
    let out = dmlbench(&["leaderboard", "diff", arg(base.path()), arg(head.path()), "--fail-on-regression"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Recall@1 fell with intervals that do not overlap: spce (cub · default)"), "{stderr}");
    // Without the flag the same diff exits 0.
    assert_eq!(dmlbench(&["leaderboard", "diff", arg(base.path()), arg(head.path())]).status.code(), Some(0));
    // A code change alone is no regression.
    std::fs::remove_dir_all(head.path().join("default")).unwrap();
    copy_committed_experiment(head.path(), "default");
    let out = dmlbench(&["leaderboard", "diff", arg(base.path()), arg(head.path()), "--fail-on-regression"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_plain_leaderboard_command_still_takes_directories() {
    let (base, _) = base_and_head();
    let out = dmlbench(&["leaderboard", arg(base.path()), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["records"], 31);
    // A missing directory is named.
    let out = dmlbench(&["leaderboard", "diff", arg(base.path()), "/nonexistent/results"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/results: no such results directory"));
}

/// A head whose record was cut off mid-write (a copy interrupted by a full disk) and one that
/// is not a record at all: the diff says which files it could not read and exits 1, and still
/// compares the rest. An empty base makes every row added.
#[test]
fn unreadable_records_are_named_and_an_empty_base_adds_every_row() {
    let (base, head) = base_and_head();
    let cut = head.path().join("default/contrastive+batch_hard-seed0.ron");
    let text = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &text[..text.len() / 3]).unwrap();
    let garbage = head.path().join("default/spce-seed9.ron");
    std::fs::write(&garbage, [0xff, 0x00, 0x13, 0x37]).unwrap();
    let out = dmlbench(&["leaderboard", "diff", arg(base.path()), arg(head.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for file in [&cut, &garbage] {
        assert!(stderr.contains(arg(file)), "{} is not named: {stderr}", file.display());
    }
    assert!(stdout(&out).contains("spce"), "the rest is still compared: {}", stdout(&out));

    let empty = tempfile::tempdir().unwrap();
    let out = dmlbench(&["leaderboard", "diff", arg(empty.path()), arg(base.path()), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let tables = json["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "the default and proxies tables: {json}");
    for table in tables {
        assert_eq!(table["presence"], "added", "{table}");
        let rows = table["rows"].as_array().unwrap();
        assert!(!rows.is_empty() && rows.iter().all(|r| r["presence"] == "added"), "{table}");
    }
    assert_eq!(json["regressions"], serde_json::json!([]));
}
