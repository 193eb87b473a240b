//! Image folders (with and without a split file) and feature files.

mod common;

use std::path::Path;

use common::{assert_error, write, write_jpeg};
use dmlbench_datasets::{Format, LoadOptions, Split, features, index, npy};

/// cat, dog, fox, owl with two images each, plus files that are not images and a hidden
/// directory, all to be ignored.
fn fixture(root: &Path) {
    for class in ["owl", "cat", "fox", "dog"] {
        write_jpeg(root, &format!("{class}/0002.jpg"), 8, 8, 1, false);
        write_jpeg(root, &format!("{class}/0001.JPEG"), 8, 8, 1, false);
    }
    write(root, "cat/notes.txt", "not an image");
    write(root, ".cache/x.jpg", "hidden");
    write(root, "README", "top-level files are ignored");
}

#[test]
fn without_split_file_the_first_half_of_the_classes_trains() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let data = index::load(Format::Folder, dir.path(), &LoadOptions::default()).unwrap();
    let train = data.split(Split::Train).unwrap();
    let test = data.split(Split::Test).unwrap();
    let names =
        |s: &dmlbench_datasets::SplitIndex| s.classes.iter().map(|c| (c.id, c.name.clone())).collect::<Vec<_>>();
    assert_eq!(names(train), vec![(1, "cat".to_string()), (2, "dog".to_string())]);
    assert_eq!(names(test), vec![(3, "fox".to_string()), (4, "owl".to_string())]);
    let paths: Vec<&Path> = train.items.iter().map(|i| i.path.as_path()).collect();
    assert_eq!(
        paths,
        vec![
            Path::new("cat/0001.JPEG"),
            Path::new("cat/0002.jpg"),
            Path::new("dog/0001.JPEG"),
            Path::new("dog/0002.jpg")
        ]
    );
    assert_eq!(train.labels(), vec![0, 0, 1, 1]);
    assert!(data.warnings.is_empty());
}

#[test]
fn split_file_assigns_classes_and_single_images() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    write(dir.path(), "split.txt", "# split  target\ntrain cat\ntrain owl\n\ntest dog\ntest fox/0002.jpg\n");
    let data = index::load(Format::Folder, dir.path(), &LoadOptions::default()).unwrap();
    let train = data.split(Split::Train).unwrap();
    let test = data.split(Split::Test).unwrap();
    assert_eq!(train.classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["cat", "owl"]);
    assert_eq!(train.labels(), vec![0, 0, 1, 1]);
    assert_eq!(test.len(), 3);
    assert_eq!(test.items[2].path, Path::new("fox/0002.jpg"));
    assert_eq!(test.items[2].line, Some(6));
    assert_eq!(test.labels(), vec![0, 0, 1]);
}

#[test]
fn split_file_errors_name_the_line() {
    let cases = [
        ("train cat\nvalidate dog\n", "split.txt:2: split 'validate' is not train or test"),
        ("train cat\ntest zebra\n", "split.txt:2: class 'zebra' is not a directory"),
        ("train cat\ntest cat/0001.JPEG\n", "split.txt:2: image 'cat/0001.JPEG' is already assigned on line 1"),
        ("test fox/0009.jpg\n", "split.txt:1: image 'fox/0009.jpg' is not in the dataset"),
        ("train ../cat\n", "split.txt:1: path '../cat' contains '..'"),
        ("train\n", "split.txt:1: expected '<train|test> <class or class/image>'"),
    ];
    for (text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        write(dir.path(), "split.txt", text);
        assert_error(index::load(Format::Folder, dir.path(), &LoadOptions::default()), &[want]);
    }
    let empty = tempfile::tempdir().unwrap();
    assert_error(index::load(Format::Folder, empty.path(), &LoadOptions::default()), &["no class directories"]);
}

#[cfg(unix)]
#[test]
fn symlinked_class_directory_out_of_the_root_is_rejected() {
    let outside = tempfile::tempdir().unwrap();
    write_jpeg(outside.path(), "x.jpg", 8, 8, 1, false);
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    std::os::unix::fs::symlink(outside.path(), dir.path().join("eel")).unwrap();
    assert_error(
        index::load(Format::Folder, dir.path(), &LoadOptions::default()),
        &["eel", "outside the dataset root"],
    );
}

fn write_split(root: &Path, split: &str, d: usize, labels: &[i64]) {
    let n = labels.len();
    let data: Vec<f32> = (0..n * d).map(|v| v as f32).collect();
    npy::write_embeddings(&root.join(format!("{split}_embeddings.npy")), n, d, &data).unwrap();
    npy::write_labels(&root.join(format!("{split}_labels.npy")), labels).unwrap();
}

#[test]
fn features_with_query_and_gallery_share_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), "train", 3, &[5, 5, 2]);
    write_split(dir.path(), "query", 3, &[40, 30]);
    write_split(dir.path(), "gallery", 3, &[30, 30, 40, 50]);
    let set = features::load(dir.path()).unwrap();
    assert_eq!(
        set.splits.iter().map(|s| s.split).collect::<Vec<_>>(),
        vec![Split::Train, Split::Query, Split::Gallery]
    );
    assert_eq!(set.split(Split::Train).unwrap().labels, vec![1, 1, 0]);
    // Shared space {30, 40, 50}.
    assert_eq!(set.split(Split::Query).unwrap().labels, vec![1, 0]);
    assert_eq!(set.split(Split::Gallery).unwrap().labels, vec![0, 0, 1, 2]);
    assert_eq!(set.split(Split::Query).unwrap().embeddings.row(1), &[3.0, 4.0, 5.0]);
}

#[test]
fn features_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), "train", 3, &[1, 2]);
    assert_error(features::load(dir.path()), &["test_embeddings.npy"]);
    write_split(dir.path(), "test", 4, &[1, 2]);
    assert_error(features::load(dir.path()), &["test_embeddings.npy", "4 columns but the train split's have 3"]);
    write_split(dir.path(), "test", 3, &[1, 2]);
    npy::write_labels(&dir.path().join("test_labels.npy"), &[1]).unwrap();
    assert_error(features::load(dir.path()), &["test_labels.npy", "1 labels for 2 embeddings"]);
}
