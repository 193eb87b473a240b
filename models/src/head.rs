//! The embedding head: from a backbone feature map to an embedding.
//!
//! In order: global average pooling → dropout (optional) → linear projection to the
//! embedding size (optional) → non-affine batch norm (optional) → L2 normalisation (optional).
//!
//! Dropout sits on the pooled features, before the projection, where DML recipes put it. The
//! batch norm has no affine parameters (PyTorch's `BatchNorm1d(d, affine=False)`): it whitens
//! each embedding dimension with batch statistics in training and running statistics in
//! evaluation, a standard trick for cross-entropy-trained embeddings. Its running variance uses
//! the unbiased batch variance, as PyTorch does. L2 normalisation divides by
//! `max(‖z‖, 1e-12)`, as `torch.nn.functional.normalize`.
//!
//! Training behaviour (dropout active, batch statistics) follows burn's rule: the input is on
//! an autodiff device and the layer's `training` flag is on (`Module::valid` turns it off).

use burn::module::{Flag, Module, Param, RunningState};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::error::ModelError;

/// Epsilon of the head's batch norm, PyTorch's default.
const HEAD_BN_EPSILON: f64 = 1e-5;
/// Lower bound on the norm in L2 normalisation, as `torch.nn.functional.normalize`.
const NORM_EPSILON: f64 = 1e-12;

/// How to build an [`EmbeddingHead`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadConfig {
    /// Channels of the backbone's feature map.
    pub in_features: usize,
    /// Size of the linear projection; `None` keeps the pooled features.
    pub embedding_dim: Option<usize>,
    /// Non-affine batch norm on the embedding.
    pub bn: bool,
    /// L2-normalise the embedding.
    pub normalize: bool,
    /// Dropout probability on the pooled features, in `[0, 1)`; 0 disables it.
    pub dropout: f32,
}

impl HeadConfig {
    /// Checks the fields.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::Config {
                field: "dropout",
                message: format!("must be in [0, 1), got {}", self.dropout),
            });
        }
        if self.embedding_dim == Some(0) {
            return Err(ModelError::Config {
                field: "embedding_dim",
                message: "must be positive (or absent to keep the pooled features)".into(),
            });
        }
        Ok(())
    }

    /// Size of the embeddings the head produces.
    pub fn out_dim(&self) -> usize {
        self.embedding_dim.unwrap_or(self.in_features)
    }

    /// A fresh head on `device` (PyTorch's default `nn.Linear` initialisation:
    /// uniform in ±1/sqrt(in_features) for weight and bias).
    pub fn init(&self, device: &Device) -> Result<EmbeddingHead, ModelError> {
        self.validate()?;
        let dim = self.out_dim();
        Ok(EmbeddingHead {
            dropout: (self.dropout > 0.0).then(|| DropoutConfig::new(f64::from(self.dropout)).init()),
            projection: self.embedding_dim.map(|d| LinearConfig::new(self.in_features, d).init(device)),
            bn: self.bn.then(|| NonAffineBatchNorm1d::new(dim, device)),
            normalize: self.normalize,
            out_dim: dim,
        })
    }
}

/// The embedding head. See the module docs.
#[derive(Module, Debug)]
pub struct EmbeddingHead {
    /// Dropout on the pooled features.
    pub dropout: Option<Dropout>,
    /// Linear projection to the embedding size (PyTorch name `projection`).
    pub projection: Option<Linear>,
    /// Non-affine batch norm on the embedding.
    pub bn: Option<NonAffineBatchNorm1d>,
    /// Whether embeddings are L2-normalised.
    pub normalize: bool,
    /// Embedding size.
    pub out_dim: usize,
}

impl EmbeddingHead {
    /// Maps a `[batch, channels, h, w]` feature map to `[batch, out_dim]` embeddings.
    pub fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        let [batch, channels, height, width] = features.dims();
        let mut z: Tensor<2> =
            features.reshape([batch, channels, height * width]).mean_dim(2).reshape([batch, channels]);
        if let Some(dropout) = &self.dropout {
            z = dropout.forward(z);
        }
        if let Some(projection) = &self.projection {
            z = projection.forward(z);
        }
        if let Some(bn) = &self.bn {
            z = bn.forward(z);
        }
        if self.normalize {
            z = l2_normalize(z);
        }
        z
    }

    /// Whether the head normalises with batch statistics in training, so that it needs at least
    /// two samples per batch.
    pub fn needs_batch_statistics(&self) -> bool {
        self.bn.as_ref().is_some_and(|bn| bn.training.is_enabled())
    }
}

/// Row-wise `z / max(‖z‖₂, 1e-12)`.
pub fn l2_normalize(z: Tensor<2>) -> Tensor<2> {
    let norm = z.clone().square().sum_dim(1).sqrt().clamp_min(NORM_EPSILON);
    z / norm
}

/// PyTorch's `BatchNorm1d(d, affine=False)` over `[batch, d]` inputs.
#[derive(Module, Debug)]
pub struct NonAffineBatchNorm1d {
    /// Running mean, updated in training.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (unbiased) variance, updated in training.
    pub running_var: RunningState<Tensor<1>>,
    /// Training behaviour switch, cleared by `Module::valid` and `Module::freeze`.
    pub training: Param<Flag>,
    /// Weight of the new batch statistics in the running averages.
    pub momentum: f64,
    /// Added to the variance before the square root.
    pub epsilon: f64,
}

impl NonAffineBatchNorm1d {
    /// A layer over `features` dimensions with running mean 0 and variance 1.
    pub fn new(features: usize, device: &Device) -> Self {
        Self {
            running_mean: RunningState::new(Tensor::zeros([features], device)),
            running_var: RunningState::new(Tensor::ones([features], device)),
            training: Param::from_bool(true),
            momentum: 0.1,
            epsilon: HEAD_BN_EPSILON,
        }
    }

    /// Normalises `[batch, features]`.
    ///
    /// # Panics
    ///
    /// In training, if the batch has fewer than two rows (there is no variance to normalise
    /// by; PyTorch raises the same error). [`crate::EmbeddingModel::forward_host`] checks this
    /// and returns an error instead.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let [batch, features] = input.dims();
        let device = input.device();
        if device.is_autodiff() && self.training.is_enabled() {
            assert!(batch > 1, "head batch norm in training needs more than one embedding per batch, got {batch}");
            let mean = input.clone().mean_dim(0);
            let centered = input - mean.clone();
            let var = centered.clone().square().mean_dim(0);
            let output = centered / var.clone().add_scalar(self.epsilon).sqrt();

            let unbiased = batch as f64 / (batch - 1) as f64;
            let m = self.momentum;
            let running_mean = self.running_mean.value_sync().to_device(&device);
            let running_var = self.running_var.value_sync().to_device(&device);
            let new_mean = running_mean.mul_scalar(1.0 - m) + mean.detach().reshape([features]).mul_scalar(m);
            let new_var = running_var.mul_scalar(1.0 - m) + var.detach().reshape([features]).mul_scalar(m * unbiased);
            self.running_mean.update(new_mean.detach());
            self.running_var.update(new_var.detach());
            output
        } else {
            // `value_sync` folds in an update made by a training forward on this thread.
            let mean = self.running_mean.value_sync().to_device(&device).reshape([1, features]);
            let var = self.running_var.value_sync().to_device(&device).reshape([1, features]);
            (input - mean) / var.add_scalar(self.epsilon).sqrt()
        }
    }
}
