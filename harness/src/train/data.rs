//! The data of a cell: the training split (minus held-out validation classes), the test
//! split (or In-Shop's query and gallery), and the transforms.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use dmlbench_datasets::transform::{Recipe, RecipeSizes, recipe};
use dmlbench_datasets::{ClassInfo, DatasetIndex, Format, Item, LoadOptions, Split, SplitIndex, index};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::experiment::spec::DatasetSpec;
use dmlbench_record::{DatasetInfo, fingerprint};

/// What evaluation runs on.
pub enum Evaluation {
    /// Every image queried against the others.
    SelfRetrieval(Arc<SplitIndex>),
    /// Queries against a gallery (In-Shop).
    QueryGallery {
        /// The queries.
        query: Arc<SplitIndex>,
        /// The gallery.
        gallery: Arc<SplitIndex>,
    },
}

/// The splits and transforms of a cell.
pub struct CellData {
    /// Training images, labels 0..C−1 over the training classes kept.
    pub train: Arc<SplitIndex>,
    /// Held-out training classes, for `Best` model selection.
    pub validation: Option<Arc<SplitIndex>>,
    /// The test data.
    pub test: Evaluation,
    /// Training and evaluation transforms.
    pub recipe: Recipe,
    /// What the record says about the data.
    pub info: DatasetInfo,
}

/// The held-out classes are drawn with this fixed seed, so every cell (every loss, every
/// seed) validates on the same classes.
const VALIDATION_SEED: u64 = 0x7661_6c69_6461_7465;

/// Cross-validation folds are cut from a shuffle with this fixed seed, so that fold f holds
/// the same classes in every cell of an experiment (and records list them).
const FOLD_SEED: u64 = 0x666f_6c64_7368_7566;

/// The class indices 0..`classes` in an order shuffled with `seed`.
fn shuffled_classes(classes: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..classes).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// Splits off `fraction` of `train`'s classes (at least one, when the fraction is positive)
/// as a validation split. Both get labels 0..C−1 of their own.
pub fn hold_out_classes(train: SplitIndex, fraction: f64) -> (SplitIndex, Option<SplitIndex>) {
    if fraction <= 0.0 {
        return (train, None);
    }
    let classes = train.num_classes();
    let held = ((classes as f64 * fraction).round() as usize).clamp(1, classes.saturating_sub(1));
    let order = shuffled_classes(classes, VALIDATION_SEED);
    let (kept, validation) = split_classes(&train, &order[..held]);
    (kept, Some(validation))
}

/// Fold `fold` of a class-disjoint `folds`-fold split of `train`'s classes: the training
/// classes shuffled with a fixed seed and cut into `folds` contiguous parts whose class
/// counts differ by at most one. Returns (the other folds' images, fold `fold`'s images),
/// each labelled 0..C−1 of its own. Needs at least `folds` classes and `fold` < `folds`.
pub fn fold_classes(train: SplitIndex, folds: usize, fold: usize) -> (SplitIndex, SplitIndex) {
    let classes = train.num_classes();
    assert!(fold < folds && folds <= classes, "fold {fold} of {folds} over {classes} classes");
    let order = shuffled_classes(classes, FOLD_SEED);
    split_classes(&train, &order[fold * classes / folds..(fold + 1) * classes / folds])
}

/// (the images of the classes not in `held`, the images of those in `held`), each relabelled
/// 0..C−1 in the order of the original labels.
fn split_classes(train: &SplitIndex, held: &[usize]) -> (SplitIndex, SplitIndex) {
    let classes = train.num_classes();
    let mut is_held = vec![false; classes];
    for &c in held {
        is_held[c] = true;
    }
    let subset = |held_out: bool| {
        // New labels in the order of the old ones, so the subset reads like the original.
        let mut relabel = vec![-1i64; classes];
        let mut new_classes: Vec<ClassInfo> = Vec::new();
        for c in (0..classes).filter(|&c| is_held[c] == held_out) {
            relabel[c] = new_classes.len() as i64;
            new_classes.push(train.classes[c].clone());
        }
        let items = train
            .items
            .iter()
            .filter(|item| is_held[item.label as usize] == held_out)
            .map(|item| Item { label: relabel[item.label as usize], ..item.clone() })
            .collect();
        SplitIndex {
            split: Split::Train,
            root: train.root.clone(),
            items,
            classes: new_classes,
            annotation: train.annotation.clone(),
        }
    };
    (subset(false), subset(true))
}

/// The dataset's ids of `split`'s classes, ascending.
fn class_ids(split: &SplitIndex) -> Vec<i64> {
    let mut ids: Vec<i64> = split.classes.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids
}

fn split(index: &DatasetIndex, which: Split) -> anyhow::Result<SplitIndex> {
    index.split(which).cloned().with_context(|| format!("the dataset has no {} split", which.name()))
}

/// Loads the dataset of `spec` from `root`, for cross-validation fold `fold` when the cell
/// is a fold run.
pub fn load(spec: &DatasetSpec, root: &Path, fold: Option<u32>) -> anyhow::Result<CellData> {
    let index = index::load(spec.format, root, &LoadOptions { strict: spec.strict })
        .with_context(|| format!("loading the {} dataset at {}", spec.format.name(), root.display()))?;
    for warning in &index.warnings {
        eprintln!("warning: {warning}");
    }
    // The fingerprint covers which image is in which split with which label, not the pixels.
    let listing: String = index
        .splits
        .iter()
        .flat_map(|s| {
            s.items.iter().map(move |item| format!("{}:{}:{}\n", s.split.name(), item.label, item.path.display()))
        })
        .collect();
    let train = split(&index, Split::Train)?;
    let (test, test_images, test_classes) = if spec.format == Format::Inshop {
        let (query, gallery) = (split(&index, Split::Query)?, split(&index, Split::Gallery)?);
        let (n, c) = (query.len(), query.num_classes());
        (Evaluation::QueryGallery { query: Arc::new(query), gallery: Arc::new(gallery) }, n, c)
    } else {
        let test = split(&index, Split::Test)?;
        let (n, c) = (test.len(), test.num_classes());
        (Evaluation::SelfRetrieval(Arc::new(test)), n, c)
    };
    let (train_images, train_classes) = (train.len(), train.num_classes());
    let (train, validation) = match (spec.folds(), fold) {
        (Some(folds), Some(fold)) => {
            if train_classes < folds.max(3) {
                anyhow::bail!(
                    "{} has {train_classes} training classes, too few for dataset.validation: KFold(folds: {folds}) \
                     (each fold needs a class, and training at least 2)",
                    root.display()
                );
            }
            let (train, validation) = fold_classes(train, folds, fold as usize);
            (train, Some(validation))
        }
        (None, None) => hold_out_classes(train, spec.validation_classes),
        (folds, fold) => anyhow::bail!("a cell of fold {fold:?} in an experiment of {folds:?} folds"),
    };
    if train.num_classes() < 2 {
        match &validation {
            Some(held_out) => anyhow::bail!(
                "training needs at least 2 classes: {} has {train_classes} training classes, and dataset.validation_classes \
                 ({}) holds {} of them out for validation, leaving {}; lower validation_classes",
                root.display(),
                spec.validation_classes,
                held_out.num_classes(),
                train.num_classes()
            ),
            None => anyhow::bail!("training needs at least 2 classes, {} has {}", root.display(), train.num_classes()),
        }
    }
    let sizes = RecipeSizes { resize: spec.transforms.resize, crop: spec.transforms.crop };
    let validation_classes = validation.as_ref().map(class_ids).unwrap_or_default();
    Ok(CellData {
        train: Arc::new(train),
        validation: validation.map(Arc::new),
        test,
        recipe: recipe(spec.format, sizes, spec.transforms.jitter),
        info: DatasetInfo {
            format: spec.format.name().to_string(),
            root: root.display().to_string(),
            fingerprint: fingerprint(listing.as_bytes()),
            train_images,
            train_classes,
            test_images,
            test_classes,
            validation_classes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_split(classes: usize, per_class: usize) -> SplitIndex {
        SplitIndex {
            split: Split::Train,
            root: "/data".into(),
            items: (0..classes * per_class)
                .map(|i| Item {
                    path: format!("{i}.jpg").into(),
                    label: (i / per_class) as i64,
                    bbox: None,
                    line: Some(i + 1),
                })
                .collect(),
            classes: (0..classes).map(|c| ClassInfo { id: c as i64 + 1, name: format!("c{c}") }).collect(),
            annotation: "/data/images.txt".into(),
        }
    }

    #[test]
    fn held_out_classes_are_disjoint_relabelled_and_fixed() {
        let (train, val) = hold_out_classes(train_split(10, 3), 0.2);
        let val = val.unwrap();
        assert_eq!((train.num_classes(), val.num_classes()), (8, 2));
        assert_eq!((train.len(), val.len()), (24, 6));
        for s in [&train, &val] {
            assert!(s.labels().iter().all(|&l| l >= 0 && (l as usize) < s.num_classes()));
            // Each new label still names the class its images came from.
            for item in &s.items {
                let original = item.path.to_string_lossy().trim_end_matches(".jpg").parse::<usize>().unwrap() / 3;
                assert_eq!(s.classes[item.label as usize].id, original as i64 + 1);
            }
        }
        let ids = |s: &SplitIndex| s.classes.iter().map(|c| c.id).collect::<Vec<_>>();
        assert!(ids(&val).iter().all(|id| !ids(&train).contains(id)));
        // The same classes every time.
        assert_eq!(ids(&hold_out_classes(train_split(10, 3), 0.2).1.unwrap()), ids(&val));
        assert!(hold_out_classes(train_split(10, 3), 0.0).1.is_none());
    }
}
