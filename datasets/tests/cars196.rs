//! Cars196 loading and the MAT-file reader: level-5 files written by SciPy (see
//! `fixtures/make_cars_fixture.py`), a v7.3 file written by h5py in MATLAB's layout (see
//! `fixtures/make_mat73.py`), the published counts, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_error, spread};
use dmlbench_datasets::mat::{self, MatValue, NumericClass};
use dmlbench_datasets::{BBox, Format, LoadOptions, Split, index};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn root_with(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cars_annos.mat"), bytes).unwrap();
    dir
}

fn lenient() -> LoadOptions {
    LoadOptions { strict: false }
}

#[test]
fn reads_scipy_files_compressed_and_plain() {
    for name in ["cars_annos_scipy.mat", "cars_annos_scipy_plain.mat"] {
        let dir = root_with(&std::fs::read(fixture(name)).unwrap());
        let data = index::load(Format::Cars196, dir.path(), &lenient()).unwrap();
        // class_names has 4 entries: classes 1–2 train, 3–4 test (as 1–98 of 196).
        let train = data.split(Split::Train).unwrap();
        let test = data.split(Split::Test).unwrap();
        assert_eq!(train.labels(), vec![0, 0, 1], "{name}");
        assert_eq!(test.labels(), vec![0, 1], "{name}");
        assert_eq!(train.items[2].path, Path::new("car_ims/000003.jpg"));
        // bbox_x1 double 7.5, bbox_y1 uint8, bbox_x2 uint16, bbox_y2 int32.
        assert_eq!(train.items[2].bbox, Some(BBox { x1: 7.5, y1: 4.0, x2: 277.0, y2: 181.0 }));
        assert_eq!(test.classes[0].name, "Acura TL Sedan 2012");
        assert_eq!(test.classes[1].id, 4);
    }
}

#[test]
fn mat_reader_returns_storage_types_as_numbers() {
    let vars = mat::read(&fixture("cars_annos_scipy.mat")).unwrap();
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["annotations", "class_names"]);
    let a = &vars[0].1;
    assert_eq!(a.dims(), &[1, 5]);
    assert_eq!(a.field_names().unwrap().len(), 7);
    assert_eq!(a.field(4, "class").unwrap().as_scalar(), Some(4.0));
    assert!(matches!(a.field(4, "class").unwrap(), MatValue::Numeric { class: NumericClass::UInt8, .. }));
    assert!(matches!(a.field(4, "bbox_y2").unwrap(), MatValue::Numeric { class: NumericClass::Int32, .. }));
    assert_eq!(a.field(1, "relative_im_path").unwrap().as_string().unwrap(), "car_ims/000002.jpg");
}

#[test]
fn writer_round_trips_through_the_reader() {
    let value = MatValue::structure(
        vec!["s".into(), "big".into(), "neg".into(), "half".into(), "cells".into()],
        vec![vec![
            MatValue::string("héllo ✓"),
            MatValue::scalar(70_000.0),
            MatValue::scalar_of(NumericClass::Int16, -5.0),
            MatValue::scalar(0.5),
            MatValue::cell_row(vec![MatValue::string(""), MatValue::scalar(1.0)]),
        ]],
    );
    for compress in [false, true] {
        let bytes = mat::write_bytes(&[("v", value.clone())], compress);
        let back = mat::read_bytes(&bytes, Path::new("x.mat")).unwrap();
        assert_eq!(back, vec![("v".to_string(), value.clone())]);
    }
}

/// A v7.3 header as MATLAB writes it: text, version 0x0200, then HDF5 at byte 512 (here
/// only the HDF5 signature, then zeros).
fn v73_file() -> Vec<u8> {
    let mut bytes =
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .".to_vec();
    bytes.resize(116, b' ');
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&0x0200u16.to_le_bytes());
    bytes.extend_from_slice(b"IM");
    bytes.resize(512, 0);
    bytes.extend_from_slice(b"\x89HDF\r\n\x1a\n");
    bytes.resize(1024, 0);
    bytes
}

#[test]
fn damaged_v73_and_v4_files_are_rejected() {
    let dir = root_with(&v73_file());
    assert_error(
        index::load(Format::Cars196, dir.path(), &lenient()),
        &["cars_annos.mat: MATLAB v7.3 (HDF5) file cannot be opened"],
    );
    let dir = root_with(b"\x89HDF\r\n\x1a\n rest of an HDF5 file");
    assert_error(index::load(Format::Cars196, dir.path(), &lenient()), &["cars_annos.mat", "HDF5"]);
    let dir = root_with(&v73_file()[..400]);
    assert_error(
        index::load(Format::Cars196, dir.path(), &lenient()),
        &["cars_annos.mat: the header says MATLAB v7.3, but no HDF5 data follows it at byte 512"],
    );
    // A MATLAB v4 file has no text header: a 20-byte matrix header first.
    let mut v4 = vec![0u8; 200];
    v4[..4].copy_from_slice(&0u32.to_le_bytes());
    let dir = root_with(&v4);
    assert_error(index::load(Format::Cars196, dir.path(), &lenient()), &["not a MATLAB level-5 MAT-file"]);
    let dir = root_with(b"MATLAB 5.0");
    assert_error(index::load(Format::Cars196, dir.path(), &lenient()), &["shorter than a MAT-file header"]);
}

/// The rows `fixtures/make_mat73.py` writes into `cars_annos_v73.mat` (its `CARS_ROWS`):
/// path, bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, test.
const V73_ROWS: [(&str, f64, f64, f64, f64, f64, f64); 12] = [
    ("car_ims/000001.jpg", 112.0, 7.0, 853.0, 717.0, 1.0, 0.0),
    ("car_ims/000002.jpg", 48.0, 24.0, 441.0, 202.0, 1.0, 1.0),
    ("car_ims/000003.jpg", 7.0, 4.0, 277.0, 181.0, 1.0, 0.0),
    ("car_ims/000004.jpg", 33.0, 50.0, 197.0, 150.0, 1.0, 1.0),
    ("car_ims/000005.jpg", 5.0, 8.0, 83.0, 58.0, 2.0, 0.0),
    ("car_ims/000006.jpg", 1.0, 1.0, 300.0, 200.0, 2.0, 1.0),
    ("car_ims/000007.jpg", 20.0, 30.0, 620.0, 410.0, 2.0, 0.0),
    ("car_ims/000008.jpg", 14.0, 9.0, 511.0, 365.0, 2.0, 1.0),
    ("car_ims/000009.jpg", 60.0, 12.0, 1004.0, 672.0, 3.0, 0.0),
    ("car_ims/000010.jpg", 3.0, 77.0, 255.0, 190.0, 3.0, 1.0),
    ("car_ims/000011.jpg", 41.0, 41.0, 401.0, 301.0, 3.0, 0.0),
    ("car_ims/000012.jpg", 9.0, 2.0, 640.0, 479.0, 3.0, 1.0),
];

const V73_CLASS_NAMES: [&str; 3] = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"];

/// The variables of `cars_annos_v73.mat` as the script wrote them: a 1x12 struct array whose
/// boxes and class are doubles and `test` uint8, and a 1x3 cell array of names.
fn v73_variables() -> Vec<(&'static str, MatValue)> {
    let elements = V73_ROWS
        .iter()
        .map(|&(path, x1, y1, x2, y2, class, test)| {
            let mut element = vec![MatValue::string(path)];
            element.extend([x1, y1, x2, y2, class].map(MatValue::scalar));
            element.push(MatValue::scalar_of(NumericClass::UInt8, test));
            element
        })
        .collect();
    let annotations = MatValue::structure(ALL.map(String::from).to_vec(), elements);
    let names = MatValue::cell_row(V73_CLASS_NAMES.iter().map(|n| MatValue::string(n)).collect());
    vec![("annotations", annotations), ("class_names", names)]
}

#[test]
fn v73_file_reads_as_the_values_the_script_wrote() {
    let vars = mat::read(&fixture("cars_annos_v73.mat")).unwrap();
    let want: Vec<(String, MatValue)> = v73_variables().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
    assert_eq!(vars, want);
}

#[test]
fn v73_file_loads_like_the_same_annotations_at_level_5() {
    // One root for both, so that the two indexes can be compared whole.
    let dir = root_with(&mat::write_bytes(&v73_variables(), true));
    let level5 = index::load(Format::Cars196, dir.path(), &lenient()).unwrap();
    std::fs::copy(fixture("cars_annos_v73.mat"), dir.path().join("cars_annos.mat")).unwrap();
    let v73 = index::load(Format::Cars196, dir.path(), &lenient()).unwrap();
    assert_eq!(v73, level5);

    // Three classes: class 1 (images 1-4) is train, classes 2-3 (images 5-12) test.
    let train = v73.split(Split::Train).unwrap();
    let test = v73.split(Split::Test).unwrap();
    let paths = |s: &dmlbench_datasets::SplitIndex| -> Vec<String> {
        s.items.iter().map(|i| i.path.to_string_lossy().into_owned()).collect()
    };
    let want: Vec<String> = (1..=12).map(|n| format!("car_ims/{n:06}.jpg")).collect();
    assert_eq!(paths(train), want[..4]);
    assert_eq!(paths(test), want[4..]);
    assert_eq!(train.labels(), vec![0; 4]);
    assert_eq!(test.labels(), vec![0, 0, 0, 0, 1, 1, 1, 1]);
    let classes = |s: &dmlbench_datasets::SplitIndex| -> Vec<(i64, String)> {
        s.classes.iter().map(|c| (c.id, c.name.clone())).collect()
    };
    assert_eq!(classes(train), vec![(1, "AM General Hummer SUV 2000".to_string())]);
    assert_eq!(classes(test), vec![(2, "Acura RL Sedan 2012".to_string()), (3, "Acura TL Sedan 2012".to_string())]);
    assert_eq!(train.items[0].bbox, Some(BBox { x1: 112.0, y1: 7.0, x2: 853.0, y2: 717.0 }));
    assert_eq!(test.items[4].bbox, Some(BBox { x1: 60.0, y1: 12.0, x2: 1004.0, y2: 672.0 }));
}

#[test]
fn truncated_and_corrupt_files_are_errors() {
    let plain = std::fs::read(fixture("cars_annos_scipy_plain.mat")).unwrap();
    let dir = root_with(&plain[..plain.len() - 100]);
    assert_error(index::load(Format::Cars196, dir.path(), &lenient()), &["cars_annos.mat", "truncated"]);
    let compressed = std::fs::read(fixture("cars_annos_scipy.mat")).unwrap();
    let mut garbled = compressed.clone();
    for b in &mut garbled[140..180] {
        *b ^= 0x5A;
    }
    let dir = root_with(&garbled);
    assert_error(index::load(Format::Cars196, dir.path(), &lenient()), &["cars_annos.mat", "cannot be inflated"]);
    let dir = tempfile::tempdir().unwrap();
    assert_error(index::load(Format::Cars196, dir.path(), &lenient()), &["cars_annos.mat", "No such file"]);
}

fn annotations(fields: &[&str], rows: &[(&str, f64)]) -> MatValue {
    MatValue::structure(
        fields.iter().map(|f| f.to_string()).collect(),
        rows.iter()
            .map(|(path, class)| {
                fields
                    .iter()
                    .map(|f| match *f {
                        "relative_im_path" => MatValue::string(path),
                        "class" => MatValue::scalar(*class),
                        _ => MatValue::scalar(1.0),
                    })
                    .collect()
            })
            .collect(),
    )
}

const ALL: [&str; 7] = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"];

#[test]
fn missing_variables_fields_and_bad_values_are_named() {
    let load = |vars: &[(&str, MatValue)]| {
        let dir = root_with(&mat::write_bytes(vars, true));
        index::load(Format::Cars196, dir.path(), &lenient()).map(|_| ())
    };
    assert_error(
        load(&[("annos", annotations(&ALL, &[("car_ims/1.jpg", 1.0)]))]),
        &["no variable 'annotations'", "annos"],
    );
    let without_class: Vec<&str> = ALL.iter().copied().filter(|f| *f != "class").collect();
    assert_error(
        load(&[("annotations", annotations(&without_class, &[("car_ims/1.jpg", 1.0)]))]),
        &["has no field 'class'"],
    );
    assert_error(load(&[("annotations", MatValue::scalar(3.0))]), &["expected a struct array"]);
    let names = MatValue::cell_row(vec![MatValue::string("a"), MatValue::string("b")]);
    assert_error(
        load(&[
            ("annotations", annotations(&ALL, &[("car_ims/1.jpg", 1.0), ("car_ims/2.jpg", 3.0)])),
            ("class_names", names),
        ]),
        &["annotations(2).class: class 3 is out of range: class_names has 2 classes"],
    );
    assert_error(
        load(&[("annotations", annotations(&ALL, &[("car_ims/1.jpg", 1.5)]))]),
        &["annotations(1).class: class 1.5 is not a positive integer"],
    );
    assert_error(
        load(&[("annotations", annotations(&ALL, &[("../1.jpg", 1.0)]))]),
        &["annotations(1).relative_im_path: path '../1.jpg' contains '..'"],
    );
    assert_error(
        load(&[("annotations", annotations(&ALL, &[("/abs/1.jpg", 1.0)]))]),
        &["annotations(1).relative_im_path", "absolute"],
    );
    let mut wrong_type = annotations(&ALL, &[("car_ims/1.jpg", 1.0)]);
    if let MatValue::Struct { elements, .. } = &mut wrong_type {
        elements[0][0] = MatValue::scalar(5.0);
    }
    assert_error(
        load(&[("annotations", wrong_type)]),
        &["annotations(1).relative_im_path: expected a string, found 1x1 double"],
    );
}

#[test]
fn published_counts_load_strictly_and_ignore_the_test_field() {
    // 196 classes; 8,054 images of classes 1–98 and 8,131 of 99–196. The `test` field
    // alternates (the classification split) and must not matter.
    let classes: Vec<usize> = spread(8_054, 98, 1).into_iter().chain(spread(8_131, 98, 99)).collect();
    let rows: Vec<(String, f64)> =
        classes.iter().enumerate().map(|(i, &c)| (format!("car_ims/{:06}.jpg", i + 1), c as f64)).collect();
    let rows: Vec<(&str, f64)> = rows.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    let mut value = annotations(&ALL, &rows);
    if let MatValue::Struct { elements, .. } = &mut value {
        for (i, e) in elements.iter_mut().enumerate() {
            e[6] = MatValue::scalar_of(NumericClass::UInt8, (i % 2) as f64);
        }
    }
    let names = MatValue::cell_row((1..=196).map(|c| MatValue::string(&format!("Car {c}"))).collect());
    let dir = root_with(&mat::write_bytes(&[("annotations", value), ("class_names", names)], true));
    let data = index::load(Format::Cars196, dir.path(), &LoadOptions::default()).unwrap();
    let counts: Vec<(usize, usize)> = data.splits.iter().map(|s| (s.len(), s.num_classes())).collect();
    assert_eq!(counts, vec![(8_054, 98), (8_131, 98)]);
    assert_eq!(data.split(Split::Test).unwrap().classes[0].name, "Car 99");
}
