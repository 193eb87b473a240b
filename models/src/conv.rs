//! The backbones' 2-d convolution (one constructor and one forward for every layer) and ReLU.
//!
//! On flex (and any backend other than LibTorch) a convolution is burn's `Conv2d` as it is. On
//! LibTorch, burn's autodiff would compute the convolution's gradients with its backend-generic
//! formulation (a transposed convolution for the input, a batch-as-channels convolution for the
//! weight), which LibTorch runs well below the speed of its own convolution backward: measured in
//! PyTorch itself, that formulation alone takes a ResNet-18 training step from 28.5 to 18.9
//! images/s (`benches/pytorch/conv_grad_formulation.py`). [`forward`] routes LibTorch
//! convolutions through a backend extension (`libtorch_ops`) whose backward pass is LibTorch's own. The
//! parameters stay burn's `Conv2d` fields, so checkpoints and torchvision weights are unchanged.

use burn::module::Initializer;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

/// A bias-free square convolution with torchvision's ResNet initialisation
/// (Kaiming normal, fan-out, ReLU gain).
pub(crate) fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true })
        .init(device)
}

/// Whether a convolution or batch norm on `device` is differentiated by the backend's own
/// kernels (LibTorch, with or without autodiff) rather than by burn's backend-generic formulas.
pub fn native_gradients(device: &Device) -> bool {
    #[cfg(feature = "tch")]
    return crate::libtorch_ops::on_libtorch(device);
    #[cfg(not(feature = "tch"))]
    {
        let _ = device;
        false
    }
}

/// Applies `conv` to a `[batch, channels, height, width]` tensor, with the backend's own
/// gradient kernels where [`native_gradients`] says so and the layer has no bias and symmetric
/// padding (every backbone convolution).
pub fn forward(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if let Some(padding) = symmetric_padding(&conv.padding)
        && conv.bias.is_none()
        && native_gradients(&input.device())
    {
        let weight = conv.weight.val();
        return crate::libtorch_ops::conv2d(input, weight, conv.stride, padding, conv.dilation, conv.groups);
    }
    conv.forward(input)
}

/// The (height, width) padding of a layer padded alike on both sides, `None` otherwise.
#[cfg(feature = "tch")]
fn symmetric_padding(padding: &PaddingConfig2d) -> Option<[usize; 2]> {
    match *padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => Some([top, left]),
        _ => None,
    }
}

/// ReLU, with LibTorch's own backward where [`native_gradients`] says so (burn's generic ReLU
/// backward runs a mask and a fill that cost a small network's step 13% on LibTorch).
pub fn relu<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if native_gradients(&input.device()) {
        return crate::libtorch_ops::relu(input);
    }
    burn::tensor::activation::relu(input)
}
