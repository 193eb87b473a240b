//! Embedding a whole split with a model in evaluation mode: the evaluation transform,
//! batches in order, running statistics in every batch norm, no dropout.

use std::sync::Arc;

use anyhow::Context as _;
use dmlbench_datasets::loader::sequential_batches;
use dmlbench_datasets::transform::Transform;
use dmlbench_datasets::{Loader, SplitIndex};
use dmlbench_models::EmbeddingModel;
use dmlbench_models::burn::module::Module;
use dmlbench_models::burn::prelude::Device;

/// Embeddings of every image of `split`, n × d row-major, in the split's order. `on_batch`
/// is called after each batch with (done, total) for progress.
pub fn embed_split(
    model: &EmbeddingModel,
    device: &Device,
    split: &Arc<SplitIndex>,
    transform: &Transform,
    batch_size: usize,
    workers: usize,
    mut on_batch: impl FnMut(usize, usize),
) -> anyhow::Result<Vec<f32>> {
    let model = model.valid();
    let plain = device.clone().without_autodiff();
    let side = transform.output_side();
    let batches = sequential_batches(split.len(), batch_size.max(1));
    let total = batches.len();
    // Evaluation is deterministic: the seed and epoch only matter for random transforms.
    let loader = Loader::new(split.clone(), transform.clone(), batches, 0, 0, workers, workers.max(1) * 2);
    let mut out = Vec::with_capacity(split.len() * model.embedding_size());
    for (done, batch) in loader.enumerate() {
        let batch = batch.context("reading evaluation images")?;
        let embeddings = model
            .embed_host(&plain, &batch.images, [batch.len(), 3, side, side])
            .context("embedding evaluation images")?;
        out.extend_from_slice(&embeddings);
        on_batch(done + 1, total);
    }
    Ok(out)
}
