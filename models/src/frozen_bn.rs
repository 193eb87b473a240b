//! Frozen batch normalisation, as torchvision's `FrozenBatchNorm2d`.
//!
//! DML recipes that fine-tune an ImageNet backbone with small batches keep every backbone BN
//! layer in eval mode: batches of 32–128 images drawn as a few images of many classes give
//! noisy, class-biased batch statistics, and updating the ImageNet running statistics with
//! them hurts retrieval. A frozen layer is an affine map per channel with fixed constants:
//!
//! `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`
//!
//! No gradient reaches `weight`, `bias`, `running_mean` or `running_var`, whatever the device
//! or the module's training state: the constants are detached inside `forward`, so even a
//! caller that re-enables gradients on the whole model (`Module::unfreeze`) cannot train them.
//! The gradient with respect to the input is `dL/dx = dL/dy * weight / sqrt(running_var + eps)`.
//!
//! Parameter names are PyTorch's (`weight`, `bias`, `running_mean`, `running_var`), so a
//! torchvision state dict loads into this layer with no renaming.
//!
//! ```
//! use burn::prelude::*;
//! use dmlbench_models::FrozenBatchNorm2d;
//!
//! let device = Device::flex();
//! let bn = FrozenBatchNorm2d::new(3, &device);
//! let x = Tensor::<4>::ones([2, 3, 4, 4], &device);
//! // Freshly created: identity up to eps.
//! let y = bn.forward(x);
//! assert_eq!(y.dims(), [2, 3, 4, 4]);
//! ```

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::prelude::*;

/// torchvision's default epsilon for BatchNorm2d and FrozenBatchNorm2d.
pub const BN_EPSILON: f64 = 1e-5;

/// A batch-norm layer with fixed statistics and affine parameters. See the module docs.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d {
    /// Per-channel scale (PyTorch's BN `weight`, burn's `gamma`).
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift (PyTorch's BN `bias`, burn's `beta`).
    pub bias: Param<Tensor<1>>,
    /// Fixed per-channel mean.
    pub running_mean: Param<Tensor<1>>,
    /// Fixed per-channel variance.
    pub running_var: Param<Tensor<1>>,
    /// Added to the variance before the square root.
    pub epsilon: f64,
}

impl FrozenBatchNorm2d {
    /// A layer with `num_features` channels that starts as the identity (weight 1, bias 0,
    /// mean 0, variance 1), like a fresh torchvision BatchNorm2d put in eval mode.
    pub fn new(num_features: usize, device: &Device) -> Self {
        // Parameters are created lazily (loading pretrained weights replaces them before they
        // are ever materialised) and never require gradients.
        let constant = |init: Initializer| init.init([num_features], device).set_require_grad(false);
        Self {
            weight: constant(Initializer::Ones),
            bias: constant(Initializer::Zeros),
            running_mean: constant(Initializer::Zeros),
            running_var: constant(Initializer::Ones),
            epsilon: BN_EPSILON,
        }
    }

    /// The per-channel `(scale, shift)` this layer applies, each of length `num_features`.
    pub fn scale_shift(&self) -> (Tensor<1>, Tensor<1>) {
        let weight = self.weight.val().detach();
        let bias = self.bias.val().detach();
        let mean = self.running_mean.val().detach();
        let var = self.running_var.val().detach();
        // Same formula and order as torchvision, so loaded weights give the same rounding.
        let scale = weight * var.add_scalar(self.epsilon).sqrt().recip();
        let shift = bias - mean * scale.clone();
        (scale, shift)
    }

    /// Applies the layer to a `[batch, channels, height, width]` tensor.
    ///
    /// # Panics
    ///
    /// If the channel count differs from the layer's.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let [_, channels, _, _] = input.dims();
        let [features] = self.weight.lazy_shape().dims();
        assert_eq!(channels, features, "FrozenBatchNorm2d over {features} channels got an input with {channels}");
        let (scale, shift) = self.scale_shift();
        input * scale.reshape([1, channels, 1, 1]) + shift.reshape([1, channels, 1, 1])
    }
}
