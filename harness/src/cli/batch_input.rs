//! The `--embeddings E.npy --labels L.npy` pair shared by `loss` and `mine`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use dmlbench_datasets::npy;

/// A batch read from two `.npy` files.
#[derive(Debug, Clone, Args)]
pub struct BatchFiles {
    /// Embeddings: a 2-D float32 or float64 array (n × d) in C order
    #[arg(long, value_name = "E.npy")]
    pub embeddings: PathBuf,
    /// Labels: a 1-D int32 or int64 array of length n
    #[arg(long, value_name = "L.npy")]
    pub labels: PathBuf,
}

/// A loaded batch.
pub struct LoadedBatch {
    pub embeddings: Vec<f32>,
    pub d: usize,
    pub labels: Vec<i64>,
    /// max label + 1 when every label is non-negative (what classifier losses need), else 0.
    pub num_classes: usize,
}

impl BatchFiles {
    pub fn load(&self) -> anyhow::Result<LoadedBatch> {
        let (e, labels) = npy::read_embeddings_and_labels(&self.embeddings, &self.labels)
            .context("cannot read the batch")?;
        anyhow::ensure!(e.n > 0 && e.d > 0, "{}: the batch is empty (shape {} × {})", self.embeddings.display(), e.n, e.d);
        let num_classes = if labels.iter().all(|&l| l >= 0) {
            labels.iter().max().map_or(0, |&m| m as usize + 1)
        } else {
            0
        };
        Ok(LoadedBatch { embeddings: e.data, d: e.d, labels, num_classes })
    }
}
