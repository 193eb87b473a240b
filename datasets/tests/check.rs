//! `check`: every bad image listed in index order, greyscale counted, counts compared,
//! annotation errors reported as problems.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{jpeg, write, write_jpeg};
use dmlbench_datasets::check::{self, CheckOptions, Progress};
use dmlbench_datasets::{Format, Split};

/// A CUB fixture whose images are: a1 fine, a2 greyscale, b1 missing (train); c1 empty,
/// d1 truncated, d2 not an image (test).
fn fixture(root: &Path) {
    write(root, "classes.txt", "1 001.A\n2 002.B\n3 003.C\n4 004.D\n");
    write(
        root,
        "images.txt",
        "1 001.A/a1.jpg\n2 001.A/a2.jpg\n3 002.B/b1.jpg\n4 003.C/c1.jpg\n5 004.D/d1.jpg\n6 004.D/d2.jpg\n",
    );
    write(root, "image_class_labels.txt", "1 1\n2 1\n3 2\n4 3\n5 4\n6 4\n");
    write_jpeg(root, "images/001.A/a1.jpg", 30, 20, 9, false);
    write_jpeg(root, "images/001.A/a2.jpg", 30, 20, 0, true);
    write(root, "images/003.C/c1.jpg", "");
    write(root, "images/004.D/d2.jpg", "<html>404 Not Found</html>");
    let full = jpeg(30, 20, 50, false);
    std::fs::write(root.join("images/004.D/d1.jpg"), &full[..full.len() * 2 / 3]).unwrap();
}

struct Count(AtomicU64, AtomicU64);

impl Progress for Count {
    fn start(&self, total: u64) {
        self.0.store(total, Ordering::SeqCst);
    }

    fn advance(&self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn lists_every_bad_image_in_index_order() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let progress = Count(AtomicU64::new(0), AtomicU64::new(0));
    let report = check::check(Format::Cub, dir.path(), &CheckOptions { strict: false }, &progress).unwrap();
    assert_eq!((progress.0.load(Ordering::SeqCst), progress.1.load(Ordering::SeqCst)), (6, 6));
    assert_eq!(report.splits[&Split::Train].images, 3);
    assert_eq!(report.splits[&Split::Test].classes, 2);
    assert_eq!(report.greyscale, 1);
    // Count mismatches with the published CUB numbers are only warnings here.
    assert_eq!(report.warnings.len(), 4);
    let got: Vec<(String, Option<usize>, String)> = report
        .problems
        .iter()
        .map(|p| (p.file.strip_prefix(dir.path()).unwrap().display().to_string(), p.line, p.message.clone()))
        .collect();
    let listed = |line: usize| format!("listed at {}:{line}", dir.path().join("images.txt").display());
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got[0].0, "images/002.B/b1.jpg");
    assert_eq!(got[0].2, format!("missing file ({})", listed(3)));
    assert_eq!(got[1].0, "images/003.C/c1.jpg");
    assert_eq!(got[1].2, format!("empty file (0 bytes) ({})", listed(4)));
    assert_eq!(got[2].0, "images/004.D/d1.jpg");
    assert!(got[2].2.starts_with("truncated JPEG") && got[2].2.ends_with(&format!("({})", listed(5))), "{}", got[2].2);
    assert_eq!(got[3].0, "images/004.D/d2.jpg");
    assert!(got[3].2.starts_with("not a JPEG or PNG"), "{}", got[3].2);
    assert!(got.iter().all(|g| g.1.is_none()));
}

#[test]
fn strict_check_counts_mismatches_as_problems() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let report = check::check(Format::Cub, dir.path(), &CheckOptions::default(), &()).unwrap();
    assert_eq!(report.problems.len(), 8);
    assert!(report.problems[0].message.contains("train split has 3 images, expected 5864"));
    assert!(report.warnings.is_empty());
}

#[test]
fn json_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let report = check::check(Format::Cub, dir.path(), &CheckOptions { strict: false }, &()).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["format"], "cub");
    assert_eq!(json["splits"]["train"], serde_json::json!({"images": 3, "classes": 2}));
    assert_eq!(json["greyscale"], 1);
    let p = &json["problems"][0];
    assert!(p["file"].as_str().unwrap().ends_with("b1.jpg"));
    assert!(p["line"].is_null());
    assert!(p["message"].as_str().unwrap().starts_with("missing file"));
}

#[test]
fn annotation_errors_become_problems_and_a_missing_root_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    write(dir.path(), "image_class_labels.txt", "1 1\n2 x\n");
    let report = check::check(Format::Cub, dir.path(), &CheckOptions::default(), &()).unwrap();
    assert!(report.splits.is_empty());
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].file.ends_with("image_class_labels.txt"));
    assert_eq!(report.problems[0].line, Some(2));
    assert_eq!(report.problems[0].message, "class id 'x' is not an integer");
    let e = check::check(Format::Cub, &dir.path().join("nope"), &CheckOptions::default(), &()).unwrap_err();
    assert!(e.to_string().contains("nope"));
}

#[test]
fn features_are_checked_without_images() {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "test"] {
        dmlbench_datasets::npy::write_embeddings(&dir.path().join(format!("{split}_embeddings.npy")), 2, 2, &[0.0; 4])
            .unwrap();
        dmlbench_datasets::npy::write_labels(&dir.path().join(format!("{split}_labels.npy")), &[3, 4]).unwrap();
    }
    let report = check::check(Format::Features, dir.path(), &CheckOptions::default(), &()).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.splits[&Split::Test].classes, 2);
    std::fs::remove_file(dir.path().join("test_labels.npy")).unwrap();
    let report = check::check(Format::Features, dir.path(), &CheckOptions::default(), &()).unwrap();
    assert!(report.problems[0].file.ends_with("test_labels.npy"));
}
