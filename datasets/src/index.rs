//! Loading a dataset: [`load`] sends each format to its loader (`cub`, `cars196`, `sop`,
//! `inshop`, `folder`), which builds the splits of [`crate::split`], then compares the counts
//! with the expected ones ([`crate::expected`]).
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

use std::path::Path;

use crate::error::DatasetError;
use crate::expected;
use crate::format::Format;
use crate::split::DatasetIndex;

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
