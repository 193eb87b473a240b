//! Feature files: precomputed embeddings as `.npy`, for screening losses on a frozen
//! backbone without decoding images.
//!
//! A feature dataset is a directory with `<split>_embeddings.npy` (n×d, float32 or
//! float64) and `<split>_labels.npy` (n, int32 or int64) for `train` and `test`, or for
//! `train`, `query` and `gallery`. Labels are remapped to 0..C−1 per split (query and
//! gallery share one mapping); the original values are kept in [`ClassInfo::id`].
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use dmlbench_datasets::{features, npy, Split};
//! for (split, labels) in [("train", [7i64, 7, 9]), ("test", [40, 41, 40])] {
//!     npy::write_embeddings(&dir.path().join(format!("{split}_embeddings.npy")), 3, 2, &[0.0; 6]).unwrap();
//!     npy::write_labels(&dir.path().join(format!("{split}_labels.npy")), &labels).unwrap();
//! }
//! let set = features::load(dir.path()).unwrap();
//! let train = set.split(Split::Train).unwrap();
//! assert_eq!(train.labels, vec![0, 0, 1]);
//! assert_eq!(train.classes[1].id, 9);
//! ```

use std::path::{Path, PathBuf};

use crate::error::DatasetError;
use crate::format::Split;
use crate::npy::{self, Embeddings};
use crate::split::ClassInfo;

/// One split of a feature dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSplit {
    /// Which split.
    pub split: Split,
    /// The embeddings, n×d.
    pub embeddings: Embeddings,
    /// Labels in 0..C−1.
    pub labels: Vec<i64>,
    /// `classes[label].id` is the label as stored in the file.
    pub classes: Vec<ClassInfo>,
    /// The labels file, for messages.
    pub labels_path: PathBuf,
}

/// A feature dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDataset {
    /// The directory.
    pub root: PathBuf,
    /// The splits found, train first.
    pub splits: Vec<FeatureSplit>,
}

impl FeatureDataset {
    /// The split `split`, if present.
    pub fn split(&self, split: Split) -> Option<&FeatureSplit> {
        self.splits.iter().find(|s| s.split == split)
    }
}

fn paths(root: &Path, split: Split) -> (PathBuf, PathBuf) {
    (root.join(format!("{split}_embeddings.npy")), root.join(format!("{split}_labels.npy")))
}

/// Loads the feature dataset in `root`.
pub fn load(root: &Path) -> Result<FeatureDataset, DatasetError> {
    let present = |s: Split| paths(root, s).0.exists() || paths(root, s).1.exists();
    let layout: &[Split] = if present(Split::Query) || present(Split::Gallery) {
        &[Split::Train, Split::Query, Split::Gallery]
    } else {
        &[Split::Train, Split::Test]
    };
    let mut raw = Vec::new();
    for &split in layout {
        let (e, l) = paths(root, split);
        let (embeddings, labels) = npy::read_embeddings_and_labels(&e, &l)?;
        if let Some(d0) = raw.first().map(|(_, emb, _, _): &(Split, Embeddings, Vec<i64>, PathBuf)| emb.d)
            && embeddings.d != d0
        {
            return Err(DatasetError::format(
                &e,
                None,
                format!("embeddings have {} columns but the train split's have {d0}", embeddings.d),
            ));
        }
        raw.push((split, embeddings, labels, l));
    }
    // Query and gallery share a label space: build it from both.
    let shared: Vec<i64> = raw
        .iter()
        .filter(|(s, ..)| matches!(s, Split::Query | Split::Gallery))
        .flat_map(|(_, _, labels, _)| labels.iter().copied())
        .collect();
    let splits = raw
        .into_iter()
        .map(|(split, embeddings, labels, labels_path)| {
            let mut ids = if split == Split::Train || split == Split::Test { labels.clone() } else { shared.clone() };
            ids.sort_unstable();
            ids.dedup();
            let remapped = labels.iter().map(|l| ids.binary_search(l).expect("id listed") as i64).collect();
            let classes = ids.iter().map(|&id| ClassInfo { id, name: id.to_string() }).collect();
            FeatureSplit { split, embeddings, labels: remapped, classes, labels_path }
        })
        .collect();
    Ok(FeatureDataset { root: root.to_path_buf(), splits })
}
