//! The same seeded model and batch give the same numbers on every backend built in.
//!
//! burn's flex backend is the reference; each other backend (today LibTorch, feature `tch`)
//! must reproduce, from the same seed: the initial weights (exactly: they are drawn on the host
//! and moved), the embeddings of a training-mode forward pass, every parameter's gradient for a
//! fixed dL/dZ, the weights and batch-norm statistics after one SGD step, and the evaluation
//! embeddings after it, each to 1e-4 of the tensor's largest entry (f32, different kernels).
//! A checkpoint written on one backend restores on the other.
//!
//! With only flex built in there is nothing to compare and the tests are not compiled: run
//! them with `cargo test -p dmlbench-models --features tch --test backend_parity` (README,
//! "Fast training with LibTorch"). `DMLBENCH_PARITY_DEVICE=tch-cuda:0` compares flex with
//! LibTorch on a GPU instead of its CPU.
#![cfg(feature = "tch")]

mod common;

use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use common::{fixture, relative_errors, snapshot, values};
use dmlbench_models::{Backbone, Backend, EmbeddingModel, ModelConfig, load_checkpoint, save_checkpoint};

/// Largest |ours − reference| over the reference's largest |entry|, per tensor.
const TOLERANCE: f64 = 1e-4;

/// The backend compared with flex: LibTorch on the CPU, or the device named by
/// `DMLBENCH_PARITY_DEVICE` (`tch`, `tch-cuda:N`).
fn other_backend() -> Backend {
    match std::env::var("DMLBENCH_PARITY_DEVICE").as_deref() {
        Err(_) | Ok("tch") => Backend::LibTorch,
        Ok(text) => {
            let index = text
                .strip_prefix("tch-cuda:")
                .and_then(|i| i.parse().ok())
                .unwrap_or_else(|| panic!("DMLBENCH_PARITY_DEVICE={text}: use tch or tch-cuda:N"));
            Backend::LibTorchCuda(index)
        }
    }
}

fn assert_close(what: &str, ours: &[f32], reference: &[f32]) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
    if reference.iter().all(|&v| v == 0.0) {
        assert!(ours.iter().all(|&v| v == 0.0), "{what}: reference is zero, ours is not");
        return;
    }
    let (normwise, _) = relative_errors(ours, reference);
    assert!(normwise <= TOLERANCE, "{what}: relative difference {normwise:.2e} > {TOLERANCE:.0e}");
}

fn assert_same_tensors(what: &str, ours: &[(String, Vec<f32>)], reference: &[(String, Vec<f32>)]) {
    let names = |s: &[(String, Vec<f32>)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(ours), names(reference), "{what}: different tensors");
    for ((name, a), (_, b)) in ours.iter().zip(reference) {
        assert_close(&format!("{what}: {name}"), a, b);
    }
}

/// (path, gradient) of every parameter that has one, in visiting order.
fn gradients(model: &EmbeddingModel, grads: &GradientsParams) -> Vec<(String, Vec<f32>)> {
    common::parameters(model)
        .iter()
        .filter_map(|param| {
            let values = common::gradient(grads, param)?;
            Some((param.path.clone(), values.into_iter().map(|v| v as f32).collect()))
        })
        .collect()
}

/// What one training step produces on one backend.
struct Step {
    initial: Vec<(String, Vec<f32>)>,
    embeddings: Vec<f32>,
    gradients: Vec<(String, Vec<f32>)>,
    after: Vec<(String, Vec<f32>)>,
    eval_embeddings: Vec<f32>,
    model: EmbeddingModel,
}

fn train_step(backend: Backend, config: &ModelConfig, shape: [usize; 4]) -> Step {
    let device = backend.training_device().unwrap();
    let (model, _) = config.init(&device, 17).unwrap();
    let initial = snapshot(&model);
    let images = values(shape.iter().product(), 3);
    let pass = model.forward_host(&device, &images, shape).unwrap();
    let embeddings = pass.embeddings().to_vec();
    let grad = values(embeddings.len(), 4);
    let grads = pass.backward(&grad, &model).unwrap();
    let gradients = gradients(&model, &grads);
    let mut optimizer = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_momentum(0.9))).init();
    let model = optimizer.step(0.05, model, grads);
    // The validation copy holds the batch norms' updated running statistics.
    let after = snapshot(&model.valid());
    let eval_embeddings = model.embed_host(&device, &images, shape).unwrap();
    Step { initial, embeddings, gradients, after, eval_embeddings, model }
}

fn check_parity(config: ModelConfig, shape: [usize; 4]) -> (Step, Step) {
    let reference = train_step(Backend::Flex, &config, shape);
    let other = train_step(other_backend(), &config, shape);
    let label = other_backend().label();
    // Drawn on the host and copied: identical, not merely close.
    assert_eq!(other.initial, reference.initial, "{label}: initial weights differ from flex's");
    assert_close(&format!("{label}: embeddings"), &other.embeddings, &reference.embeddings);
    assert_same_tensors(&format!("{label}: gradient"), &other.gradients, &reference.gradients);
    assert_same_tensors(&format!("{label}: after one SGD step"), &other.after, &reference.after);
    assert_close(&format!("{label}: evaluation embeddings"), &other.eval_embeddings, &reference.eval_embeddings);
    (reference, other)
}

fn config(backbone: Backbone, frozen_bn: bool) -> ModelConfig {
    ModelConfig { backbone, frozen_bn, embedding_dim: Some(16), normalize: true, ..ModelConfig::default() }
}

#[test]
fn small_cnn_with_trainable_bn_matches_flex() {
    let (reference, _) = check_parity(config(Backbone::default(), false), [6, 3, 32, 32]);
    // Trainable BN: the step moved the running statistics, and both backends agree on them.
    assert_ne!(reference.after, reference.initial);
}

#[test]
fn small_cnn_with_frozen_bn_matches_flex() {
    check_parity(config(Backbone::SmallCnn { channels: vec![8, 16, 32] }, true), [4, 3, 32, 32]);
}

#[test]
fn resnet18_with_frozen_bn_matches_flex() {
    let (reference, _) = check_parity(config(Backbone::ResNet18, true), [2, 3, 64, 64]);
    assert!(reference.gradients.iter().all(|(name, _)| !name.contains("bn")), "frozen BN got gradients");
}

#[test]
fn resnet18_with_trainable_bn_matches_flex() {
    // Batch statistics over 8 images: layer4's 2×2 maps give each channel 32 values. With 4
    // images (16 values) the normalisation is ill-conditioned enough that the two backends'
    // rounding differences reach 1e-2 in conv1's gradient, eight batch norms upstream.
    let (reference, _) = check_parity(config(Backbone::ResNet18, false), [8, 3, 64, 64]);
    assert!(reference.gradients.iter().any(|(name, _)| name.ends_with("bn1.gamma")), "trainable BN got no gradient");
}

/// torchvision's pooled features for a pretrained (narrow) ResNet-18, on the other backend.
#[test]
fn torchvision_fixture_features_match_on_the_other_backend() {
    let reference = common::reference(&fixture("resnet18_w8_io.safetensors"));
    let config = common::pooled_features_config(
        Backbone::ResNet { depth: 18, base_width: 8 },
        fixture("resnet18_w8.safetensors"),
        true,
    );
    let device = other_backend().device().unwrap();
    let (model, _) = config.init(&device, 0).unwrap();
    let ours = model.embed_host(&device, &reference.input, reference.input_shape).unwrap();
    let (normwise, elementwise) = relative_errors(&ours, &reference.features);
    assert!(normwise <= 2e-5 && elementwise <= 1e-3, "{normwise:.2e} / {elementwise:.2e}");
}

/// A checkpoint saved on either backend restores on the other, and the model then embeds as it
/// did where it was trained.
#[test]
fn checkpoints_move_between_backends() {
    let config = config(Backbone::SmallCnn { channels: vec![8, 16] }, false);
    let shape = [4, 3, 16, 16];
    let images = values(shape.iter().product(), 8);
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [(Backend::Flex, other_backend()), (other_backend(), Backend::Flex)] {
        let trained = train_step(from, &config, shape);
        let path = dir.path().join(format!("{}.safetensors", from.label()));
        save_checkpoint(&trained.model, &path).unwrap();

        let device = to.device().unwrap();
        let (fresh, _) = config.init(&device, 99).unwrap();
        let restored = load_checkpoint(fresh, &path).unwrap();
        let what = format!("{} → {}", from.label(), to.label());
        assert_same_tensors(&what, &snapshot(&restored), &trained.after);
        let from_device = from.device().unwrap();
        let expected = trained.model.embed_host(&from_device, &images, shape).unwrap();
        let got = restored.embed_host(&device, &images, shape).unwrap();
        assert_close(&what, &got, &expected);
    }
}

/// One convolution's output and its gradients for `x` and the weight, for dL/dy = `output_grad`;
/// `reuse_input` then scales the input's tensor again after the forward pass, the pattern in
/// which burn-tch writes into a tensor in place when it holds its only handle.
fn conv_gradients(backend: Backend, kernel: usize, stride: usize, padding: usize, reuse_input: bool) -> [Vec<f32>; 3] {
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Tensor, TensorData};
    let device = backend.training_device().unwrap();
    let mut conv = Conv2dConfig::new([3, 5], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .with_bias(false)
        .init(&device);
    let w_shape = [5, 3, kernel, kernel];
    conv.weight =
        Param::from_tensor(Tensor::from_data(TensorData::new(values(w_shape.iter().product(), 7), w_shape), &device));
    let x_shape = [2, 3, 9, 9];
    let x = Tensor::<4>::from_data(TensorData::new(values(2 * 3 * 81, 5), x_shape), &device).require_grad();
    // An intermediate (not a leaf) as the convolution's input, as inside a network.
    let hidden = x.clone().mul_scalar(1.0);
    let y = dmlbench_models::conv::forward(&conv, hidden.clone());
    let mut objective =
        (y.clone() * Tensor::from_data(TensorData::new(values(y.shape().num_elements(), 6), y.dims()), &device)).sum();
    if reuse_input {
        objective = objective + hidden.mul_scalar(3.0).sum().mul_scalar(0.0);
    }
    let grads = objective.backward();
    let read = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let grad_x = x.grad(&grads).expect("the input has a gradient");
    let grad_w = GradientsParams::from_grads(grads, &conv).get::<4>(conv.weight.id).expect("the weight has a gradient");
    [read(y), read(grad_x), read(grad_w)]
}

/// The backbones' convolution on LibTorch is differentiated by LibTorch's own kernels (a backend
/// extension) and gives flex's gradients, for the stem's 7×7/2, a 3×3 and a strided 1×1.
#[test]
fn convolutions_use_libtorch_gradients_and_match_flex() {
    let other = other_backend();
    assert!(dmlbench_models::conv::native_gradients(&other.training_device().unwrap()));
    assert!(dmlbench_models::conv::native_gradients(&other.device().unwrap()));
    assert!(!dmlbench_models::conv::native_gradients(&Backend::Flex.training_device().unwrap()));
    for (kernel, stride, padding) in [(7, 2, 3), (3, 1, 1), (1, 2, 0)] {
        let reference = conv_gradients(Backend::Flex, kernel, stride, padding, false);
        let ours = conv_gradients(other, kernel, stride, padding, false);
        for (what, a, b) in [
            ("output", &ours[0], &reference[0]),
            ("dL/dx", &ours[1], &reference[1]),
            ("dL/dw", &ours[2], &reference[2]),
        ] {
            assert_close(&format!("{kernel}×{kernel}/{stride} conv {what}"), a, b);
        }
    }
}

/// LibTorch saved the convolution's input for its backward pass; burn using that tensor again
/// after the forward pass must neither change the gradients nor trip LibTorch's in-place check.
#[test]
fn a_convolution_input_used_again_keeps_its_gradients() {
    let plain = conv_gradients(other_backend(), 3, 1, 1, false);
    let reused = conv_gradients(other_backend(), 3, 1, 1, true);
    for (what, a, b) in
        [("output", &reused[0], &plain[0]), ("dL/dx", &reused[1], &plain[1]), ("dL/dw", &reused[2], &plain[2])]
    {
        assert!(a == b, "{what} changed when the input was used again");
    }
}
