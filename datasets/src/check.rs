//! Checking a dataset: load its index, decode every image, compare the counts.
//!
//! Unlike loading, a check does not stop at the first problem with an image: every
//! missing, empty or corrupt file is listed, in index order, whatever the number of
//! threads that decoded them. A problem in the annotation files themselves stops the
//! check at that problem (the rest cannot be interpreted without it) and is reported the
//! same way. Only a root that is not a directory makes [`check`] return an error.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use dmlbench_datasets::{check, synth, Format, Split};
//! synth::generate(Format::Cub, dir.path(), &synth::SynthOptions { classes: 4, per_class: 2, size: 32, ..Default::default() }).unwrap();
//! std::fs::write(dir.path().join("images.txt"), "1 missing.jpg\n").unwrap();
//! let report = check::check(Format::Cub, dir.path(), &check::CheckOptions::default(), &()).unwrap();
//! assert!(!report.is_ok());
//! assert!(report.problems[0].message.contains("no label") || report.problems[0].message.contains("not listed"));
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::decode;
use crate::error::{DatasetError, Problem};
use crate::expected::SplitCount;
use crate::features;
use crate::format::{Format, Split};
use crate::index::{self, LoadOptions};

/// How to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Count mismatches are problems when true (the default) and warnings when false.
    pub strict: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { strict: true }
    }
}

/// Progress callbacks (a progress bar in the CLI). Called from several threads.
pub trait Progress: Sync {
    /// Decoding starts; `total` images will be decoded.
    fn start(&self, _total: u64) {}
    /// One more image was decoded.
    fn advance(&self) {}
}

/// No progress reporting.
impl Progress for () {}

/// The outcome of a check, serialised as the JSON of `dmlbench data check --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The format checked.
    pub format: Format,
    /// Images and classes per split (empty when the annotations could not be read).
    pub splits: BTreeMap<Split, SplitCount>,
    /// Images that were greyscale (decoded ones only).
    pub greyscale: usize,
    /// Everything wrong; empty means the dataset is fine.
    pub problems: Vec<Problem>,
    /// Count mismatches tolerated by a non-strict check.
    pub warnings: Vec<Problem>,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the dataset of `format` at `root`.
pub fn check(
    format: Format,
    root: &Path,
    options: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport, DatasetError> {
    if !root.is_dir() {
        return Err(DatasetError::io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotFound, "dataset root is not a directory"),
        ));
    }
    let mut report =
        CheckReport { format, splits: BTreeMap::new(), greyscale: 0, problems: Vec::new(), warnings: Vec::new() };
    if format == Format::Features {
        match features::load(root) {
            Ok(set) => {
                for s in &set.splits {
                    report.splits.insert(s.split, SplitCount { images: s.embeddings.n, classes: s.classes.len() });
                }
            }
            Err(e) => report.problems.push(Problem::from(&e)),
        }
        return Ok(report);
    }

    let dataset = match index::load(format, root, &LoadOptions { strict: false }) {
        Ok(dataset) => dataset,
        Err(e) => {
            report.problems.push(Problem::from(&e));
            return Ok(report);
        }
    };
    for s in &dataset.splits {
        report.splits.insert(s.split, SplitCount { images: s.len(), classes: s.num_classes() });
    }
    if options.strict {
        report.problems.extend(dataset.warnings.iter().cloned());
    } else {
        report.warnings.extend(dataset.warnings.iter().cloned());
    }

    let work: Vec<(usize, usize)> =
        dataset.splits.iter().enumerate().flat_map(|(s, split)| (0..split.len()).map(move |i| (s, i))).collect();
    progress.start(work.len() as u64);
    // Collecting a parallel iterator keeps the input order, so the report is the same
    // whatever the number of threads.
    let outcomes: Vec<Result<bool, Problem>> = work
        .par_iter()
        .map(|&(s, i)| {
            let split = &dataset.splits[s];
            let path = split.path(i);
            let result = match std::fs::read(&path) {
                Ok(bytes) => decode::decode(&bytes, &path).map(|d| d.greyscale).map_err(|e| {
                    Problem::new(&path, None, format!("{} (listed at {})", e.message(), split.listed_at(i)))
                }),
                Err(e) => {
                    let what = if e.kind() == std::io::ErrorKind::NotFound {
                        "missing file".to_string()
                    } else {
                        format!("cannot read: {e}")
                    };
                    Err(Problem::new(&path, None, format!("{what} (listed at {})", split.listed_at(i))))
                }
            };
            progress.advance();
            result
        })
        .collect();
    for outcome in outcomes {
        match outcome {
            Ok(grey) => report.greyscale += grey as usize,
            Err(problem) => report.problems.push(problem),
        }
    }
    Ok(report)
}
