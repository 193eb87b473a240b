//! The image and class counts a dataset is expected to have, and the comparison.
//!
//! A truncated download or a wrongly extracted archive usually still loads; comparing the
//! counts with the published ones is what catches it. Datasets written by
//! [`crate::synth`] carry a manifest, `dmlbench-synth.json`, with their own counts, which
//! then replace the published ones; an image folder without a manifest has no expected
//! counts.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Problem};
use crate::format::{Format, Split};
use crate::split::DatasetIndex;

/// The manifest file name written by the synthetic generator.
pub const MANIFEST: &str = "dmlbench-synth.json";

/// Images and classes of one split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCount {
    /// Number of images.
    pub images: usize,
    /// Number of classes (labels).
    pub classes: usize,
}

/// What [`crate::synth`] writes next to a synthetic dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `dmlbench synth`.
    pub generator: String,
    /// The on-disk format.
    pub format: Format,
    /// Number of classes generated.
    pub classes: usize,
    /// Images per class.
    pub per_class: usize,
    /// Longer image side in pixels.
    pub size: u32,
    /// Generator seed.
    pub seed: u64,
    /// The counts each split must have.
    pub splits: BTreeMap<Split, SplitCount>,
}

/// The published counts of the DML splits (class-disjoint, as in Boudiaf et al. 2020 and
/// the papers before it). In-Shop's query and gallery share one label space of 3,985 items.
pub fn official(format: Format) -> Option<BTreeMap<Split, SplitCount>> {
    let c = |images, classes| SplitCount { images, classes };
    let pairs: Vec<(Split, SplitCount)> = match format {
        Format::Cub => vec![(Split::Train, c(5_864, 100)), (Split::Test, c(5_924, 100))],
        Format::Cars196 => vec![(Split::Train, c(8_054, 98)), (Split::Test, c(8_131, 98))],
        Format::Sop => vec![(Split::Train, c(59_551, 11_318)), (Split::Test, c(60_502, 11_316))],
        Format::Inshop => {
            vec![(Split::Train, c(25_882, 3_997)), (Split::Query, c(14_218, 3_985)), (Split::Gallery, c(12_612, 3_985))]
        }
        Format::Folder | Format::Features => return None,
    };
    Some(pairs.into_iter().collect())
}

/// Reads the manifest in `root`, if there is one.
pub fn read_manifest(root: &Path) -> Result<Option<Manifest>, DatasetError> {
    let path = root.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DatasetError::io(&path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DatasetError::format(&path, Some(e.line()), format!("not a valid manifest: {e}")))
}

/// Compares `index` with its expected counts and returns one problem per mismatch, each
/// naming the split's annotation file.
pub(crate) fn compare(index: &DatasetIndex) -> Result<Vec<Problem>, DatasetError> {
    let (expected, source) = match read_manifest(&index.root)? {
        Some(manifest) => {
            if manifest.format != index.format {
                return Err(DatasetError::format(
                    &index.root.join(MANIFEST),
                    None,
                    format!(
                        "the manifest describes a {} dataset but it is being read as {}",
                        manifest.format, index.format
                    ),
                ));
            }
            (manifest.splits, format!("the counts in {MANIFEST}"))
        }
        None => match official(index.format) {
            Some(counts) => (counts, format!("the published {} counts", index.format.title())),
            None => return Ok(Vec::new()),
        },
    };
    let mut problems = Vec::new();
    for split in &index.splits {
        let Some(want) = expected.get(&split.split) else { continue };
        let have = SplitCount { images: split.len(), classes: split.num_classes() };
        for (what, h, w) in [("images", have.images, want.images), ("classes", have.classes, want.classes)] {
            if h != w {
                problems.push(Problem::new(
                    &split.annotation,
                    None,
                    format!("{} split has {h} {what}, expected {w} ({source})", split.split),
                ));
            }
        }
    }
    Ok(problems)
}
