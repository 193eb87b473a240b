//! The synthetic generator: every format loads strictly with the counts of its manifest,
//! output is reproducible, and the images are what the formats need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dmlbench_datasets::check::{self, CheckOptions};
use dmlbench_datasets::expected::{self, SplitCount};
use dmlbench_datasets::synth::{self, SynthOptions};
use dmlbench_datasets::{Format, LoadOptions, Split, decode, index, mat};

fn small(classes: usize, per_class: usize) -> SynthOptions {
    SynthOptions { classes, per_class, size: 32, seed: 11, png: false }
}

#[test]
fn every_format_loads_strictly_and_checks_clean() {
    for format in [Format::Cub, Format::Cars196, Format::Sop, Format::Inshop, Format::Folder] {
        let dir = tempfile::tempdir().unwrap();
        // Five classes: train gets ⌊5/2⌋ = 2, test 3.
        let summary = synth::generate(format, dir.path(), &small(5, 4)).unwrap();
        assert_eq!(summary.images, 20, "{format}");
        let data = index::load(format, dir.path(), &LoadOptions::default()).unwrap();
        let counts: BTreeMap<Split, SplitCount> =
            data.splits.iter().map(|s| (s.split, SplitCount { images: s.len(), classes: s.num_classes() })).collect();
        let want: Vec<(Split, (usize, usize))> = if format == Format::Inshop {
            // Test images alternate query, gallery: 2 + 2 per class.
            vec![(Split::Train, (8, 2)), (Split::Query, (6, 3)), (Split::Gallery, (6, 3))]
        } else {
            vec![(Split::Train, (8, 2)), (Split::Test, (12, 3))]
        };
        let want: BTreeMap<Split, SplitCount> =
            want.into_iter().map(|(s, (images, classes))| (s, SplitCount { images, classes })).collect();
        assert_eq!(counts, want, "{format}");
        assert_eq!(summary.manifest.splits, want, "{format}");
        let report = check::check(format, dir.path(), &CheckOptions::default(), &()).unwrap();
        assert!(report.is_ok(), "{format}: {:?}", report.problems);
        assert_eq!(report.greyscale, summary.greyscale, "{format}");
    }
}

#[test]
fn cub_has_greyscale_images_and_bounding_boxes_inside_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let summary = synth::generate(Format::Cub, dir.path(), &small(4, 10)).unwrap();
    // Image numbers 7 and 32 (every 25th from the 8th).
    assert_eq!(summary.greyscale, 2);
    let data = index::load(Format::Cub, dir.path(), &LoadOptions::default()).unwrap();
    let mut grey = 0;
    for split in &data.splits {
        for (i, item) in split.items.iter().enumerate() {
            let decoded = decode::read(&split.path(i)).unwrap();
            grey += decoded.greyscale as usize;
            let b = item.bbox.expect("CUB synth writes boxes");
            let (w, h) = (decoded.image.width() as f32, decoded.image.height() as f32);
            assert!(
                b.x1 >= 0.0 && b.y1 >= 0.0 && b.x2 <= w + 0.05 && b.y2 <= h + 0.05 && b.x1 < b.x2,
                "{b:?} in {w}×{h}"
            );
            assert_eq!(w.max(h), 32.0);
        }
    }
    assert_eq!(grey, 2);
}

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_options_give_identical_files_and_another_seed_does_not() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    synth::generate(Format::Cars196, a.path(), &small(4, 3)).unwrap();
    synth::generate(Format::Cars196, b.path(), &small(4, 3)).unwrap();
    synth::generate(Format::Cars196, c.path(), &SynthOptions { seed: 12, ..small(4, 3) }).unwrap();
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.len(), 12 + 2);
    assert_eq!(fa, fb);
    assert_ne!(fa.get(Path::new("car_ims/000001.jpg")), fc.get(Path::new("car_ims/000001.jpg")));
}

#[test]
fn cars_annotations_are_a_compressed_struct_array() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(Format::Cars196, dir.path(), &small(4, 2)).unwrap();
    let bytes = std::fs::read(dir.path().join("cars_annos.mat")).unwrap();
    assert!(bytes[..116].starts_with(b"MATLAB 5.0 MAT-file"));
    // First element after the header: miCOMPRESSED (15).
    assert_eq!(u32::from_le_bytes(bytes[128..132].try_into().unwrap()), 15);
    let vars = mat::read_bytes(&bytes, Path::new("cars_annos.mat")).unwrap();
    let annotations = &vars[0].1;
    assert_eq!(annotations.dims(), &[1, 8]);
    assert_eq!(annotations.field(7, "class").unwrap().as_scalar(), Some(4.0));
    assert_eq!(annotations.field(7, "relative_im_path").unwrap().as_string().unwrap(), "car_ims/000008.jpg");
}

#[test]
fn png_option_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(Format::Folder, dir.path(), &SynthOptions { png: true, ..small(2, 1) }).unwrap();
    let data = index::load(Format::Folder, dir.path(), &LoadOptions::default()).unwrap();
    let path = data.splits[0].path(0);
    assert_eq!(path.extension().unwrap(), "png");
    assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
    let manifest = expected::read_manifest(dir.path()).unwrap().unwrap();
    assert_eq!((manifest.format, manifest.classes, manifest.per_class, manifest.seed), (Format::Folder, 2, 1, 11));
    // Loading it as another format is an error that names the manifest.
    std::fs::write(dir.path().join("Ebay_train.txt"), "image_id class_id super_class_id path\n").unwrap();
    std::fs::write(dir.path().join("Ebay_test.txt"), "image_id class_id super_class_id path\n").unwrap();
    let e = index::load(Format::Sop, dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("dmlbench-synth.json") && e.contains("describes a folder dataset"), "{e}");
}

#[test]
fn bad_options_and_non_empty_output_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = synth::generate(Format::Cub, dir.path(), &small(1, 3)).unwrap_err().to_string();
    assert!(e.contains("--classes 1 is too few"), "{e}");
    let e = synth::generate(Format::Inshop, dir.path(), &small(4, 1)).unwrap_err().to_string();
    assert!(e.contains("--per-class 1 is too few for inshop"), "{e}");
    let e = synth::generate(Format::Cub, dir.path(), &SynthOptions { size: 8, ..small(2, 2) }).unwrap_err().to_string();
    assert!(e.contains("--size 8"), "{e}");
    let e = synth::generate(Format::Features, dir.path(), &small(2, 2)).unwrap_err().to_string();
    assert!(e.contains("generated as images"), "{e}");
    std::fs::write(dir.path().join("keep.txt"), "user data").unwrap();
    let e = synth::generate(Format::Cub, dir.path(), &small(2, 2)).unwrap_err();
    let source = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
    assert!(e.to_string().contains(dir.path().to_str().unwrap()) && source.contains("not empty"), "{e}: {source}");
    assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "user data");
}

/// Recall@1 of nearest neighbours on raw pixels (16×16 thumbnails): the classes must be
/// distinguishable (well above chance) but raw pixels must be far from solving them, or
/// the data could not tell a trained network from an untrained one.
#[test]
fn raw_pixel_retrieval_is_above_chance_and_far_from_perfect() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(
        Format::Folder,
        dir.path(),
        &SynthOptions { classes: 20, per_class: 10, size: 48, seed: 5, png: false },
    )
    .unwrap();
    let data = index::load(Format::Folder, dir.path(), &LoadOptions::default()).unwrap();
    let test = data.split(Split::Test).unwrap();
    let thumbs: Vec<Vec<f32>> = (0..test.len())
        .map(|i| {
            let img = decode::read(&test.path(i)).unwrap().image;
            let small = image::imageops::resize(&img, 16, 16, image::imageops::FilterType::Triangle);
            small.as_raw().iter().map(|&v| v as f32).collect()
        })
        .collect();
    let labels = test.labels();
    let mut hits = 0;
    for q in 0..thumbs.len() {
        let nearest = (0..thumbs.len())
            .filter(|&g| g != q)
            .min_by(|&a, &b| {
                let d = |g: usize| thumbs[q].iter().zip(&thumbs[g]).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        hits += (labels[nearest] == labels[q]) as usize;
    }
    let recall = hits as f64 / thumbs.len() as f64;
    // 10 test classes: chance is 9/99 ≈ 0.09.
    assert!(recall > 0.15 && recall < 0.7, "raw-pixel Recall@1 = {recall}");
}
