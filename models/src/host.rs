//! Host-memory entry points: what the training and evaluation loops call.
//!
//! A loss plugin sees embeddings as a host `f32` slice and returns dL/dZ in another. The
//! training step is therefore:
//!
//! 1. [`EmbeddingModel::forward_host`] on an autodiff device: images in, a [`ForwardPass`]
//!    out, holding the embeddings on the host and the graph that produced them;
//! 2. the plugin computes the loss and dL/dZ from [`ForwardPass::embeddings`];
//! 3. [`ForwardPass::backward`] backpropagates dL/dZ into parameter gradients;
//! 4. the optimiser steps.
//!
//! Step 3 backpropagates the scalar `sum(Z ⊙ G)` with `G = dL/dZ` held constant: its gradient
//! with respect to any parameter θ is `Σ G · dZ/dθ = dL/dθ` by the chain rule, so the parameter
//! gradients are exactly those of the plugin's loss.
//!
//! ```
//! use burn::optim::SgdConfig;
//! use burn::prelude::*;
//! use dmlbench_models::{Backbone, ModelConfig};
//!
//! let device = Device::flex().autodiff();
//! let config = ModelConfig {
//!     backbone: Backbone::SmallCnn { channels: vec![4, 8] },
//!     embedding_dim: Some(3),
//!     ..ModelConfig::default()
//! };
//! let (mut model, _) = config.init(&device, 0).unwrap();
//! let mut optimizer = SgdConfig::new().init();
//!
//! let images = vec![0.5f32; 2 * 3 * 8 * 8];
//! let pass = model.forward_host(&device, &images, [2, 3, 8, 8]).unwrap();
//! assert_eq!(pass.shape(), (2, 3));
//! // A plugin would fill this from pass.embeddings().
//! let grad = vec![0.1f32; 2 * 3];
//! let grads = pass.backward(&grad, &model).unwrap();
//! model = optimizer.step(0.01, model, grads);
//!
//! let embeddings = model.embed_host(&device, &images, [2, 3, 8, 8]).unwrap();
//! assert_eq!(embeddings.len(), 2 * 3);
//! ```

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::error::ModelError;
use crate::model::EmbeddingModel;

impl EmbeddingModel {
    /// Runs the model on host images `[batch, 3, h, w]` (row-major CHW per image,
    /// ImageNet-normalised) and copies the embeddings to the host, keeping the graph for
    /// [`ForwardPass::backward`]. `device` must be the autodiff device the model lives on.
    pub fn forward_host(&self, device: &Device, images: &[f32], shape: [usize; 4]) -> Result<ForwardPass, ModelError> {
        if !device.is_autodiff() {
            return Err(ModelError::Input {
                what: "forward_host",
                message: "the device has no autodiff; train on `device.autodiff()`, or use \
                          `embed_host` to evaluate"
                    .into(),
            });
        }
        if shape[0] < 2 && self.head.needs_batch_statistics() {
            return Err(ModelError::Input {
                what: "forward_host",
                message: format!(
                    "bn_head normalises with batch statistics and needs at least 2 images, got {}",
                    shape[0]
                ),
            });
        }
        let input = images_tensor(device, images, shape, "forward_host")?;
        let embeddings = self.forward(input);
        let [batch, dim] = embeddings.dims();
        let host = embeddings_to_host(embeddings.clone())?;
        Ok(ForwardPass { embeddings, host, batch, dim })
    }

    /// Embeds host images for evaluation: no graph, running statistics in every batch norm,
    /// no dropout. `device` is the device the model lives on, with or without autodiff.
    ///
    /// This takes a validation snapshot of the model on each call; to embed many batches,
    /// call `model.valid()` once and use this on the snapshot (it is then a no-op).
    pub fn embed_host(&self, device: &Device, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>, ModelError> {
        let model = self.valid();
        let input = images_tensor(&device.clone().without_autodiff(), images, shape, "embed_host")?;
        embeddings_to_host(model.forward(input))
    }
}

/// The result of [`EmbeddingModel::forward_host`]: host embeddings plus the graph to
/// backpropagate a host gradient through.
pub struct ForwardPass {
    embeddings: Tensor<2>,
    host: Vec<f32>,
    batch: usize,
    dim: usize,
}

impl std::fmt::Debug for ForwardPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardPass").field("batch", &self.batch).field("dim", &self.dim).finish_non_exhaustive()
    }
}

impl ForwardPass {
    /// The embeddings, `batch × dim` row-major.
    pub fn embeddings(&self) -> &[f32] {
        &self.host
    }

    /// `(batch, dim)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.batch, self.dim)
    }

    /// Backpropagates dL/dZ (`batch × dim` row-major, the layout of
    /// [`embeddings`](Self::embeddings)) and returns the gradients of `model`'s trainable
    /// parameters, ready for `optimizer.step(lr, model, grads)`. `model` must be the model
    /// that ran the forward pass. Frozen parameters get no gradient.
    pub fn backward(self, grad: &[f32], model: &EmbeddingModel) -> Result<GradientsParams, ModelError> {
        let expected = self.batch * self.dim;
        if grad.len() != expected {
            return Err(ModelError::Input {
                what: "ForwardPass::backward",
                message: format!(
                    "dL/dZ has {} values, expected batch × dim = {} × {} = {expected}",
                    grad.len(),
                    self.batch,
                    self.dim
                ),
            });
        }
        if let Some(index) = grad.iter().position(|g| !g.is_finite()) {
            return Err(ModelError::Input {
                what: "ForwardPass::backward",
                message: format!(
                    "dL/dZ is not finite at row {}, column {}: {}",
                    index / self.dim,
                    index % self.dim,
                    grad[index]
                ),
            });
        }
        if !self.embeddings.is_tracked() {
            return Err(ModelError::Input {
                what: "ForwardPass::backward",
                message: "the embeddings do not depend on any trainable parameter (every \
                          parameter is frozen, or the forward pass ran without autodiff)"
                    .into(),
            });
        }
        let device = self.embeddings.device();
        // `G` is created without gradient tracking, so it is a constant in the graph.
        let g = Tensor::<2>::from_data(TensorData::new(grad.to_vec(), [self.batch, self.dim]), &device);
        let surrogate = (self.embeddings * g).sum();
        let grads = surrogate.backward();
        Ok(GradientsParams::from_grads(grads, model))
    }
}

/// Host images to a device tensor, checking the shape.
pub(crate) fn images_tensor(
    device: &Device,
    images: &[f32],
    shape: [usize; 4],
    what: &'static str,
) -> Result<Tensor<4>, ModelError> {
    let [batch, channels, height, width] = shape;
    if batch == 0 || height == 0 || width == 0 {
        return Err(ModelError::Input { what, message: format!("empty batch or image: shape {shape:?}") });
    }
    if channels != 3 {
        return Err(ModelError::Input {
            what,
            message: format!("images must have 3 channels (RGB, CHW), got shape {shape:?}"),
        });
    }
    let expected = batch * channels * height * width;
    if images.len() != expected {
        return Err(ModelError::Input {
            what,
            message: format!("{} values for shape {shape:?}, which needs {expected}", images.len()),
        });
    }
    Ok(Tensor::from_data(TensorData::new(images.to_vec(), shape), device))
}

fn embeddings_to_host(embeddings: Tensor<2>) -> Result<Vec<f32>, ModelError> {
    embeddings.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|error| ModelError::Input {
        what: "embeddings",
        message: format!("cannot read the embeddings back as f32: {error:?}"),
    })
}
