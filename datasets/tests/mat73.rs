//! The MATLAB v7.3 (HDF5) MAT-file reader, on files written by h5py in MATLAB's layout (see
//! `fixtures/make_mat73.py`, which also says what each file holds): every kind of value with
//! the dimensions MATLAB reports, and damaged or unsupported files.
//!
//! The expected values are the ones the script wrote, transcribed by hand.

mod common;

use std::path::{Path, PathBuf};

use common::assert_error;
use dmlbench_datasets::mat::{self, MatValue, NumericClass};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn numeric(class: NumericClass, dims: &[usize], data: &[f64]) -> MatValue {
    MatValue::Numeric { class, dims: dims.to_vec(), data: data.to_vec() }
}

fn double(value: f64) -> MatValue {
    MatValue::scalar(value)
}

fn chars(dims: &[usize], text: &str) -> MatValue {
    MatValue::Char { dims: dims.to_vec(), chars: text.chars().collect() }
}

/// The variables of `mat73_values.mat`, by name (the reader returns them sorted by name).
fn expected_values() -> Vec<(&'static str, MatValue)> {
    use NumericClass::*;
    vec![
        // c = {1, 'a'; [], {2}}: a 2x2 cell, elements column-major.
        (
            "c",
            MatValue::Cell {
                dims: vec![2, 2],
                elements: vec![
                    double(1.0),
                    numeric(Double, &[0, 0], &[]),
                    chars(&[1, 1], "a"),
                    MatValue::Cell { dims: vec![1, 1], elements: vec![double(2.0)] },
                ],
            },
        ),
        // [1 2 3; 4 5 6], column-major.
        ("dbl", numeric(Double, &[2, 3], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0])),
        ("e", numeric(Double, &[0, 3], &[])),
        ("ec", MatValue::Cell { dims: vec![0, 0], elements: vec![] }),
        ("es", chars(&[1, 0], "")),
        // logical([1 0 1]) reads as uint8, as the level-5 reader gives it.
        ("flag", numeric(UInt8, &[1, 3], &[1.0, 0.0, 1.0])),
        ("i64", numeric(Int64, &[1, 1], &[-123_456_789_012.0])),
        ("i8", numeric(Int8, &[1, 1], &[-7.0])),
        ("ramp", numeric(Double, &[1, 500], &(0..500).map(f64::from).collect::<Vec<_>>())),
        // ['abc'; 'def'], column-major.
        ("rows", chars(&[2, 3], "adbecf")),
        (
            "s",
            MatValue::Struct {
                dims: vec![1, 1],
                // The order of MATLAB_fields, not HDF5's alphabetical link order.
                fields: vec!["b".into(), "a".into(), "nested".into(), "names".into()],
                elements: vec![vec![
                    chars(&[1, 4], "text"),
                    double(3.5),
                    MatValue::structure(vec!["z".into()], vec![vec![numeric(Int32, &[1, 1], &[-4.0])]]),
                    MatValue::cell_row(vec![MatValue::string("x"), MatValue::string("yz")]),
                ]],
            },
        ),
        (
            "sa",
            MatValue::structure(
                vec!["name".into(), "v".into()],
                vec![
                    vec![MatValue::string("first"), double(1.0)],
                    vec![MatValue::string("second"), double(2.5)],
                    vec![chars(&[0, 0], ""), double(-1.0)],
                ],
            ),
        ),
        ("sgl", numeric(Single, &[1, 2], &[0.5, -2.0])),
        // Ten UTF-16 code units; the car is a surrogate pair, one character.
        ("txt", chars(&[1, 9], "h\u{e9}llo \u{2713} \u{1F697}")),
        ("u16", numeric(UInt16, &[2, 1], &[1.0, 65535.0])),
        ("u64", numeric(UInt64, &[1, 1], &[9_007_199_254_740_992.0])),
    ]
}

#[test]
fn every_kind_of_value_reads_as_written() {
    let vars = mat::read(&fixture("mat73_values.mat")).unwrap();
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let expected = expected_values();
    let want: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want, "variables, without #refs#");
    for ((name, value), (_, want)) in vars.iter().zip(&expected) {
        assert_eq!(value, want, "variable '{name}'");
    }
    let by_name = |n: &str| &vars.iter().find(|(v, _)| v == n).unwrap().1;
    assert_eq!(by_name("sa").describe(), "1x3 struct");
    assert_eq!(by_name("txt").as_string().unwrap(), "h\u{e9}llo \u{2713} \u{1F697}");
    assert_eq!(by_name("sa").field(1, "name").unwrap().as_string().unwrap(), "second");
}

#[test]
fn a_file_without_the_user_block_reads() {
    let vars = mat::read(&fixture("mat73_plain.mat")).unwrap();
    assert_eq!(vars, vec![("dbl".to_string(), double(42.0))]);
}

#[test]
fn read_and_read_bytes_agree() {
    let path = fixture("mat73_values.mat");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(mat::read_bytes(&bytes, &path).unwrap(), mat::read(&path).unwrap());
}

#[test]
fn damaged_and_unsupported_files_name_the_file_and_the_value() {
    let cases: [(&str, &[&str]); 11] = [
        ("mat73_missing_ref.mat", &["c: a reference does not lead to an array", "EOF"]),
        ("mat73_cycle.mat", &["loop{1}{1}: refers to an array that contains it (a reference cycle)"]),
        ("mat73_deep.mat", &["deep{1}{1}{1}", "arrays nest more than 64 levels deep"]),
        // 2^24 paths through 25 arrays: refused after as many references as the file can hold.
        ("mat73_lattice.mat", &["lattice{", "leads to more arrays than the file holds references"]),
        // Never written chunks read as the fill value: 8 GB from a 2.6 KB file.
        ("mat73_huge.mat", &["huge: needs 8000000000 more bytes of data, beyond the"]),
        ("mat73_bad_char.mat", &["name: char array is stored as f64, expected uint16 UTF-16 code units"]),
        (
            "mat73_ragged_struct.mat",
            &["sa: struct array fields differ in size: 'name' holds 2 elements [2, 1], 'v' holds 3 [3, 1]"],
        ),
        ("mat73_complex.mat", &["annotations(2).bbox_x1: double array is complex, which is not supported"]),
        ("mat73_sparse.mat", &["annotations(2).bbox_x1: double array is sparse, which is not supported"]),
        ("mat73_function.mat", &["annotations(2).bbox_x1: MATLAB class 'function_handle' is not supported"]),
        ("mat73_string.mat", &["annotations(2).bbox_x1: is a MATLAB object of class 'string', which is not supported"]),
    ];
    for (name, parts) in cases {
        let message = assert_error(mat::read(&fixture(name)), parts);
        assert!(message.starts_with(&format!("{}: ", fixture(name).display())), "{message}");
    }
}

#[test]
fn truncated_files_are_errors() {
    let bytes = std::fs::read(fixture("cars_annos_v73.mat")).unwrap();
    // Inside MATLAB's header, inside the user block, and at every 1,000 bytes of HDF5.
    for len in [100, 200, 511, 512, 519].into_iter().chain((520..bytes.len()).step_by(1000)) {
        let message = assert_error(mat::read_bytes(&bytes[..len], Path::new("cut.mat")), &["cut.mat: "]);
        match len {
            ..128 => assert!(message.contains("shorter than a MAT-file header"), "{len}: {message}"),
            128..520 => assert!(message.contains("the header says MATLAB v7.3, but no HDF5 data follows"), "{message}"),
            _ => {}
        }
    }
}

#[test]
fn a_level_5_header_wins_over_an_hdf5_signature_in_the_data() {
    let mut bytes = mat::write_bytes(&[("v", MatValue::cell_row(vec![MatValue::string(&"x".repeat(600))]))], false);
    bytes[512..520].copy_from_slice(b"\x89HDF\r\n\x1a\n");
    let vars = mat::read_bytes(&bytes, Path::new("x.mat")).unwrap();
    assert_eq!(vars[0].0, "v");
}
