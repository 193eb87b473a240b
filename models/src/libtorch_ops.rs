//! The backbone's convolution, training-mode batch norm and ReLU on LibTorch, differentiated by
//! LibTorch's own backward kernels.
//!
//! burn's autodiff differentiates these operations with backend-generic formulas (see
//! [`crate::conv`] and [`crate::norm`]), which burn's LibTorch backend has no override for. This
//! module adds them as a burn backend extension ([`LibTorchOps`]) whose autodiff implementation
//! saves what LibTorch's backward needs in the forward pass and, in the backward pass, calls the
//! kernels PyTorch's own autograd calls for these operations:
//!
//! - convolution: saves `x` and `w`; backward is `at::convolution_backward` (oneDNN on the CPU,
//!   cuDNN on CUDA), computing only the gradients burn asks for;
//! - batch norm over the batch: saves `x`, `γ` and the batch mean and inverse standard deviation
//!   the forward kernel returned; backward is `at::native_batch_norm_backward`;
//! - ReLU: saves the output; backward is `threshold_backward`.
//!
//! tch binds neither of the first two kernels, so `src/libtorch_backward.cpp` (compiled by the
//! build script against the same LibTorch) calls them for us. What is saved is held as burn's
//! handles (or tensors burn never sees): burn-tch writes into a tensor in place only when it
//! holds the sole handle, and must not overwrite what the backward pass reads.
//!
//! `models/tests/backend_parity.rs` checks all three against flex, which keeps burn's formulas.

#![allow(deprecated)] // burn 0.22 marks LibTorch deprecated; it is our checkable GPU route.

use std::ffi::{CStr, c_char};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::ops::{ActivationOps, ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch, DispatchDevice, LibTorch, backend_extension};
use burn::prelude::*;

/// The operations, as a backend extension routed to LibTorch and its autodiff wrapper.
#[backend_extension(LibTorch, Autodiff)]
pub trait LibTorchOps: burn::backend::Backend {
    /// A bias-free 2-d convolution with symmetric padding.
    fn native_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// ReLU, whose backward is LibTorch's `threshold_backward` on the saved output.
    fn native_relu(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Batch norm with the batch's own statistics: the output, the per-channel mean and the
    /// biased variance (what burn's `batch_norm_train` returns).
    fn native_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl LibTorchOps for LibTorch {
    fn native_relu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <LibTorch as ActivationOps<LibTorch>>::relu(x)
    }

    fn native_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        <LibTorch as ModuleOps<LibTorch>>::conv2d(x, weight, None, options)
    }

    fn native_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (output, mean, inv_std) = batch_norm_forward(&x.tensor, &gamma.tensor, &beta.tensor, epsilon);
        let variance = variance_of(&inv_std, epsilon);
        (TchTensor::new(output), TchTensor::new(mean), TchTensor::new(variance))
    }
}

impl<C: CheckpointStrategy> LibTorchOps for Autodiff<LibTorch, C> {
    fn native_relu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match ReluBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = LibTorch::native_relu(x.into_primitive());
                // The state is a burn handle on the output, so burn never overwrites it in place.
                prep.finish(output.clone(), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(LibTorch::native_relu(x.into_primitive())),
        }
    }

    fn native_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node()];
        match ConvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let saved = SavedConv {
                    input: x.primitive().clone(),
                    weight: weight.primitive().clone(),
                    options: options.clone(),
                };
                let output = LibTorch::native_conv2d(x.into_primitive(), weight.into_primitive(), options);
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(LibTorch::native_conv2d(x.into_primitive(), weight.into_primitive(), options))
            }
        }
    }

    fn native_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let [x, gamma, beta] = [x.into_primitive(), gamma.into_primitive(), beta.into_primitive()];
        let (output, mean, inv_std) = batch_norm_forward(&x.tensor, &gamma.tensor, &beta.tensor, epsilon);
        let variance = variance_of(&inv_std, epsilon);
        // burn gets a copy of the mean: the backward pass reads the kernel's own, and burn may
        // overwrite a tensor it holds the only handle to.
        let mean_for_burn = <FloatTensor<Self>>::new(TchTensor::new(mean.copy()));
        let variance = <FloatTensor<Self>>::new(TchTensor::new(variance));
        let output = TchTensor::new(output);
        match BatchNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let saved = SavedBatchNorm { input: x, gamma, mean, inv_std, epsilon };
                (prep.finish(saved, output), mean_for_burn, variance)
            }
            OpsKind::UnTracked(prep) => (prep.finish(output), mean_for_burn, variance),
        }
    }
}

/// Applies a bias-free convolution with symmetric `padding` through [`LibTorchOps`].
pub(crate) fn conv2d(
    input: Tensor<4>,
    weight: Tensor<4>,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Tensor<4> {
    let options = ConvOptions::new(stride, padding, dilation, groups);
    let output = <Dispatch as LibTorchOps>::native_conv2d(input.into_dispatch(), weight.into_dispatch(), options);
    Tensor::from_dispatch(output)
}

/// ReLU through [`LibTorchOps`].
pub(crate) fn relu<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as LibTorchOps>::native_relu(input.into_dispatch()))
}

/// Training-mode batch norm through [`LibTorchOps`]: the output, the batch mean and the biased
/// batch variance per channel.
pub(crate) fn batch_norm_train(
    input: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let (output, mean, variance) = <Dispatch as LibTorchOps>::native_batch_norm_train(
        input.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    (Tensor::from_dispatch(output), Tensor::from_dispatch(mean), Tensor::from_dispatch(variance))
}

/// Whether `device` is LibTorch's, with or without autodiff.
pub(crate) fn on_libtorch(device: &Device) -> bool {
    matches!(device.as_dispatch().clone().inner(), DispatchDevice::LibTorch(_))
}

/// LibTorch's batch norm over the batch: the output, the batch mean and the inverse standard
/// deviation `1/√(var + ε)` (what its backward reads); no running statistics.
fn batch_norm_forward(
    x: &tch::Tensor,
    gamma: &tch::Tensor,
    beta: &tch::Tensor,
    epsilon: f64,
) -> (tch::Tensor, tch::Tensor, tch::Tensor) {
    x.native_batch_norm(Some(gamma), Some(beta), None::<&tch::Tensor>, None::<&tch::Tensor>, true, 0.0, epsilon)
}

/// The biased variance from the inverse standard deviation `1/√(var + ε)` LibTorch's batch norm
/// returns.
fn variance_of(inv_std: &tch::Tensor, epsilon: f64) -> tch::Tensor {
    (inv_std * inv_std).reciprocal() - epsilon
}

fn to_i64(values: [usize; 2]) -> [i64; 2] {
    values.map(|value| value as i64)
}

/// What a convolution's backward pass reads: burn's handles on its input and weight.
#[derive(Debug, Clone)]
struct SavedConv {
    input: TchTensor,
    weight: TchTensor,
    options: ConvOptions<2>,
}

/// The burn autodiff step of a convolution: `at::convolution_backward`.
#[derive(Debug)]
struct ConvBackward;

impl Backward<LibTorch, 2> for ConvBackward {
    type State = SavedConv;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_through(ops, grads, |saved, output_grad, wanted| {
            conv2d_backward(&output_grad.tensor, &saved.input.tensor, &saved.weight.tensor, &saved.options, wanted)
        });
    }
}

/// dL/dx and dL/dw of a convolution (those `[want_input, want_weight]` asks for) from dL/dy.
fn conv2d_backward(
    output_grad: &tch::Tensor,
    input: &tch::Tensor,
    weight: &tch::Tensor,
    options: &ConvOptions<2>,
    [want_input, want_weight]: [bool; 2],
) -> [Option<TchTensor>; 2] {
    let (stride, padding, dilation) =
        (to_i64(options.stride), to_i64(options.padding_begin()), to_i64(options.dilation));
    let mut outputs = [std::ptr::null_mut(); 2];
    let [grad_input, grad_weight] = &mut outputs;
    // SAFETY: every tensor pointer is a live tch tensor for the duration of the call, the
    // arrays hold two values each, and the kernel's outputs become owned tensors below.
    let message = unsafe {
        ffi::dmlbench_conv2d_backward(
            output_grad.as_ptr(),
            input.as_ptr(),
            weight.as_ptr(),
            stride.as_ptr(),
            padding.as_ptr(),
            dilation.as_ptr(),
            options.groups as i64,
            want_input,
            want_weight,
            grad_input,
            grad_weight,
        )
    };
    take_outputs(message, outputs, "convolution")
}

/// What a batch norm's backward pass reads: burn's handles on its input and scale, and the batch
/// mean and inverse standard deviation as the forward kernel returned them.
#[derive(Debug)]
struct SavedBatchNorm {
    input: TchTensor,
    gamma: TchTensor,
    mean: tch::Tensor,
    inv_std: tch::Tensor,
    epsilon: f64,
}

impl Clone for SavedBatchNorm {
    fn clone(&self) -> Self {
        Self {
            input: self.input.clone(),
            gamma: self.gamma.clone(),
            mean: self.mean.shallow_clone(),
            inv_std: self.inv_std.shallow_clone(),
            epsilon: self.epsilon,
        }
    }
}

/// The burn autodiff step of batch norm over the batch: `at::native_batch_norm_backward`.
#[derive(Debug)]
struct BatchNormBackward;

impl Backward<LibTorch, 3> for BatchNormBackward {
    type State = SavedBatchNorm;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_through(ops, grads, |saved, output_grad, wanted| {
            batch_norm_backward(&output_grad.tensor, &saved, wanted)
        });
    }
}

/// dL/dx, dL/dγ and dL/dβ of batch norm over the batch (those `wanted` asks for) from dL/dy.
fn batch_norm_backward(
    output_grad: &tch::Tensor,
    saved: &SavedBatchNorm,
    [want_input, want_gamma, want_beta]: [bool; 3],
) -> [Option<TchTensor>; 3] {
    let mut outputs = [std::ptr::null_mut(); 3];
    let [grad_input, grad_gamma, grad_beta] = &mut outputs;
    // SAFETY: as for the convolution.
    let message = unsafe {
        ffi::dmlbench_batch_norm_backward(
            output_grad.as_ptr(),
            saved.input.tensor.as_ptr(),
            saved.gamma.tensor.as_ptr(),
            saved.mean.as_ptr(),
            saved.inv_std.as_ptr(),
            saved.epsilon,
            want_input,
            want_gamma,
            want_beta,
            grad_input,
            grad_gamma,
            grad_beta,
        )
    };
    take_outputs(message, outputs, "batch norm")
}

/// What every backward step here shares: takes burn's gradient of the operation's output, has
/// `kernel` compute the gradients of the inputs that need one (it is told which), and hands
/// those to burn.
fn backward_through<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    kernel: impl FnOnce(S, &TchTensor, [bool; N]) -> [Option<TchTensor>; N],
) {
    let output_grad = grads.consume::<LibTorch>(&ops.node);
    let wanted = ops.parents.each_ref().map(Option::is_some);
    let gradients = kernel(ops.state, &output_grad, wanted);
    for (node, grad) in ops.parents.into_iter().zip(gradients) {
        if let (Some(node), Some(grad)) = (node, grad) {
            grads.register::<LibTorch>(node.id, grad);
        }
    }
}

/// The gradients a backward kernel returned, owned; panics with LibTorch's message if it failed
/// (as tch does for every failing LibTorch call).
fn take_outputs<const N: usize>(
    message: *mut c_char,
    outputs: [*mut torch_sys::C_tensor; N],
    operation: &str,
) -> [Option<TchTensor>; N] {
    if !message.is_null() {
        // SAFETY: a non-null message is a C string from the shim, freed once, by the shim.
        let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
        unsafe { ffi::dmlbench_free_message(message) };
        panic!("LibTorch's {operation} backward failed: {text}");
    }
    // SAFETY: a non-null output is a heap tensor the shim handed over to us.
    outputs.map(|tensor| (!tensor.is_null()).then(|| TchTensor::new(unsafe { tch::Tensor::from_ptr(tensor) })))
}

/// The C functions of `src/libtorch_backward.cpp`.
mod ffi {
    use std::ffi::c_char;

    use torch_sys::C_tensor;

    unsafe extern "C" {
        pub fn dmlbench_free_message(message: *mut c_char);

        pub fn dmlbench_conv2d_backward(
            grad_output: *const C_tensor,
            input: *const C_tensor,
            weight: *const C_tensor,
            stride: *const i64,
            padding: *const i64,
            dilation: *const i64,
            groups: i64,
            want_input: bool,
            want_weight: bool,
            grad_input: *mut *mut C_tensor,
            grad_weight: *mut *mut C_tensor,
        ) -> *mut c_char;

        pub fn dmlbench_batch_norm_backward(
            grad_output: *const C_tensor,
            input: *const C_tensor,
            gamma: *const C_tensor,
            saved_mean: *const C_tensor,
            saved_inv_std: *const C_tensor,
            epsilon: f64,
            want_input: bool,
            want_gamma: bool,
            want_beta: bool,
            grad_input: *mut *mut C_tensor,
            grad_gamma: *mut *mut C_tensor,
            grad_beta: *mut *mut C_tensor,
        ) -> *mut c_char;
    }
}

/// ReLU's backward: the output gradient where the output is positive, LibTorch's one
/// vectorised kernel (burn's generic formula builds a mask and fills it, two passes and a
/// slow fill).
#[derive(Debug)]
struct ReluBackward;

impl Backward<LibTorch, 1> for ReluBackward {
    type State = TchTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_through(ops, grads, |output, output_grad, [wanted]| {
            [wanted.then(|| TchTensor::new(output.tensor.threshold_backward(&output_grad.tensor, 0.0)))]
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LibTorch error inside a backward kernel reaches Rust as a panic that names the
    /// operation and gives LibTorch's reason (as tch does for its own calls), never as a C++
    /// exception unwinding through Rust.
    #[test]
    fn a_failing_backward_kernel_panics_with_libtorch_reason() {
        let options = (tch::Kind::Float, tch::Device::Cpu);
        let output_grad = tch::Tensor::ones([1, 2, 3, 3], options);
        // Five input channels for a weight that takes three: LibTorch refuses.
        let input = tch::Tensor::ones([1, 5, 3, 3], options);
        let weight = tch::Tensor::ones([2, 3, 1, 1], options);
        let conv = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let panic = std::panic::catch_unwind(|| conv2d_backward(&output_grad, &input, &weight, &conv, [true, true]))
            .expect_err("mismatched channels cannot be differentiated");
        let message = panic.downcast_ref::<String>().expect("a formatted panic message");
        assert!(message.starts_with("LibTorch's convolution backward failed: "), "{message}");
        assert!(message.len() > "LibTorch's convolution backward failed: ".len() + 10, "{message}");
    }

    /// Only the gradients asked for are computed; the others come back as `None`.
    #[test]
    fn backward_kernels_compute_only_what_is_asked() {
        let options = (tch::Kind::Float, tch::Device::Cpu);
        let output_grad = tch::Tensor::ones([1, 2, 3, 3], options);
        let input = tch::Tensor::ones([1, 3, 3, 3], options);
        let weight = tch::Tensor::ones([2, 3, 1, 1], options);
        let conv = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let [grad_input, grad_weight] = conv2d_backward(&output_grad, &input, &weight, &conv, [false, true]);
        assert!(grad_input.is_none());
        // dL/dw[o, c] = Σ over the 3×3 positions of dL/dy · x = 9 for all-ones tensors.
        let grad_weight = grad_weight.expect("the weight's gradient was asked for").tensor;
        assert_eq!(grad_weight.size(), [2, 3, 1, 1]);
        assert_eq!(Vec::<f32>::try_from(grad_weight.flatten(0, -1)).unwrap(), vec![9.0; 6]);
    }
}
