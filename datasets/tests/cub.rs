//! CUB-200-2011 loading: a hand-written fixture with known labels, the published counts,
//! and every kind of bad input.

mod common;

use std::path::Path;

use common::{assert_error, spread, write};
use dmlbench_datasets::{BBox, ClassInfo, Format, LoadOptions, Split, index};

const CLASSES: &str =
    "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n3 003.Sooty_Albatross\n4 004.Groove_billed_Ani\n";
// Blank line and CRLF on purpose: both occur in files edited on other systems.
const IMAGES: &str = "1 001.Black_footed_Albatross/a1.jpg\r\n2 001.Black_footed_Albatross/a2.jpg\n\n3 002.Laysan_Albatross/b1.jpg\n4 003.Sooty_Albatross/c1.jpg\n5 004.Groove_billed_Ani/d1.jpg\n6 004.Groove_billed_Ani/d2.jpg\n";
// Not in image order: labels are matched by id.
const LABELS: &str = "6 4\n1 1\n2 1\n3 2\n4 3\n5 4\n";
const BOXES: &str = "1 10.0 20.0 30.0 40.0\n2 0 0 5 5\n3 1 2 3 4\n4 1 1 1 1\n5 2.5 3.5 10 20\n6 0 0 1 1\n";

fn fixture(root: &Path) {
    write(root, "classes.txt", CLASSES);
    write(root, "images.txt", IMAGES);
    write(root, "image_class_labels.txt", LABELS);
    write(root, "bounding_boxes.txt", BOXES);
}

fn lenient() -> LoadOptions {
    LoadOptions { strict: false }
}

#[test]
fn loads_the_class_disjoint_split_with_remapped_labels() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let data = index::load(Format::Cub, dir.path(), &lenient()).unwrap();
    // 4 classes: the first half (1, 2) is train, as classes 1–100 of 200 are.
    let train = data.split(Split::Train).unwrap();
    let test = data.split(Split::Test).unwrap();
    assert_eq!(train.labels(), vec![0, 0, 1]);
    assert_eq!(test.labels(), vec![0, 1, 1]);
    assert_eq!(train.items[2].path, Path::new("images/002.Laysan_Albatross/b1.jpg"));
    assert_eq!(
        test.classes,
        vec![
            ClassInfo { id: 3, name: "003.Sooty_Albatross".into() },
            ClassInfo { id: 4, name: "004.Groove_billed_Ani".into() },
        ]
    );
    // x y width height → corners.
    assert_eq!(train.items[0].bbox, Some(BBox { x1: 10.0, y1: 20.0, x2: 40.0, y2: 60.0 }));
    assert_eq!(test.items[1].bbox, Some(BBox { x1: 2.5, y1: 3.5, x2: 12.5, y2: 23.5 }));
    // Line numbers count the blank line.
    assert_eq!(test.items[0].line, Some(5));
    assert!(test.listed_at(0).ends_with("images.txt:5"));
}

#[test]
fn bounding_boxes_are_optional() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    std::fs::remove_file(dir.path().join("bounding_boxes.txt")).unwrap();
    let data = index::load(Format::Cub, dir.path(), &lenient()).unwrap();
    assert!(data.splits.iter().flat_map(|s| &s.items).all(|i| i.bbox.is_none()));
}

#[test]
fn count_mismatch_is_an_error_when_strict_and_a_warning_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    assert_error(
        index::load(Format::Cub, dir.path(), &LoadOptions::default()),
        &["images.txt", "train split has 3 images, expected 5864", "strict: false"],
    );
    let data = index::load(Format::Cub, dir.path(), &lenient()).unwrap();
    let warnings: Vec<String> = data.warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(
        warnings,
        vec![
            "train split has 3 images, expected 5864 (the published CUB-200-2011 counts)",
            "train split has 2 classes, expected 100 (the published CUB-200-2011 counts)",
            "test split has 3 images, expected 5924 (the published CUB-200-2011 counts)",
            "test split has 2 classes, expected 100 (the published CUB-200-2011 counts)",
        ]
    );
}

/// Annotation files with the published shape: 200 classes, 5,864 train and 5,924 test
/// images (no image files: loading reads annotations only).
fn official_annotations(root: &Path, drop_last: bool) {
    let mut classes = String::new();
    for c in 1..=200 {
        classes += &format!("{c} {c:03}.Bird_{c}\n");
    }
    let labels: Vec<usize> = spread(5_864, 100, 1).into_iter().chain(spread(5_924, 100, 101)).collect();
    let n = if drop_last { labels.len() - 1 } else { labels.len() };
    let (mut images, mut label_text) = (String::new(), String::new());
    for (i, c) in labels[..n].iter().enumerate() {
        images += &format!("{} {c:03}.Bird_{c}/img_{i}.jpg\n", i + 1);
        label_text += &format!("{} {c}\n", i + 1);
    }
    write(root, "classes.txt", &classes);
    write(root, "images.txt", &images);
    write(root, "image_class_labels.txt", &label_text);
}

#[test]
fn published_counts_load_strictly() {
    let dir = tempfile::tempdir().unwrap();
    official_annotations(dir.path(), false);
    let data = index::load(Format::Cub, dir.path(), &LoadOptions::default()).unwrap();
    let counts: Vec<(usize, usize)> = data.splits.iter().map(|s| (s.len(), s.num_classes())).collect();
    assert_eq!(counts, vec![(5_864, 100), (5_924, 100)]);
    assert_eq!(data.split(Split::Test).unwrap().classes[0].id, 101);

    let short = tempfile::tempdir().unwrap();
    official_annotations(short.path(), true);
    assert_error(
        index::load(Format::Cub, short.path(), &LoadOptions::default()),
        &["test split has 5923 images, expected 5924"],
    );
}

/// Loads the fixture with `file` replaced by `text` and returns the error message.
fn broken(file: &str, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    write(dir.path(), file, text);
    let e = index::load(Format::Cub, dir.path(), &lenient()).expect_err("expected an error");
    e.to_string()
}

#[test]
fn bad_annotation_lines_name_file_and_line() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "image_class_labels.txt",
            "1 1\n2 1\n3\n",
            &["image_class_labels.txt:3: expected 2 fields (image_id class_id), found 1"],
        ),
        ("images.txt", "1 001.A/a.jpg\nx 001.A/b.jpg\n", &["images.txt:2: id 'x' is not an integer"]),
        (
            "images.txt",
            "1 001.A/a.jpg\n2 001.A/b.jpg\n2 001.A/c.jpg\n",
            &["images.txt:3: duplicate image id 2 (first on line 2)"],
        ),
        (
            "image_class_labels.txt",
            "1 1\n2 1\n3 2\n4 3\n5 9\n6 4\n",
            &["image_class_labels.txt:5: class id 9 is out of range: classes.txt defines 1 to 4"],
        ),
        (
            "image_class_labels.txt",
            "1 1\n2 1\n3 2\n4 3\n5 4\n6 4\n7 4\n",
            &["image_class_labels.txt:7: image id 7 is not listed in images.txt"],
        ),
        (
            "image_class_labels.txt",
            "1 1\n2 1\n3 2\n4 3\n5 4\n5 4\n",
            &["image_class_labels.txt:6: duplicate label for image id 5"],
        ),
        ("image_class_labels.txt", "1 1\n2 1\n3 2\n4 3\n5 4\n", &["images.txt:7: image id 6 has no label"]),
        ("image_class_labels.txt", "1 1\n2 one\n", &["image_class_labels.txt:2: class id 'one' is not an integer"]),
        ("classes.txt", "1 a\n3 c\n", &["classes.txt: class id 2 is missing"]),
        ("classes.txt", "1 a\n1 b\n", &["classes.txt:2: duplicate class id 1"]),
        ("bounding_boxes.txt", "1 10 20 x 40\n", &["bounding_boxes.txt:1: box coordinate 'x' is not a finite number"]),
        ("images.txt", "1 ../../etc/passwd\n", &["images.txt:1: path '../../etc/passwd' contains '..'"]),
        ("images.txt", "1 /etc/passwd\n", &["images.txt:1: path '/etc/passwd' is absolute"]),
        ("images.txt", "1 001.A/a.jpg\n-3 001.A/b.jpg\n", &["images.txt:2: image id -3 must be at least 1"]),
    ];
    for (file, text, parts) in cases {
        let message = broken(file, text);
        for part in *parts {
            assert!(message.contains(part), "{file} {text:?}: {message:?} lacks {part:?}");
        }
    }
}

#[test]
fn missing_annotation_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    std::fs::remove_file(dir.path().join("image_class_labels.txt")).unwrap();
    assert_error(index::load(Format::Cub, dir.path(), &lenient()), &["image_class_labels.txt", "No such file"]);
    assert_error(index::load(Format::Cub, &dir.path().join("absent"), &lenient()), &["absent", "not a directory"]);
}

#[cfg(unix)]
#[test]
fn symlink_out_of_the_root_is_rejected() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.jpg"), b"x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let link = dir.path().join("images/001.Black_footed_Albatross/a2.jpg");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.jpg"), &link).unwrap();
    assert_error(index::load(Format::Cub, dir.path(), &lenient()), &["images.txt:2:", "outside the dataset root"]);
}
