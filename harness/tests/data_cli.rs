//! `dmlbench data synth` and `dmlbench data check` as a user runs them: exit codes, the
//! JSON report, and the help text.

use std::path::Path;
use std::process::{Command, Output};

fn dmlbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmlbench")).args(args).output().expect("dmlbench runs")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    // Exactly one JSON object: one line, nothing else.
    assert_eq!(stdout.lines().count(), 1, "stdout: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn synth(format: &str, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "data",
        "synth",
        "--format",
        format,
        "--out",
        path(out),
        "--classes",
        "4",
        "--per-class",
        "3",
        "--size",
        "32",
    ];
    args.extend_from_slice(extra);
    let output = dmlbench(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("wrote 12 images") && stdout.contains("train 6 images / 2 classes"), "{stdout}");
}

#[test]
fn synthetic_cub_checks_clean_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cub");
    synth("cub", &root, &[]);
    let output = dmlbench(&["data", "check", path(&root), "--format", "cub", "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    assert_eq!(report["format"], "cub");
    assert_eq!(report["splits"]["train"], serde_json::json!({"images": 6, "classes": 2}));
    assert_eq!(report["splits"]["test"], serde_json::json!({"images": 6, "classes": 2}));
    // Image 8 of 12 is written greyscale.
    assert_eq!(report["greyscale"], 1);
    assert_eq!(report["problems"], serde_json::json!([]));
}

#[test]
fn broken_images_exit_1_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sop");
    synth("sop", &root, &["--seed", "4"]);
    // Test images are classes 3 and 4: remove one, truncate another.
    std::fs::remove_file(root.join("bicycle_final/100003_0.JPG")).unwrap();
    let victim = root.join("bicycle_final/100004_2.JPG");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let output = dmlbench(&["data", "check", path(&root), "--format", "sop", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0]["file"].as_str().unwrap().ends_with("100003_0.JPG"));
    assert!(problems[0]["message"].as_str().unwrap().starts_with("missing file (listed at "));
    assert!(problems[1]["file"].as_str().unwrap().ends_with("100004_2.JPG"));
    assert!(problems[1]["message"].as_str().unwrap().contains("truncated JPEG"));

    // The human report lists the same problems.
    let output = dmlbench(&["data", "check", path(&root), "--format", "sop"]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("2 problems:") && text.contains("100003_0.JPG: missing file"), "{text}");
}

#[test]
fn count_mismatches_fail_strict_and_warn_with_no_strict() {
    // A hand-written CUB subset without a manifest: the published counts apply.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("classes.txt"), "1 001.A\n2 002.B\n").unwrap();
    std::fs::write(root.join("images.txt"), "1 001.A/a.png\n2 002.B/b.png\n").unwrap();
    std::fs::write(root.join("image_class_labels.txt"), "1 1\n2 2\n").unwrap();
    for p in ["images/001.A/a.png", "images/002.B/b.png"] {
        std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
        image::RgbImage::new(8, 8).save(root.join(p)).unwrap();
    }
    let strict = dmlbench(&["data", "check", path(root), "--format", "cub", "--json"]);
    assert_eq!(strict.status.code(), Some(1));
    let report = json(&strict);
    assert_eq!(
        report["problems"][0]["message"],
        "train split has 1 images, expected 5864 (the published CUB-200-2011 counts)"
    );
    let lenient = dmlbench(&["data", "check", path(root), "--format", "cub", "--json", "--no-strict"]);
    assert_eq!(lenient.status.code(), Some(0));
    let report = json(&lenient);
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["warnings"].as_array().unwrap().len(), 4);
}

#[test]
fn inshop_reports_train_query_gallery() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("inshop");
    synth("inshop", &root, &["--png"]);
    let output = dmlbench(&["data", "check", path(&root), "--format", "inshop", "--json"]);
    let report = json(&output);
    assert_eq!(report["splits"].as_object().unwrap().len(), 3);
    // Printed in the dataset's order.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let at = |key: &str| stdout.find(&format!("\"{key}\":{{")).unwrap();
    assert!(at("train") < at("query") && at("query") < at("gallery"), "{stdout}");
    assert_eq!(report["splits"]["query"], serde_json::json!({"images": 4, "classes": 2}));
    assert_eq!(report["splits"]["gallery"], serde_json::json!({"images": 2, "classes": 2}));
}

#[test]
fn annotation_errors_exit_1_and_missing_root_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cars");
    synth("cars196", &root, &[]);
    std::fs::write(root.join("cars_annos.mat"), b"not a mat file at all").unwrap();
    let output = dmlbench(&["data", "check", path(&root), "--format", "cars196", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert!(report["problems"][0]["file"].as_str().unwrap().ends_with("cars_annos.mat"));

    let output = dmlbench(&["data", "check", path(&dir.path().join("absent")), "--format", "cub", "--json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("absent"));

    // Writing into a non-empty directory is refused before anything is written.
    let output = dmlbench(&["data", "synth", "--format", "cub", "--out", path(&root)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not empty"));

    let output = dmlbench(&["data", "check", path(&root), "--format", "imagenet"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cub, cars196"));
}

#[test]
fn help_has_examples() {
    for command in ["synth", "check"] {
        let output = dmlbench(&["data", command, "--help"]);
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Examples:") && text.contains(&format!("dmlbench data {command} ")), "{text}");
    }
}
