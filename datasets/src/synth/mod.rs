//! Synthetic datasets in the exact on-disk formats of the real ones.
//!
//! [`generate`] writes `classes` × `per_class` procedural images (see [`draw`]) and the
//! annotation files of the chosen format, plus a manifest (`dmlbench-synth.json`) with the
//! expected counts, against which [`crate::index::load`] then checks the dataset. The
//! class-disjoint split is the same rule as for the real data: the first half of the
//! classes (rounded down) is train. Output is a pure function of the options: the same
//! seed gives byte-identical files. The manifest is written last, so a directory with a
//! manifest holds a complete dataset (code that generates data on first use can test
//! `expected::read_manifest(root)?.is_some()`; an interrupted run leaves a directory
//! without one, which `generate` refuses to overwrite because it is not empty).
//!
//! | format | written |
//! |---|---|
//! | `cub` | `images/NNN.Name/*.jpg`, `images.txt`, `image_class_labels.txt`, `classes.txt`, `bounding_boxes.txt`, `train_test_split.txt`; every 25th image greyscale |
//! | `cars196` | `car_ims/NNNNNN.jpg`, `cars_annos.mat` (level 5, compressed struct array `annotations` and cell array `class_names`) |
//! | `sop` | `<super>_final/<class>_<k>.JPG`, `Ebay_train.txt`, `Ebay_test.txt` |
//! | `inshop` | `img/<GENDER>/<Category>/id_NNNNNNNN/NN_k_view.jpg`, `list_eval_partition.txt`; evaluation images alternate query, gallery |
//! | `folder` | `<class>/NNNN.jpg` |
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use dmlbench_datasets::{synth, Format};
//! let options = synth::SynthOptions { classes: 4, per_class: 2, size: 32, seed: 7, png: false };
//! let summary = synth::generate(Format::Sop, dir.path(), &options).unwrap();
//! assert_eq!(summary.images, 8);
//! assert!(dir.path().join("Ebay_train.txt").is_file());
//! ```

pub mod draw;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};
use rayon::prelude::*;

use crate::error::DatasetError;
use crate::expected::{MANIFEST, Manifest, SplitCount};
use crate::format::{Format, Split};
use crate::mat::{self, MatValue, NumericClass};
use crate::split::BBox;
use draw::ClassRecipe;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    /// Number of classes (at least 2: half train, half test).
    pub classes: usize,
    /// Images per class (at least 1; 2 for In-Shop, which needs a query and a gallery image).
    pub per_class: usize,
    /// Longer image side in pixels (16–4096).
    pub size: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Write PNG instead of JPEG.
    pub png: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { classes: 40, per_class: 20, size: 64, seed: 0, png: false }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// The dataset root.
    pub root: PathBuf,
    /// Number of images written.
    pub images: usize,
    /// Number of them written greyscale.
    pub greyscale: usize,
    /// The manifest written next to them.
    pub manifest: Manifest,
}

/// One image to render: its class, instance and place on disk.
struct Planned {
    class: usize,
    instance: usize,
    path: PathBuf,
    width: u32,
    height: u32,
    greyscale: bool,
}

/// Writes a synthetic dataset of `format` into `out` (created if needed; it must be empty
/// if it exists).
pub fn generate(format: Format, out: &Path, options: &SynthOptions) -> Result<SynthSummary, DatasetError> {
    validate(format, options)?;
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| DatasetError::io(out, e))?;
        if entries.next().is_some() {
            return Err(DatasetError::io(
                out,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "directory is not empty; refusing to write a dataset into it",
                ),
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| DatasetError::io(out, e))?;

    let recipes: Vec<ClassRecipe> = (0..options.classes).map(|c| ClassRecipe::new(options.seed, c as u64)).collect();
    let ext = if options.png { "png" } else { "jpg" };
    let total = options.classes * options.per_class;
    let mut plan = Vec::with_capacity(total);
    for (class, recipe) in recipes.iter().enumerate() {
        for instance in 0..options.per_class {
            let n = class * options.per_class + instance;
            let mut r = draw::rng(b"dmlbsize", options.seed, class as u64, instance as u64);
            let (width, height) = image_size(format, options.size, &mut r);
            let path = image_path(format, recipe, class, instance, n, ext);
            // CUB contains greyscale photographs; reproduce a few to exercise forced RGB.
            let greyscale = format == Format::Cub && n % 25 == 7.min(total - 1);
            plan.push(Planned { class, instance, path, width, height, greyscale });
        }
    }

    // Directories first (serially), then images in parallel.
    let mut dirs: Vec<PathBuf> = plan.iter().filter_map(|p| p.path.parent().map(Path::to_path_buf)).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        let full = out.join(d);
        std::fs::create_dir_all(&full).map_err(|e| DatasetError::io(&full, e))?;
    }
    let boxes: Vec<BBox> = plan
        .par_iter()
        .map(|p| {
            let mut r = draw::rng(b"dmlbinst", options.seed, p.class as u64, p.instance as u64);
            let (image, bbox) = draw::render(&recipes[p.class], &mut r, p.width, p.height);
            let full = out.join(&p.path);
            let bytes = encode(image, p.greyscale, options.png);
            std::fs::write(&full, bytes).map_err(|e| DatasetError::io(&full, e))?;
            Ok(bbox)
        })
        .collect::<Result<_, DatasetError>>()?;

    let splits = match format {
        Format::Cub => write_cub(out, options, &recipes, &plan, &boxes)?,
        Format::Cars196 => write_cars(out, options, &recipes, &plan, &boxes)?,
        Format::Sop => write_sop(out, options, &plan)?,
        Format::Inshop => write_inshop(out, options, &plan)?,
        Format::Folder => split_counts(options),
        Format::Features => unreachable!("rejected by validate"),
    };
    let manifest = Manifest {
        generator: "dmlbench synth".into(),
        format,
        classes: options.classes,
        per_class: options.per_class,
        size: options.size,
        seed: options.seed,
        splits,
    };
    let json = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    write_text(&out.join(MANIFEST), &(json + "\n"))?;
    Ok(SynthSummary {
        root: out.to_path_buf(),
        images: plan.len(),
        greyscale: plan.iter().filter(|p| p.greyscale).count(),
        manifest,
    })
}

fn validate(format: Format, o: &SynthOptions) -> Result<(), DatasetError> {
    let bad = |m: String| Err(DatasetError::Invalid(m));
    if format == Format::Features {
        return bad("synthetic data is generated as images; choose cub, cars196, sop, inshop or folder".into());
    }
    if o.classes < 2 {
        return bad(format!("--classes {} is too few: at least 2 are needed (half train, half test)", o.classes));
    }
    let min_per_class = if format == Format::Inshop { 2 } else { 1 };
    if o.per_class < min_per_class {
        return bad(format!("--per-class {} is too few for {format}: at least {min_per_class}", o.per_class));
    }
    if format == Format::Cub && o.classes > 999 {
        return bad("CUB-format class folders are numbered with three digits: at most 999 classes".into());
    }
    if !(16..=4096).contains(&o.size) {
        return bad(format!("--size {} is out of range 16–4096", o.size));
    }
    Ok(())
}

/// Image sizes resembling each dataset: CUB, SOP and folders mostly landscape 4:3-ish,
/// Cars wide, In-Shop square.
fn image_size(format: Format, size: u32, r: &mut rand_chacha::ChaCha8Rng) -> (u32, u32) {
    use rand::RngExt;
    let short = |lo: f32, hi: f32, r: &mut rand_chacha::ChaCha8Rng| {
        ((size as f32) * (lo + (hi - lo) * r.random::<f32>())).round().max(8.0) as u32
    };
    match format {
        Format::Inshop => (size, size),
        Format::Cars196 => (size, short(0.55, 0.75, r)),
        _ => {
            let other = short(0.7, 1.0, r);
            if r.random::<f32>() < 0.7 { (size, other) } else { (other, size) }
        }
    }
}

const SOP_SUPER: [&str; 12] = [
    "bicycle",
    "cabinet",
    "chair",
    "coffee_maker",
    "fan",
    "kettle",
    "lamp",
    "mug",
    "sofa",
    "stapler",
    "table",
    "toaster",
];
const INSHOP_CATEGORIES: [(&str, &str); 6] = [
    ("WOMEN", "Dresses"),
    ("WOMEN", "Blouses_Shirts"),
    ("MEN", "Tees_Tanks"),
    ("WOMEN", "Skirts"),
    ("MEN", "Pants"),
    ("MEN", "Jackets_Vests"),
];
const INSHOP_VIEWS: [&str; 4] = ["front", "side", "back", "full"];

fn cub_class_dir(recipe: &ClassRecipe, class: usize) -> String {
    format!("{:03}.{}_{:03}", class + 1, recipe.name(), class + 1)
}

fn sop_folder(class: usize) -> String {
    let group = class / 4;
    let name = SOP_SUPER[group % SOP_SUPER.len()];
    if group < SOP_SUPER.len() {
        format!("{name}_final")
    } else {
        format!("{name}{}_final", group / SOP_SUPER.len() + 1)
    }
}

fn image_path(format: Format, recipe: &ClassRecipe, class: usize, k: usize, n: usize, ext: &str) -> PathBuf {
    match format {
        Format::Cub => {
            let dir = cub_class_dir(recipe, class);
            format!("images/{dir}/{}_{:04}_{}.{ext}", recipe.name(), k + 1, n + 1).into()
        }
        Format::Cars196 => format!("car_ims/{:06}.{ext}", n + 1).into(),
        Format::Sop => {
            let ext = if ext == "jpg" { "JPG" } else { ext };
            format!("{}/{}_{k}.{ext}", sop_folder(class), 100_000 + class + 1).into()
        }
        Format::Inshop => {
            let (gender, category) = INSHOP_CATEGORIES[class % INSHOP_CATEGORIES.len()];
            let view = INSHOP_VIEWS[k % INSHOP_VIEWS.len()];
            format!("img/{gender}/{category}/id_{:08}/{:02}_{}_{view}.{ext}", class + 1, k / 4 + 1, k % 4 + 1).into()
        }
        Format::Folder | Format::Features => {
            format!("class_{:03}_{}/{:04}.{ext}", class + 1, recipe.name(), k + 1).into()
        }
    }
}

fn encode(image: RgbImage, greyscale: bool, png: bool) -> Vec<u8> {
    let dynamic = if greyscale {
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(image).into_luma8())
    } else {
        DynamicImage::ImageRgb8(image)
    };
    let mut bytes = Vec::new();
    let mut cursor = Cursor::new(&mut bytes);
    if png {
        dynamic.write_to(&mut cursor, ImageFormat::Png).expect("encoding to memory");
    } else {
        // write_with_encoder keeps the colour type (encode_image would widen grey to RGB).
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut cursor, 90);
        dynamic.write_with_encoder(encoder).expect("encoding to memory");
    }
    bytes
}

fn write_text(path: &Path, text: &str) -> Result<(), DatasetError> {
    std::fs::write(path, text).map_err(|e| DatasetError::io(path, e))
}

/// Counts of the class-disjoint train/test split: the first ⌊C/2⌋ classes train.
fn split_counts(o: &SynthOptions) -> BTreeMap<Split, SplitCount> {
    let train = o.classes / 2;
    let test = o.classes - train;
    BTreeMap::from([
        (Split::Train, SplitCount { images: train * o.per_class, classes: train }),
        (Split::Test, SplitCount { images: test * o.per_class, classes: test }),
    ])
}

fn write_cub(
    out: &Path,
    o: &SynthOptions,
    recipes: &[ClassRecipe],
    plan: &[Planned],
    boxes: &[BBox],
) -> Result<BTreeMap<Split, SplitCount>, DatasetError> {
    let (mut images, mut labels, mut bbs, mut split, mut classes) =
        (String::new(), String::new(), String::new(), String::new(), String::new());
    for (c, recipe) in recipes.iter().enumerate() {
        writeln!(classes, "{} {}", c + 1, cub_class_dir(recipe, c)).unwrap();
    }
    for (n, (p, b)) in plan.iter().zip(boxes).enumerate() {
        let id = n + 1;
        let rel = p.path.strip_prefix("images").expect("CUB paths are under images/");
        writeln!(images, "{id} {}", rel.display()).unwrap();
        writeln!(labels, "{id} {}", p.class + 1).unwrap();
        writeln!(bbs, "{id} {:.1} {:.1} {:.1} {:.1}", b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1).unwrap();
        writeln!(split, "{id} {}", (p.instance % 2 == 0) as u8).unwrap();
    }
    for (name, text) in [
        ("classes.txt", classes),
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("bounding_boxes.txt", bbs),
        ("train_test_split.txt", split),
    ] {
        write_text(&out.join(name), &text)?;
    }
    Ok(split_counts(o))
}

fn write_cars(
    out: &Path,
    o: &SynthOptions,
    recipes: &[ClassRecipe],
    plan: &[Planned],
    boxes: &[BBox],
) -> Result<BTreeMap<Split, SplitCount>, DatasetError> {
    let fields =
        ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"].map(String::from).to_vec();
    let elements = plan
        .iter()
        .zip(boxes)
        .map(|(p, b)| {
            // Storage types as in the published file: boxes as integers, class as a
            // double (which the writer stores as uint8), test as uint8.
            vec![
                MatValue::string(&p.path.to_string_lossy()),
                MatValue::scalar(b.x1.floor() as f64 + 1.0),
                MatValue::scalar(b.y1.floor() as f64 + 1.0),
                MatValue::scalar_of(NumericClass::UInt16, b.x2.ceil() as f64),
                MatValue::scalar_of(NumericClass::UInt16, b.y2.ceil() as f64),
                MatValue::scalar((p.class + 1) as f64),
                MatValue::scalar_of(NumericClass::UInt8, (p.instance % 2) as f64),
            ]
        })
        .collect();
    let names = recipes
        .iter()
        .enumerate()
        .map(|(c, r)| MatValue::string(&format!("{} {}", r.name().replace('_', " "), c + 1)))
        .collect();
    let vars = [("annotations", MatValue::structure(fields, elements)), ("class_names", MatValue::cell_row(names))];
    mat::write(&out.join(crate::cars196::ANNOTATIONS), &vars, true)?;
    Ok(split_counts(o))
}

fn write_sop(out: &Path, o: &SynthOptions, plan: &[Planned]) -> Result<BTreeMap<Split, SplitCount>, DatasetError> {
    let train_classes = o.classes / 2;
    let header = "image_id class_id super_class_id path\n";
    let (mut train, mut test) = (header.to_string(), header.to_string());
    let (mut train_id, mut test_id) = (0, 0);
    for p in plan {
        let (text, id) = if p.class < train_classes { (&mut train, &mut train_id) } else { (&mut test, &mut test_id) };
        *id += 1;
        writeln!(text, "{} {} {} {}", id, p.class + 1, p.class / 4 + 1, p.path.display()).unwrap();
    }
    write_text(&out.join("Ebay_train.txt"), &train)?;
    write_text(&out.join("Ebay_test.txt"), &test)?;
    Ok(split_counts(o))
}

fn write_inshop(out: &Path, o: &SynthOptions, plan: &[Planned]) -> Result<BTreeMap<Split, SplitCount>, DatasetError> {
    let train_classes = o.classes / 2;
    let mut text = format!("{}\nimage_name item_id evaluation_status\n", plan.len());
    let (mut query, mut gallery) = (0, 0);
    for p in plan {
        let status = if p.class < train_classes {
            "train"
        } else if p.instance % 2 == 0 {
            query += 1;
            "query"
        } else {
            gallery += 1;
            "gallery"
        };
        writeln!(text, "{:<64} id_{:08} {status}", p.path.display(), p.class + 1).unwrap();
    }
    write_text(&out.join(crate::inshop::PARTITION), &text)?;
    let eval_classes = o.classes - train_classes;
    Ok(BTreeMap::from([
        (Split::Train, SplitCount { images: train_classes * o.per_class, classes: train_classes }),
        (Split::Query, SplitCount { images: query, classes: eval_classes }),
        (Split::Gallery, SplitCount { images: gallery, classes: eval_classes }),
    ]))
}
