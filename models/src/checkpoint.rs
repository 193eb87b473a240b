//! Saving and restoring model weights.
//!
//! A checkpoint is a safetensors file written by burn's store. Names are PyTorch's (batch-norm
//! `weight`/`bias`, linear weights `[out, in]`) without burn's enum variant names, e.g.
//! `backbone.layer1.0.bn1.weight`, `head.projection.weight`, so a checkpoint trained with
//! trainable batch norm restores into a frozen-BN model of the same shape and vice versa, and
//! PyTorch can read it (`safetensors.torch.load_file`). Running statistics of every batch
//! norm are included. The write is atomic (a scratch file renamed into place), so an interrupted
//! save leaves the previous checkpoint intact.
//!
//! Optimizer state is not part of it: burn's `ModuleOptimizer` saves its own (`save`/`load`).
//!
//! ```
//! use burn::prelude::*;
//! use dmlbench_models::{ModelConfig, load_checkpoint, save_checkpoint};
//!
//! let device = Device::flex();
//! let config = ModelConfig::default();
//! let (model, _) = config.init(&device, 0).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("model.safetensors");
//! save_checkpoint(&model, &path).unwrap();
//! let (fresh, _) = config.init(&device, 0).unwrap();
//! let restored = load_checkpoint(fresh, &path).unwrap();
//! # let _ = restored;
//! ```

use std::path::Path;

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use crate::error::ModelError;
use crate::model::EmbeddingModel;
use crate::weights::check_applied;

/// Metadata key naming what wrote the file.
const PRODUCER_KEY: &str = "dmlbench.producer";

/// Writes `model`'s weights to `path` (a `.safetensors` file), replacing any file there.
pub fn save_checkpoint(model: &EmbeddingModel, path: &Path) -> Result<(), ModelError> {
    let mut store = SafetensorsStore::from_file(path)
        .skip_enum_variants(true)
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata(PRODUCER_KEY, concat!("dmlbench-models ", env!("CARGO_PKG_VERSION")))
        .overwrite(true);
    // The validation snapshot folds every batch norm's latest running-statistics update into its
    // stored value (burn keeps the last update per thread until then) and drops autodiff.
    model.valid().save_into(&mut store).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        message: format!("cannot write the checkpoint: {e}"),
    })
}

/// Restores weights saved by [`save_checkpoint`] into `model`, which must have been built
/// from the same architecture (backbone, widths, head). Every parameter must be in the file and
/// every tensor in the file must be used; errors name the tensors.
pub fn load_checkpoint(mut model: EmbeddingModel, path: &Path) -> Result<EmbeddingModel, ModelError> {
    if !path.is_file() {
        return Err(ModelError::File { path: path.to_path_buf(), message: "checkpoint not found".into() });
    }
    let mut store = SafetensorsStore::from_file(path)
        .skip_enum_variants(true)
        .with_from_adapter(PyTorchToBurnAdapter)
        .map_indices_contiguous(false)
        .validate(false)
        .allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        message: format!("cannot read the checkpoint: {e}"),
    })?;
    check_applied(path, &result, str::to_string)?;
    Ok(model)
}
