//! Property tests of every file this crate parses: `.npy` embeddings and labels, MAT-files of
//! level 5 and v7.3 (and Cars196's `cars_annos.mat` on top of them), the CUB, SOP and In-Shop
//! annotation files, an image folder's `split.txt` and the synthetic datasets' manifest.
//!
//! Each property feeds random bytes, or a valid file damaged by a few mutations (see
//! `fuzz_support`), to the parser's public entry point, and asserts that the parser
//!
//! - returns, with `Ok` or `Err`, instead of panicking (an index out of bounds, an overflow,
//!   an `unwrap`);
//! - returns within `fuzz_support::TIME_LIMIT` (no loop that a file can make endless);
//! - makes no single allocation over `fuzz_support::ALLOCATION_LIMIT` (no buffer sized
//!   from a header field it has not checked against the file);
//! - on `Err`, names the file at fault, and on `Ok`, returns data that agrees with itself.
//!
//! The sweeps at the end assert the same for every numeric field of every valid file set to
//! every extreme value in turn, which random mutations reach only now and then.
//!
//! These files come from the internet (annotation archives) or from other programs (NumPy,
//! MATLAB, SciPy), so none of this may depend on the file being well formed.
//!
//! Case counts: a case takes from a tenth of a millisecond (a MAT-file in memory) to ten
//! milliseconds (an image folder, whose directories are listed); each property runs as many
//! as fit in about half a second, so that the whole file, sweeps included, takes about five
//! seconds in the test profile on two cores. The inputs are drawn anew on every run, so
//! coverage adds up over the suite's runs; `PROPTEST_CASES=20000` runs more (every property
//! then runs that many).

mod fuzz_support;

use std::path::{Path, PathBuf};

use dmlbench_datasets::expected::{self, Manifest, SplitCount};
use dmlbench_datasets::mat::{self, MatValue, NumericClass};
use dmlbench_datasets::{DatasetError, DatasetIndex, Format, LoadOptions, Split, index, npy};
use fuzz_support::{CappedAllocator, config, damaged, every_number_replaced, every_word_replaced, finishes, mutated};
use proptest::prelude::*;

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

// ---------------------------------------------------------------------------------------
// .npy

/// A raw version-1.0 `.npy` file with the given header dictionary and payload.
fn raw_npy(dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Valid embeddings and labels files of every dtype and header version the reader takes,
/// and a few valid files it refuses (Fortran order, 3-D).
fn npy_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let (e, l) = (dir.path().join("e.npy"), dir.path().join("l.npy"));
    npy::write_embeddings(&e, 3, 2, &[0.5, -1.0, 2.0, 3.0, 1e-3, 7.0]).unwrap();
    npy::write_labels(&l, &[4, 4, 9]).unwrap();
    let f8: Vec<u8> = [1.5f64, -2.25, 3.0, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let i4: Vec<u8> = [4i32, -1, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }\n";
    v2.extend_from_slice(&(header.len() as u32).to_le_bytes());
    v2.extend_from_slice(header.as_bytes());
    v2.extend_from_slice(&1f32.to_le_bytes());
    vec![
        std::fs::read(&e).unwrap(),
        std::fs::read(&l).unwrap(),
        raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", &f8),
        raw_npy("{'descr': '>f8', 'fortran_order': True, 'shape': (2, 2), }", &f8),
        raw_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", &i4),
        raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 2), }", &f8),
        v2,
    ]
}

/// Reads `bytes` as an embeddings file and as a labels file.
fn check_npy(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let (embeddings, labels) = finishes(move || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzzed.npy");
        std::fs::write(&path, &bytes).unwrap();
        (npy::read_embeddings(&path), npy::read_labels(&path))
    });
    match embeddings {
        Ok(e) => prop_assert_eq!(e.data.len(), e.n * e.d, "the data is not n × d"),
        Err(e) => prop_assert!(e.to_string().contains("fuzzed.npy"), "the error does not name the file: {}", e),
    }
    if let Err(e) = labels {
        prop_assert!(e.to_string().contains("fuzzed.npy"), "the error does not name the file: {}", e);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn npy_reader_survives_damaged_files(bytes in damaged(npy_seeds(), 256)) {
        check_npy(bytes)?;
    }
}

// ---------------------------------------------------------------------------------------
// MAT-files

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

/// SciPy's files and this crate's, compressed and plain, with every kind of value.
fn mat_seeds() -> Vec<Vec<u8>> {
    let value = MatValue::structure(
        vec!["name".into(), "n".into(), "list".into()],
        vec![
            vec![
                MatValue::string("car_ims/000001.jpg"),
                MatValue::scalar(3.0),
                MatValue::cell_row(vec![MatValue::string("a"), MatValue::scalar_of(NumericClass::Int16, -2.0)]),
            ],
            vec![MatValue::string(""), MatValue::scalar(1e10), MatValue::cell_row(vec![])],
        ],
    );
    let vars = [("annotations", value), ("class_names", MatValue::cell_row(vec![MatValue::string("x")]))];
    vec![
        fixture("cars_annos_scipy.mat"),
        fixture("cars_annos_scipy_plain.mat"),
        mat::write_bytes(&vars, false),
        mat::write_bytes(&vars, true),
    ]
}

/// Checks that a parsed value's element counts agree with its dimensions, all the way down.
fn consistent(value: &MatValue) -> Result<(), String> {
    let count: Option<usize> = value.dims().iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let stored = match value {
        MatValue::Numeric { data, .. } => data.len(),
        MatValue::Char { chars, .. } => chars.len(),
        MatValue::Cell { elements, .. } => {
            elements.iter().try_for_each(consistent)?;
            elements.len()
        }
        MatValue::Struct { fields, elements, .. } => {
            for element in elements {
                if element.len() != fields.len() {
                    return Err(format!("a struct element has {} values for {} fields", element.len(), fields.len()));
                }
                element.iter().try_for_each(consistent)?;
            }
            elements.len()
        }
    };
    if count != Some(stored) {
        return Err(format!("{} holds {stored} elements", value.describe()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn mat_reader_survives_damaged_files(bytes in damaged(mat_seeds(), 512)) {
        check_mat(bytes)?;
    }
}

fn check_mat(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let result = finishes(move || mat::read_bytes(&bytes, Path::new("fuzzed.mat")));
    match result {
        Ok(vars) => {
            for (name, value) in &vars {
                prop_assert!(consistent(value).is_ok(), "variable '{}': {:?}", name, consistent(value));
            }
        }
        Err(e) => prop_assert!(e.to_string().contains("fuzzed.mat"), "the error does not name the file: {}", e),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// MAT-files v7.3 (HDF5)

/// h5py's files in MATLAB's v7.3 layout (see `fixtures/make_mat73.py`): a variable without
/// the user block, one of every kind of value, and Cars196's annotations.
fn mat73_seeds() -> Vec<Vec<u8>> {
    vec![fixture("mat73_plain.mat"), fixture("mat73_values.mat"), fixture("cars_annos_v73.mat")]
}

proptest! {
    // Random bytes are left out: without the HDF5 signature they never reach this reader.
    #![proptest_config(config(1536))]

    #[test]
    fn mat73_reader_survives_damaged_files(bytes in mutated(mat73_seeds())) {
        check_mat(bytes)?;
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn cars196_v73_annotations_survive_damage(bytes in mutated(vec![fixture("cars_annos_v73.mat")])) {
        check_cars196(bytes)?;
    }
}

// ---------------------------------------------------------------------------------------
// Dataset annotation files, read through `index::load`.

/// Writes `files` into a fresh root, replacing file `damaged.0`'s text with `damaged.1`, and
/// loads the root as `format` (non-strict: these small sets never match the published
/// counts, and the counts are not what is tested).
fn load_damaged(
    format: Format,
    files: &'static [(&'static str, &'static str)],
    damaged: (usize, Vec<u8>),
) -> (PathBuf, Result<DatasetIndex, DatasetError>, tempfile::TempDir) {
    finishes(move || {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        for (k, (name, text)) in files.iter().enumerate() {
            let bytes = if k == damaged.0 { damaged.1.clone() } else { text.as_bytes().to_vec() };
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let result = index::load(format, &root, &LoadOptions { strict: false });
        (root, result, dir)
    })
}

/// The shared assertions: an error names a file of the dataset; a loaded index has labels
/// inside its splits' label spaces.
fn check_index(root: &Path, result: &Result<DatasetIndex, DatasetError>) -> Result<(), TestCaseError> {
    match result {
        Err(e) => {
            let file = e.file();
            prop_assert!(file.is_some_and(|f| f.starts_with(root)), "the error does not name a dataset file: {}", e);
        }
        Ok(index) => {
            for split in &index.splits {
                for item in &split.items {
                    prop_assert!(
                        (0..split.num_classes() as i64).contains(&item.label),
                        "{} split: label {} of {} classes",
                        split.split,
                        item.label,
                        split.num_classes()
                    );
                }
            }
        }
    }
    Ok(())
}

/// One of `files` (by position) with its text damaged.
fn one_damaged(files: &'static [(&'static str, &'static str)]) -> impl Strategy<Value = (usize, Vec<u8>)> {
    (0..files.len())
        .prop_flat_map(move |k| damaged(vec![files[k].1.as_bytes().to_vec()], 256).prop_map(move |b| (k, b)))
}

/// The CUB files the loader reads (`train_test_split.txt`, the classification split, is not).
const CUB: &[(&str, &str)] = &[
    (
        "classes.txt",
        "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n3 003.Sooty_Albatross\n4 004.Groove_billed_Ani\n",
    ),
    (
        "images.txt",
        "1 001.Black_footed_Albatross/a_0001.jpg\n2 002.Laysan_Albatross/b 0002.jpg\n\
         3 003.Sooty_Albatross/c_0003.jpg\n4 004.Groove_billed_Ani/d_0004.jpg\n\
         5 004.Groove_billed_Ani/e_0005.jpg\n",
    ),
    ("image_class_labels.txt", "1 1\n2 2\n3 3\n4 4\n5 4\n"),
    (
        "bounding_boxes.txt",
        "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0 264.0\n3 14.0 112.0 388.0 186.0\n\
         4 112.0 90.0 255.0 242.0\n5 0.5 0.0 1.5 2.0\n",
    ),
];

const SOP: &[(&str, &str)] = &[
    (
        "Ebay_train.txt",
        "image_id class_id super_class_id path\n1 1 1 bicycle_final/111085122871_0.JPG\n\
         2 1 1 bicycle_final/111085122871_1.JPG\n3 2 2 chair_final/111265328556_0.JPG\n",
    ),
    (
        "Ebay_test.txt",
        "image_id class_id super_class_id path\n1 3 1 bicycle_final/251952414262_0.JPG\n\
         2 3 1 bicycle_final/251952414262_1.JPG\n3 4 2 chair_final/360744000536_0.JPG\n",
    ),
];

const INSHOP: &[(&str, &str)] = &[(
    "list_eval_partition.txt",
    "5\nimage_name item_id evaluation_status\n\
     img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train\n\
     img/WOMEN/Dresses/id_00000002/02_2_side.jpg id_00000002 train\n\
     img/MEN/Denim/id_00000080/01_1_front.jpg id_00000080 query\n\
     img/MEN/Denim/id_00000080/01_2_side.jpg id_00000080 gallery\n\
     img/MEN/Denim/id_00000081/01_1_front.jpg id_00000081 gallery\n",
)];

const FOLDER: &[(&str, &str)] = &[
    ("split.txt", "# split  class or class/image\ntrain cat\ntrain dog\ntest fox\ntest owl/0003.jpg\n"),
    ("cat/0001.jpg", ""),
    ("dog/0002.png", ""),
    ("fox/a b.JPEG", ""),
    ("owl/0003.jpg", ""),
    ("owl/0004.jpg", ""),
];

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn cub_files_survive_damage(damaged in one_damaged(CUB)) {
        let (root, result, _dir) = load_damaged(Format::Cub, CUB, damaged);
        check_index(&root, &result)?;
    }

    #[test]
    fn sop_files_survive_damage(damaged in one_damaged(SOP)) {
        let (root, result, _dir) = load_damaged(Format::Sop, SOP, damaged);
        check_index(&root, &result)?;
    }

    #[test]
    fn inshop_partition_survives_damage(damaged in one_damaged(INSHOP)) {
        let (root, result, _dir) = load_damaged(Format::Inshop, INSHOP, damaged);
        check_index(&root, &result)?;
    }

}

proptest! {
    // Ten times slower per case than the other text formats: every case lists directories.
    #![proptest_config(config(128))]

    #[test]
    fn folder_split_file_survives_damage(bytes in damaged(vec![FOLDER[0].1.as_bytes().to_vec()], 256)) {
        let (root, result, _dir) = load_damaged(Format::Folder, FOLDER, (0, bytes));
        check_index(&root, &result)?;
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn cars196_annotations_survive_damage(bytes in damaged(mat_seeds(), 512)) {
        check_cars196(bytes)?;
    }

}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn synthetic_manifest_survives_damage(bytes in damaged(vec![manifest_seed()], 256)) {
        check_manifest(bytes)?;
    }
}

fn check_cars196(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let (root, result, _dir) = finishes(move || {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("cars_annos.mat"), &bytes).unwrap();
        let result = index::load(Format::Cars196, &root, &LoadOptions { strict: false });
        (root, result, dir)
    });
    check_index(&root, &result)
}

fn check_manifest(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let (root, result, _dir) = finishes(move || {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join(expected::MANIFEST), &bytes).unwrap();
        let result = expected::read_manifest(&root);
        (root, result, dir)
    });
    if let Err(e) = result {
        prop_assert!(e.file().is_some_and(|f| f.starts_with(&root)), "the error does not name the file: {}", e);
    }
    Ok(())
}

fn manifest_seed() -> Vec<u8> {
    let manifest = Manifest {
        generator: "dmlbench synth".into(),
        format: Format::Cub,
        classes: 4,
        per_class: 2,
        size: 32,
        seed: 7,
        splits: [
            (Split::Train, SplitCount { images: 4, classes: 2 }),
            (Split::Test, SplitCount { images: 4, classes: 2 }),
        ]
        .into(),
    };
    serde_json::to_vec_pretty(&manifest).unwrap()
}

// ---------------------------------------------------------------------------------------
// Sweeps: every numeric field of every valid file set to every extreme value, which random
// mutations reach only now and then. These run a fixed set of inputs, the same every run.

/// Runs `check` on every input and fails with the first failure and its input.
fn sweep(inputs: Vec<Vec<u8>>, check: impl Fn(Vec<u8>) -> Result<(), TestCaseError>) {
    assert!(!inputs.is_empty(), "nothing to sweep");
    for bytes in inputs {
        if let Err(e) = check(bytes.clone()) {
            panic!("{e}\ninput: {:?}", String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn npy_headers_with_every_extreme_number() {
    sweep(npy_seeds().iter().flat_map(|seed| every_number_replaced(seed)).collect(), check_npy);
}

#[test]
fn mat_files_with_every_extreme_word() {
    let inputs: Vec<Vec<u8>> = mat_seeds().iter().flat_map(|seed| every_word_replaced(seed)).collect();
    sweep(inputs.clone(), check_mat);
    // Through the Cars196 loader, only the uncompressed files: a changed word in compressed
    // data fails to inflate and goes no further than the MAT-file reader already went.
    let plain = [fixture("cars_annos_scipy_plain.mat"), mat_seeds()[2].clone()];
    sweep(plain.iter().flat_map(|seed| every_word_replaced(seed)).collect(), check_cars196);
}

#[test]
fn mat73_files_with_every_extreme_word() {
    // The smallest v7.3 files: a 2 KB plain HDF5 file and MATLAB's layout with a user block
    // and a reference (a cell that holds itself, read as far as the cycle).
    let seeds = [fixture("mat73_plain.mat"), fixture("mat73_cycle.mat")];
    sweep(seeds.iter().flat_map(|seed| every_word_replaced(seed)).collect(), check_mat);
}

#[test]
fn annotation_files_with_every_extreme_number() {
    for (format, files) in [(Format::Cub, CUB), (Format::Sop, SOP), (Format::Inshop, INSHOP)] {
        for (k, (_, text)) in files.iter().enumerate() {
            sweep(every_number_replaced(text.as_bytes()), |bytes| {
                let (root, result, _dir) = load_damaged(format, files, (k, bytes));
                check_index(&root, &result)
            });
        }
    }
}

#[test]
fn manifest_with_every_extreme_number() {
    sweep(every_number_replaced(&manifest_seed()), check_manifest);
}
