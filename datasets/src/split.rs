//! What every loader produces: which images belong to which split, with which label, class
//! name and bounding box, and the helpers the loaders build it with.
//!
//! Paths are stored relative to the dataset root and were checked not to escape it (see
//! the crate docs). Labels inside a split run from 0 to C−1 in the order of the original
//! class ids; [`ClassInfo`] keeps the original id and name of each label. In-Shop's query
//! and gallery splits share one label space so that a query's label equals the labels of
//! its matches in the gallery.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::format::{Format, Split};

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
