//! The `--embeddings E.npy --labels L.npy` pair shared by `loss` and `mine`, with optional
//! reference embeddings (`--ref-embeddings R.npy --ref-labels RL.npy`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use dmlbench_datasets::npy;
use dmlbench_host::References;

/// The most classes inferred from the labels alone (largest label + 1). Every DML benchmark has
/// far fewer (SOP: 22,634); a larger label is far more likely a wrong file or column than a
/// class, and a plugin with a classifier would allocate a row of parameters per class.
/// `--num-classes` allows more.
pub const MAX_INFERRED_CLASSES: u64 = 1_000_000;

/// A batch read from two `.npy` files.
#[derive(Debug, Clone, Args)]
pub struct BatchFiles {
    /// Embeddings: a 2-D float32 or float64 array (n × d) in C order
    #[arg(long, value_name = "E.npy")]
    pub embeddings: PathBuf,
    /// Labels: a 1-D int32 or int64 array of length n, class indices 0..C-1
    #[arg(long, value_name = "L.npy")]
    pub labels: PathBuf,
    /// Number of classes C given to the plugin; every label must be below it [default: the
    /// largest label + 1, at most 1000000]
    #[arg(long, value_name = "C")]
    pub num_classes: Option<u64>,
    /// Reference embeddings (m × d) the batch is compared with, as PML's `ref_emb`: anchors
    /// are batch rows, positives and negatives reference rows; needs --ref-labels
    #[arg(long, value_name = "R.npy", requires = "ref_labels")]
    pub ref_embeddings: Option<PathBuf>,
    /// Labels of the reference embeddings (length m)
    #[arg(long, value_name = "RL.npy", requires = "ref_embeddings")]
    pub ref_labels: Option<PathBuf>,
}

/// A loaded batch.
pub struct LoadedBatch {
    pub embeddings: Vec<f32>,
    pub d: usize,
    pub labels: Vec<i64>,
    /// The number of classes: `--num-classes`, or the largest label (of batch and
    /// references) + 1.
    pub num_classes: usize,
    /// Reference embeddings (m×d, the batch's d) and their labels, when given.
    pub references: Option<(Vec<f32>, Vec<i64>)>,
}

impl LoadedBatch {
    /// The references as the host passes them; none of them is a batch row itself.
    pub fn references(&self) -> Option<References<'_>> {
        self.references.as_ref().map(|(embeddings, labels)| References { embeddings, labels, self_rows: None })
    }
}

impl BatchFiles {
    /// Reads the batch and checks its labels before any plugin sees them.
    pub fn load(&self) -> anyhow::Result<LoadedBatch> {
        let (e, labels) =
            npy::read_embeddings_and_labels(&self.embeddings, &self.labels).context("cannot read the batch")?;
        anyhow::ensure!(
            e.n > 0 && e.d > 0,
            "{}: the batch is empty (shape {} × {})",
            self.embeddings.display(),
            e.n,
            e.d
        );
        let mut num_classes = class_count(&labels, self.num_classes)
            .map_err(|problem| anyhow::anyhow!("{}: {problem}", self.labels.display()))?;
        let references = match (&self.ref_embeddings, &self.ref_labels) {
            (Some(embeddings_file), Some(labels_file)) => {
                let (r, reference_labels) = npy::read_embeddings_and_labels(embeddings_file, labels_file)
                    .context("cannot read the reference embeddings")?;
                anyhow::ensure!(
                    r.n > 0 && r.d == e.d,
                    "{}: the references are {} × {}; they need at least one row of the batch's size {}",
                    embeddings_file.display(),
                    r.n,
                    r.d,
                    e.d
                );
                let classes = class_count(&reference_labels, self.num_classes)
                    .map_err(|problem| anyhow::anyhow!("{}: {problem}", labels_file.display()))?;
                num_classes = num_classes.max(classes);
                Some((r.data, reference_labels))
            }
            _ => None,
        };
        Ok(LoadedBatch { embeddings: e.data, d: e.d, labels, num_classes, references })
    }
}

/// The number of classes of a batch with these labels, `given` or inferred, with every label
/// checked against it. The class count travels to plugins as a 32-bit number, and a plugin
/// with a classifier allocates parameters for every class, so it is checked here, before any
/// plugin is created.
fn class_count(labels: &[i64], given: Option<u64>) -> Result<usize, String> {
    if let Some((i, &label)) = labels.iter().enumerate().find(|&(_, &l)| l < 0) {
        return Err(format!("label {label} at index {i} is negative; labels are class indices 0..C-1"));
    }
    let Some((largest_at, &largest)) = labels.iter().enumerate().max_by_key(|&(i, &l)| (l, std::cmp::Reverse(i)))
    else {
        return Err("no labels".into());
    };
    let largest = largest as u64; // non-negative, checked above
    let classes = match given {
        Some(0) => return Err("--num-classes must be at least 1".into()),
        Some(c) if c > u64::from(u32::MAX) => {
            return Err(format!("--num-classes {c} is more than the plugin interface can pass ({})", u32::MAX));
        }
        Some(c) if largest >= c => {
            return Err(format!("label {largest} at index {largest_at} is outside 0..{c} (--num-classes {c})"));
        }
        Some(c) => c,
        None if largest >= MAX_INFERRED_CLASSES => {
            return Err(format!(
                "label {largest} at index {largest_at} would make {} classes (the largest label + 1), more than the \
                 {MAX_INFERRED_CLASSES} inferred from labels; use class indices 0..C-1, or pass --num-classes C",
                u128::from(largest) + 1
            ));
        }
        None => largest + 1,
    };
    usize::try_from(classes).map_err(|_| format!("{classes} classes do not fit this machine's address size"))
}

#[cfg(test)]
mod tests {
    use super::{MAX_INFERRED_CLASSES, class_count};

    #[test]
    fn labels_are_checked_against_the_class_count() {
        assert_eq!(class_count(&[0, 3, 1], None), Ok(4));
        assert_eq!(class_count(&[0, 3, 1], Some(10)), Ok(10));
        let negative = class_count(&[0, 2, -1, 1], None).unwrap_err();
        assert_eq!(negative, "label -1 at index 2 is negative; labels are class indices 0..C-1");
        let huge = class_count(&[0, 1_000_000_000_000_000, 1], None).unwrap_err();
        assert!(huge.starts_with("label 1000000000000000 at index 1 would make 1000000000000001 classes"), "{huge}");
        assert!(class_count(&[MAX_INFERRED_CLASSES as i64 - 1], None).is_ok());
        assert!(class_count(&[MAX_INFERRED_CLASSES as i64], None).is_err());
        assert_eq!(
            class_count(&[0, 4, 4], Some(4)),
            Err("label 4 at index 1 is outside 0..4 (--num-classes 4)".into())
        );
        assert!(class_count(&[0], Some(0)).is_err());
        assert!(class_count(&[0], Some(u64::from(u32::MAX) + 1)).is_err());
        assert_eq!(
            class_count(&[i64::MAX], Some(u64::from(u32::MAX))).unwrap_err(),
            format!("label {} at index 0 is outside 0..{} (--num-classes {})", i64::MAX, u32::MAX, u32::MAX)
        );
    }
}
