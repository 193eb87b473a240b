//! `dmlbench eval` end to end: npy files in, one JSON object or a table out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dmlbench_datasets::npy::{write_embeddings, write_labels};
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

/// Writes 1-d embeddings and labels, returning the two paths.
fn write(dir: &Path, name: &str, values: &[f32], labels: &[i64]) -> (PathBuf, PathBuf) {
    let e = dir.join(format!("{name}_emb.npy"));
    let l = dir.join(format!("{name}_labels.npy"));
    write_embeddings(&e, values.len(), 1, values).unwrap();
    write_labels(&l, labels).unwrap();
    (e, l)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn close(v: &Value, want: f64, what: &str) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!((got - want).abs() < 1e-12, "{what}: {got}, expected {want}");
}

/// Points on a line, Euclidean distance. By hand, with R = other members of the class:
///   0.0 (class 1) and 0.1 (class 1) find each other first;
///   5.0 and 5.2 (class 2) find each other, then 1.0 (class 2): both relevant in the top R = 2;
///   1.0 (class 2) sees 0.1, 0.0 (class 1) before 5.0 and 5.2: nothing relevant in the top 2;
///   20.0 (class 7) is alone in its class and skipped.
/// So Recall@1 = Recall@2 = P@1 = R-precision = MAP@R = 4/5 and Recall@4 = 1.
const LINE: [f32; 6] = [0.0, 0.1, 5.0, 5.2, 1.0, 20.0];
const LINE_LABELS: [i64; 6] = [1, 1, 2, 2, 2, 7];

#[test]
fn json_is_one_object_with_the_hand_computed_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (e, l) = write(dir.path(), "line", &LINE, &LINE_LABELS);
    let out = dmlbench(&[
        "eval",
        "--embeddings",
        s(&e),
        "--labels",
        s(&l),
        "--k",
        "1,2,4",
        "--metric",
        "euclidean",
        "--json",
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.trim().lines().count(), 1, "exactly one line of JSON: {text}");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort_unstable();
    assert_eq!(
        sorted_keys,
        ["ami", "map_at_r", "nmi", "precision_at_1", "queries", "r_precision", "recall_at_k", "skipped_queries"]
    );
    close(&json["recall_at_k"]["1"], 0.8, "R@1");
    close(&json["recall_at_k"]["2"], 0.8, "R@2");
    close(&json["recall_at_k"]["4"], 1.0, "R@4");
    close(&json["precision_at_1"], 0.8, "P@1");
    close(&json["r_precision"], 0.8, "R-precision");
    close(&json["map_at_r"], 0.8, "MAP@R");
    assert_eq!((json["queries"].as_u64(), json["skipped_queries"].as_u64()), (Some(5), Some(1)));
    for score in ["nmi", "ami"] {
        let v = json[score].as_f64().unwrap_or_else(|| panic!("{score} missing: {json}"));
        assert!((-1.0..=1.0).contains(&v), "{score} = {v}");
    }
}

#[test]
fn no_cluster_gives_null_clustering_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (e, l) = write(dir.path(), "line", &LINE, &LINE_LABELS);
    let out = dmlbench(&["eval", "--embeddings", s(&e), "--labels", s(&l), "--no-cluster", "--json"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(json["nmi"].is_null() && json["ami"].is_null(), "{json}");
    // The default K are 1, 2, 4, 8.
    let ks: Vec<&str> = json["recall_at_k"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(ks, ["1", "2", "4", "8"]);
}

#[test]
fn query_against_gallery() {
    // Query 0.0 (class 1): 0.2 (class 2) then 0.3 (class 1); R = 1, so R-precision 0.
    // Query 5.0 (class 2): 5.1 (class 2), then 0.3 (class 1), 0.2 (class 2); R = 2: 1/2.
    // Query 3.0 (class 9): no class 9 in the gallery, skipped.
    let dir = tempfile::tempdir().unwrap();
    let (qe, ql) = write(dir.path(), "query", &[0.0, 5.0, 3.0], &[1, 2, 9]);
    let (ge, gl) = write(dir.path(), "gallery", &[0.2, 0.3, 5.1], &[2, 1, 2]);
    let out = dmlbench(&[
        "eval",
        "--embeddings",
        s(&qe),
        "--labels",
        s(&ql),
        "--gallery-embeddings",
        s(&ge),
        "--gallery-labels",
        s(&gl),
        "--k",
        "1,2",
        "--metric",
        "euclidean",
        "--no-cluster",
        "--json",
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    close(&json["recall_at_k"]["1"], 0.5, "R@1");
    close(&json["recall_at_k"]["2"], 1.0, "R@2");
    close(&json["r_precision"], 0.25, "R-precision");
    close(&json["map_at_r"], 0.25, "MAP@R");
    assert_eq!((json["queries"].as_u64(), json["skipped_queries"].as_u64()), (Some(2), Some(1)));
}

#[test]
fn table_output_lists_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let (e, l) = write(dir.path(), "line", &LINE, &LINE_LABELS);
    let out = dmlbench(&["eval", "--embeddings", s(&e), "--labels", s(&l), "--k", "1,4", "--metric", "euclidean"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    for row in ["Recall@1", "Recall@4", "Precision@1", "R-precision", "MAP@R", "NMI", "AMI"] {
        assert!(text.contains(row), "no {row} in:\n{text}");
    }
    assert!(text.contains("80.00"), "R@1 as a percentage:\n{text}");
    assert!(text.contains("5 queries evaluated, 1 skipped"), "{text}");
    // Progress bars are drawn only on a terminal; here stderr is a pipe.
    assert!(stderr(&out).is_empty(), "unexpected stderr: {}", stderr(&out));
}

#[test]
fn errors_name_the_file_or_argument_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("nan_emb.npy");
    write_embeddings(&bad, 2, 2, &[0.0, 1.0, f32::NAN, 0.5]).unwrap();
    let (_, l2) = write(dir.path(), "two", &[0.0, 1.0], &[0, 0]);
    let out = dmlbench(&["eval", "--embeddings", s(&bad), "--labels", s(&l2)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("nan_emb.npy") && err.contains("NaN"), "{err}");

    let (e, _) = write(dir.path(), "line", &LINE, &LINE_LABELS);
    let out = dmlbench(&["eval", "--embeddings", s(&e), "--labels", s(&l2)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("two_labels.npy"), "{}", stderr(&out));

    let (_, l) = write(dir.path(), "line2", &LINE, &LINE_LABELS);
    let out = dmlbench(&["eval", "--embeddings", s(&e), "--labels", s(&l), "--k", "1,0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--k"), "{}", stderr(&out));

    // Every class a singleton: nothing to retrieve.
    let (e, l) = write(dir.path(), "lone", &[0.0, 1.0], &[3, 4]);
    let out = dmlbench(&["eval", "--embeddings", s(&e), "--labels", s(&l)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("lone_emb.npy") && stderr(&out).contains("undefined"), "{}", stderr(&out));

    // A gallery of another dimension.
    let g = dir.path().join("wide_emb.npy");
    write_embeddings(&g, 1, 2, &[0.0, 1.0]).unwrap();
    let gl = dir.path().join("wide_labels.npy");
    write_labels(&gl, &[1]).unwrap();
    let out = dmlbench(&[
        "eval",
        "--embeddings",
        s(&e),
        "--labels",
        s(&l),
        "--gallery-embeddings",
        s(&g),
        "--gallery-labels",
        s(&gl),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("wide_emb.npy") && stderr(&out).contains("dimension"), "{}", stderr(&out));
}

#[test]
fn help_shows_examples() {
    let out = dmlbench(&["eval", "--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("Examples:") && text.contains("--gallery-embeddings") && text.contains("--no-cluster"),
        "{text}"
    );
}
