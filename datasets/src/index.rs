//! The common index every loader produces: which images belong to which split, with which
//! label, class name and bounding box.
//!
//! Paths are stored relative to the dataset root and were checked not to escape it (see
//! the crate docs). Labels inside a split run from 0 to C−1 in the order of the original
//! class ids; [`ClassInfo`] keeps the original id and name of each label. In-Shop's query
//! and gallery splits share one label space so that a query's label equals the labels of
//! its matches in the gallery.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use dmlbench_datasets::{index, synth, Format, LoadOptions, Split};
//! synth::generate(Format::Cub, dir.path(), &synth::SynthOptions { classes: 4, per_class: 3, size: 32, ..Default::default() }).unwrap();
//! let dataset = index::load(Format::Cub, dir.path(), &LoadOptions::default()).unwrap();
//! let train = dataset.split(Split::Train).unwrap();
//! assert_eq!((train.len(), train.num_classes()), (6, 2));
//! assert_eq!(train.items[0].label, 0);
//! assert!(train.path(0).starts_with(dir.path()));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Problem};
use crate::expected;

/// A dataset's on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CUB-200-2011.
    Cub,
    /// Stanford Cars (Cars196).
    Cars196,
    /// Stanford Online Products.
    Sop,
    /// DeepFashion In-Shop Clothes Retrieval.
    Inshop,
    /// `root/<class>/<image>` folders.
    Folder,
    /// `.npy` embeddings and labels (no images).
    Features,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Format; 6] =
        [Format::Cub, Format::Cars196, Format::Sop, Format::Inshop, Format::Folder, Format::Features];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Format::Cub => "cub",
            Format::Cars196 => "cars196",
            Format::Sop => "sop",
            Format::Inshop => "inshop",
            Format::Folder => "folder",
            Format::Features => "features",
        }
    }

    /// The dataset's usual name.
    pub fn title(self) -> &'static str {
        match self {
            Format::Cub => "CUB-200-2011",
            Format::Cars196 => "Cars196",
            Format::Sop => "Stanford Online Products",
            Format::Inshop => "In-Shop",
            Format::Folder => "image folder",
            Format::Features => "feature files",
        }
    }

    /// The splits this format has, in order.
    pub fn splits(self) -> &'static [Split] {
        match self {
            Format::Inshop => &[Split::Train, Split::Query, Split::Gallery],
            _ => &[Split::Train, Split::Test],
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
            format!("unknown dataset format '{s}'; expected one of {}", names.join(", "))
        })
    }
}

/// A split of a dataset. DML splits are class-disjoint: no class of `Train` appears in the
/// evaluation splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training classes.
    Train,
    /// Evaluation classes, queried against themselves (CUB, Cars196, SOP, folders).
    Test,
    /// In-Shop evaluation queries.
    Query,
    /// In-Shop evaluation gallery.
    Gallery,
}

impl Split {
    /// The split's name, as in JSON and split files.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Query => "query",
            Split::Gallery => "gallery",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            "query" => Ok(Split::Query),
            "gallery" => Ok(Split::Gallery),
            _ => Err(format!("unknown split '{s}'; expected train, test, query or gallery")),
        }
    }
}

/// An axis-aligned box in pixel coordinates of the original image: `x1 ≤ x < x2`,
/// `y1 ≤ y < y2`. CUB's `x y width height` are converted to corners.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

/// One image of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Path relative to the dataset root; checked not to escape it.
    pub path: PathBuf,
    /// Label in 0..C−1 within the split (In-Shop: within query ∪ gallery).
    pub label: i64,
    /// Bounding box, where the format has them (CUB with `bounding_boxes.txt`, Cars196).
    pub bbox: Option<BBox>,
    /// The 1-based line of the annotation file that lists the image, for messages.
    pub line: Option<usize>,
}

/// What a label stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    /// The class id in the dataset's own files (CUB's class id, Cars196's `class`, SOP's
    /// `class_id`, In-Shop's item number, a folder's 1-based position).
    pub id: i64,
    /// A readable name (CUB's class name, a folder name, SOP's `super/class_id`, ...).
    pub name: String,
}

/// One split: its images, labels and classes.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitIndex {
    /// Which split.
    pub split: Split,
    /// The dataset root the item paths are relative to.
    pub root: PathBuf,
    /// The images, in the order of the annotation files.
    pub items: Vec<Item>,
    /// `classes[label]` describes label `label`.
    pub classes: Vec<ClassInfo>,
    /// The annotation file the items come from (for messages).
    pub annotation: PathBuf,
}

impl SplitIndex {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the split has no images.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of labels (classes) of the split.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Full path of image `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.root.join(&self.items[i].path)
    }

    /// The labels of all images, in order.
    pub fn labels(&self) -> Vec<i64> {
        self.items.iter().map(|item| item.label).collect()
    }

    /// Where image `i` is listed, for messages: `images.txt:17`.
    pub fn listed_at(&self, i: usize) -> String {
        match self.items[i].line {
            Some(line) => format!("{}:{line}", self.annotation.display()),
            None => self.annotation.display().to_string(),
        }
    }
}

/// A loaded dataset: its splits, and the warnings a non-strict load tolerated.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetIndex {
    /// The format it was read as.
    pub format: Format,
    /// The dataset root.
    pub root: PathBuf,
    /// The splits, in [`Format::splits`] order.
    pub splits: Vec<SplitIndex>,
    /// Count mismatches that a non-strict load let through (empty after a strict load).
    pub warnings: Vec<Problem>,
}

impl DatasetIndex {
    /// The split `split`, if the format has it.
    pub fn split(&self, split: Split) -> Option<&SplitIndex> {
        self.splits.iter().find(|s| s.split == split)
    }

    /// Consumes the index and returns one split.
    pub fn into_split(self, split: Split) -> Option<SplitIndex> {
        self.splits.into_iter().find(|s| s.split == split)
    }
}

/// How to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// When true (the default), image and class counts that differ from the expected ones
    /// are an error; when false they are returned as [`DatasetIndex::warnings`].
    ///
    /// The expected counts are the published ones for CUB, Cars196, SOP and In-Shop; for a
    /// dataset written by [`crate::synth`] they are the ones in its manifest
    /// (`dmlbench-synth.json`). An image folder without a manifest has none. A subset of a
    /// real dataset (say, 20 CUB classes) therefore needs `strict: false`.
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { strict: true }
    }
}

/// Loads a dataset of an image format. Feature files have no image index: use
/// [`crate::features::load`].
pub fn load(format: Format, root: &Path, options: &LoadOptions) -> Result<DatasetIndex, DatasetError> {
    if !root.is_dir() {
        return Err(DatasetError::io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotFound, "dataset root is not a directory"),
        ));
    }
    let splits = match format {
        Format::Cub => crate::cub::load(root)?,
        Format::Cars196 => crate::cars196::load(root)?,
        Format::Sop => crate::sop::load(root)?,
        Format::Inshop => crate::inshop::load(root)?,
        Format::Folder => crate::folder::load(root)?,
        Format::Features => {
            return Err(DatasetError::Invalid(
                "feature files have no image index; read them with features::load".into(),
            ));
        }
    };
    let mut index = DatasetIndex { format, root: root.to_path_buf(), splits, warnings: Vec::new() };
    let mismatches = expected::compare(&index)?;
    if options.strict {
        if let Some(first) = mismatches.into_iter().next() {
            return Err(DatasetError::Format {
                path: first.file,
                line: first.line,
                message: format!("{} (load with strict: false to accept other counts)", first.message),
            });
        }
    } else {
        index.warnings = mismatches;
    }
    Ok(index)
}

/// One image as a loader reads it from an annotation file, before labels are remapped.
#[derive(Debug, Clone)]
pub(crate) struct RawItem {
    pub path: PathBuf,
    pub class_id: i64,
    pub bbox: Option<BBox>,
    pub line: Option<usize>,
}

/// Builds a split from raw items: labels are the positions of the class ids in `classes`,
/// which must be sorted by id and contain every id used.
pub(crate) fn build_split(
    split: Split,
    root: &Path,
    annotation: &Path,
    raw: Vec<RawItem>,
    classes: Vec<ClassInfo>,
) -> SplitIndex {
    debug_assert!(classes.windows(2).all(|w| w[0].id < w[1].id));
    let items = raw
        .into_iter()
        .map(|r| {
            let label = classes
                .binary_search_by_key(&r.class_id, |c| c.id)
                .expect("build_split: class id missing from the class list");
            Item { path: r.path, label: label as i64, bbox: r.bbox, line: r.line }
        })
        .collect();
    SplitIndex { split, root: root.to_path_buf(), items, classes, annotation: annotation.to_path_buf() }
}

/// The classes actually used by `raw`, sorted by id, named by `name`.
pub(crate) fn used_classes(raw: &[RawItem], name: impl Fn(i64) -> String) -> Vec<ClassInfo> {
    let mut ids: Vec<i64> = raw.iter().map(|r| r.class_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(|id| ClassInfo { id, name: name(id) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_split_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        assert!("imagenet".parse::<Format>().unwrap_err().contains("cub, cars196"));
        assert_eq!("gallery".parse::<Split>().unwrap(), Split::Gallery);
        assert_eq!(Format::Inshop.splits(), &[Split::Train, Split::Query, Split::Gallery]);
    }

    #[test]
    fn build_split_remaps_labels_in_id_order() {
        let raw = |p: &str, c| RawItem { path: p.into(), class_id: c, bbox: None, line: None };
        let items = vec![raw("a", 12), raw("b", 10), raw("c", 12), raw("d", 11)];
        let classes = used_classes(&items, |id| format!("c{id}"));
        let s = build_split(Split::Train, Path::new("/r"), Path::new("/r/x.txt"), items, classes);
        assert_eq!(s.labels(), vec![2, 0, 2, 1]);
        assert_eq!(s.classes[2], ClassInfo { id: 12, name: "c12".into() });
        assert_eq!(s.path(1), Path::new("/r/b"));
    }
}
