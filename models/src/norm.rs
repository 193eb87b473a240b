//! The backbone's 2-d normalisation layer: frozen or trainable batch norm, one config switch.
//!
//! `frozen: true` gives [`FrozenBatchNorm2d`] (running statistics and affine parameters fixed,
//! the paper's recipe for a pretrained backbone). `frozen: false` gives burn's `BatchNorm`
//! (on LibTorch, with LibTorch's own batch-norm kernels in training),
//! which on an autodiff device normalises with batch statistics, updates its running
//! statistics (momentum 0.1, as PyTorch) and trains its affine parameters; on a plain
//! (inference) device, or after `Module::valid`, it uses the running statistics.
//!
//! Both variants read torchvision's parameter names: the frozen layer is named that way, and
//! burn's PyTorch adapter renames `weight`/`bias` to `gamma`/`beta` for `BatchNorm`.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;

use crate::frozen_bn::{BN_EPSILON, FrozenBatchNorm2d};

/// A 2-d batch-norm layer, frozen or trainable.
#[derive(Module, Debug)]
pub enum Norm2d {
    /// Fixed statistics and affine parameters; never trained.
    Frozen(FrozenBatchNorm2d),
    /// burn's BatchNorm: batch statistics and trained affine parameters in training.
    Trainable(BatchNorm),
}

impl Norm2d {
    /// A fresh layer over `num_features` channels (weight 1, bias 0, mean 0, variance 1).
    pub fn new(num_features: usize, frozen: bool, device: &Device) -> Self {
        if frozen {
            Self::Frozen(FrozenBatchNorm2d::new(num_features, device))
        } else {
            Self::Trainable(BatchNormConfig::new(num_features).with_epsilon(BN_EPSILON).with_momentum(0.1).init(device))
        }
    }

    /// Applies the layer to a `[batch, channels, height, width]` tensor.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Frozen(bn) => bn.forward(input),
            Self::Trainable(bn) => {
                #[cfg(feature = "tch")]
                if input.device().is_autodiff()
                    && bn.training.is_enabled()
                    && crate::conv::native_gradients(&input.device())
                {
                    return train_on_libtorch(bn, input);
                }
                bn.forward(input)
            }
        }
    }

    /// Whether this layer is the frozen variant.
    pub fn is_frozen(&self) -> bool {
        matches!(self, Self::Frozen(_))
    }
}

/// burn's `BatchNorm` training step (batch statistics, running statistics moved by `momentum`),
/// with the normalisation and its backward pass from LibTorch's kernels (see `libtorch_ops`):
/// burn composes batch norm from elementary operations on every backend.
#[cfg(feature = "tch")]
fn train_on_libtorch(bn: &BatchNorm, input: Tensor<4>) -> Tensor<4> {
    let device = input.device();
    let (output, mean, variance) =
        crate::libtorch_ops::batch_norm_train(input, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    let update = |running: Tensor<1>, batch: Tensor<1>| {
        running.to_device(&device).mul_scalar(1.0 - bn.momentum).add(batch.detach().mul_scalar(bn.momentum)).detach()
    };
    bn.running_mean.update(update(bn.running_mean.value_sync(), mean));
    bn.running_var.update(update(bn.running_var.value_sync(), variance));
    output
}
