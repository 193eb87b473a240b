//! The backbone's convolution, training-mode batch norm and ReLU on LibTorch, differentiated by
//! LibTorch's own backward kernels.
//!
//! burn's autodiff differentiates both operations with backend-generic formulas (see
//! [`crate::conv`] and [`crate::norm`]), which burn's LibTorch backend has no override for. This
//! module adds them as a burn backend extension ([`LibTorchOps`]) whose autodiff implementation
//! keeps a small LibTorch autograd graph per operation instead:
//!
//! - forward: the inputs that may need gradients are aliased as LibTorch leaves that require
//!   them, and the operation runs with LibTorch's autograd recording it (its node saves what
//!   LibTorch's backward needs: for a convolution `x` and `w`, as burn's own op would). burn
//!   receives the output detached, as an ordinary tensor;
//! - backward: given burn's output gradient `g`, LibTorch's autograd differentiates the scalar
//!   `Σ y ⊙ g`, whose gradient with respect to `y` is `g`, for the leaves burn asks about: the
//!   chain rule then gives their gradients from LibTorch's convolution and batch-norm backward
//!   (oneDNN on the CPU, cuDNN on CUDA), computing only those asked for.
//!
//! The leaves share storage with burn's tensors, so each operation also holds burn's handles to
//! its inputs until the backward pass: burn-tch writes into a tensor in place only when it holds
//! the sole handle, and must not overwrite what LibTorch saved.
//!
//! ReLU needs no graph: its backward is one LibTorch kernel (`threshold_backward`) called
//! directly on the saved output.
//!
//! `models/tests/backend_parity.rs` checks all three against flex, which keeps burn's formulas.

#![allow(deprecated)] // burn 0.22 marks LibTorch deprecated; it is our checkable GPU route.

use std::fmt;

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
    fn native_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

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

    fn native_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <LibTorch as ModuleOps<LibTorch>>::conv2d(x, weight, None, options)
    }

    fn native_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (output, mean, variance) =
            batch_norm_statistics(&x.tensor, &gamma.tensor, &beta.tensor, epsilon);
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

    fn native_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node()];
        match RecordedBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let inputs = [x.into_primitive(), weight.into_primitive()];
                let leaves = leaves(&inputs);
                let output = leaves[0].conv2d(
                    &leaves[1],
                    None::<&tch::Tensor>,
                    to_i64(options.stride),
                    to_i64(options.padding_begin()),
                    to_i64(options.dilation),
                    options.groups as i64,
                );
                let (output, graph) = RecordedGraph::new(output, leaves, inputs);
                prep.finish(graph, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(LibTorch::native_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }

    fn native_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let inputs = [x.into_primitive(), gamma.into_primitive(), beta.into_primitive()];
        // The statistics are not differentiated (burn's batch norm detaches them too), and are
        // copies: LibTorch's backward keeps the mean, which burn may overwrite in place.
        let statistic = |tensor: tch::Tensor| <FloatTensor<Self>>::new(TchTensor::new(tensor.detach().copy()));
        match RecordedBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let leaves = leaves(&inputs);
                let (output, mean, variance) =
                    batch_norm_statistics(&leaves[0], &leaves[1], &leaves[2], epsilon);
                let (output, graph) = RecordedGraph::new(output, leaves, inputs);
                (prep.finish(graph, output), statistic(mean), statistic(variance))
            }
            OpsKind::UnTracked(prep) => {
                let [x, gamma, beta] = inputs;
                let (output, mean, variance) =
                    LibTorch::native_batch_norm_train(x, gamma, beta, epsilon);
                (prep.finish(output), statistic(mean.tensor), statistic(variance.tensor))
            }
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
    let output = <Dispatch as LibTorchOps>::native_conv2d(
        input.into_dispatch(),
        weight.into_dispatch(),
        options,
    );
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

/// LibTorch's batch norm over the batch: output, mean and biased variance. LibTorch returns the
/// inverse standard deviation `1/√(var + ε)`; the variance follows from it.
fn batch_norm_statistics(
    x: &tch::Tensor,
    gamma: &tch::Tensor,
    beta: &tch::Tensor,
    epsilon: f64,
) -> (tch::Tensor, tch::Tensor, tch::Tensor) {
    let (output, mean, inv_std) =
        x.native_batch_norm(Some(gamma), Some(beta), None, None, true, 0.0, epsilon);
    let variance = (&inv_std * &inv_std).reciprocal() - epsilon;
    (output, mean, variance)
}

fn to_i64(values: [usize; 2]) -> [i64; 2] {
    values.map(|value| value as i64)
}

/// LibTorch leaves aliasing `inputs`, each requiring a gradient.
fn leaves<const N: usize>(inputs: &[TchTensor; N]) -> [tch::Tensor; N] {
    inputs.each_ref().map(|input| input.tensor.detach().set_requires_grad(true))
}

/// One recorded LibTorch operation: its output (the root of the graph), its leaves, and burn's
/// handles on the storage the leaves alias (see the module documentation).
struct RecordedGraph<const N: usize> {
    output: tch::Tensor,
    leaves: [tch::Tensor; N],
    burn_handles: [TchTensor; N],
}

impl<const N: usize> RecordedGraph<N> {
    /// The graph, and the output detached for burn.
    ///
    /// The root keeps its autograd node but lets go of its values (`set_data` to an empty
    /// tensor): LibTorch's backward of both operations needs only the inputs, and holding every
    /// output until the backward pass would keep each layer's activations twice as long as
    /// PyTorch does (for a ResNet-50 at batch 128, 12 GB of peak memory instead of 6.5).
    fn new(mut output: tch::Tensor, leaves: [tch::Tensor; N], inputs: [TchTensor; N]) -> (TchTensor, Self) {
        let detached = TchTensor::new(output.detach());
        output.set_data(&tch::Tensor::empty([0], (output.kind(), output.device())));
        (detached, Self { output, leaves, burn_handles: inputs })
    }

    /// The gradients of `Σ output ⊙ output_grad` for the leaves `wanted` marks, in leaf order.
    /// The root's values only have to have the output's shape: the gradient of that sum with
    /// respect to it is `output_grad` whatever they are.
    fn gradients(mut self, output_grad: &TchTensor, wanted: [bool; N]) -> [Option<TchTensor>; N] {
        self.output.set_data(&output_grad.tensor);
        let objective = (&self.output * &output_grad.tensor).sum(None::<tch::Kind>);
        let inputs: Vec<&tch::Tensor> = self
            .leaves
            .iter()
            .zip(wanted)
            .filter_map(|(leaf, wanted)| wanted.then_some(leaf))
            .collect();
        let mut gradients = tch::Tensor::run_backward(&[objective], &inputs, false, false)
            .into_iter()
            .map(TchTensor::new);
        drop(self.burn_handles);
        wanted.map(|wanted| if wanted { gradients.next() } else { None })
    }
}

impl<const N: usize> Clone for RecordedGraph<N> {
    fn clone(&self) -> Self {
        Self {
            output: self.output.shallow_clone(),
            leaves: self.leaves.each_ref().map(tch::Tensor::shallow_clone),
            burn_handles: self.burn_handles.clone(),
        }
    }
}

impl<const N: usize> fmt::Debug for RecordedGraph<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leaves: Vec<_> = self.leaves.iter().map(tch::Tensor::size).collect();
        f.debug_struct("RecordedGraph")
            .field("leaves", &leaves)
            .field("output", &self.output.size())
            .finish()
    }
}

/// The burn autodiff step that hands the output gradient to a [`RecordedGraph`].
#[derive(Debug)]
struct RecordedBackward;

impl<const N: usize> Backward<LibTorch, N> for RecordedBackward {
    type State = RecordedGraph<N>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output_grad = grads.consume::<LibTorch>(&ops.node);
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let gradients = ops.state.gradients(&output_grad, wanted);
        for (node, grad) in ops.parents.into_iter().zip(gradients) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<LibTorch>(node.id, grad);
            }
        }
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
        let [node] = ops.parents;
        let output_grad = grads.consume::<LibTorch>(&ops.node);
        if let Some(node) = node {
            let grad = ops.state.tensor.threshold_backward(&output_grad.tensor, 0.0);
            grads.register::<LibTorch>(node.id, TchTensor::new(grad));
        }
    }
}
