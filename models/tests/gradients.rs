//! Gradients through the models against central finite differences.
//!
//! The scalar is `S = Σ Z ⊙ R` for the embeddings Z of a tiny batch and a fixed R, i.e. the
//! surrogate a training step backpropagates when a loss plugin returns dL/dZ = R. The analytic
//! gradient comes from [`ForwardPass::backward`] (the training loop's path); the reference is
//! `(S(θ + h) − S(θ − h)) / 2h` for single parameter entries θ.
//!
//! This test binary runs the flex backend in f64, so that finite differences are accurate to
//! ~1e-9 and any real error (a wrong backward rule, a missing path) stands out; the model code
//! is the same as in f32. The f64 setting is process-wide, which is why these tests live in
//! their own binary.

use std::sync::{Mutex, Once};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::prelude::*;
use burn::tensor::FloatDType;
use dmlbench_models::{Backbone, EmbeddingModel, ModelConfig};

mod common;

use common::{gradient, parameters, values};

/// Small enough that a perturbation rarely moves a ReLU input or a max-pool choice across a
/// kink (with 1e-5, about one entry in a hundred did), large enough that f64 rounding in S
/// (~1e-15 relative) stays ~1e-8 in the quotient.
const STEP: f64 = 1e-7;

/// The device RNG is process-wide: tests that seed it run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn device() -> Device {
    static CONFIGURE: Once = Once::new();
    CONFIGURE.call_once(|| {
        let mut flex = Device::flex();
        flex.configure(FloatDType::F64).expect("flex in f64");
    });
    let device = Device::flex().autodiff();
    assert_eq!(device.settings().float_dtype, FloatDType::F64);
    device
}

/// `S = Σ Z ⊙ R` on the device, in f64.
fn surrogate(model: &EmbeddingModel, x: &Tensor<4>, r: &Tensor<2>) -> f64 {
    (model.forward(x.clone()) * r.clone()).sum().into_scalar::<f64>()
}

/// The model with entry `index` of parameter `id` moved by `delta`.
fn perturbed(model: &EmbeddingModel, id: ParamId, index: usize, delta: f64) -> EmbeddingModel {
    struct Perturb {
        id: ParamId,
        index: usize,
        delta: f64,
    }
    impl ModuleMapper for Perturb {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.id != self.id {
                return param;
            }
            let (index, delta) = (self.index, self.delta);
            param.map(|tensor| {
                let device = tensor.device();
                let shape = tensor.shape();
                let mut flat = tensor.into_data().convert::<f64>().try_to_vec::<f64>().unwrap();
                flat[index] += delta;
                Tensor::from_data(TensorData::new(flat, shape), &device)
            })
        }
    }
    model.clone().map(&mut Perturb { id, index, delta })
}

/// Checks `entries` entries of each parameter whose path is in `checked`, and that parameters in
/// `frozen` get no gradient.
fn check(model: EmbeddingModel, input_shape: [usize; 4], checked: &[&str], frozen: &[&str]) {
    let device = device();
    let n: usize = input_shape.iter().product();
    let images = values(n, 21);
    let pass = model.forward_host(&device, &images, input_shape).unwrap();
    let (batch, dim) = pass.shape();
    let r_host = values(batch * dim, 22);
    let grads = pass.backward(&r_host, &model).unwrap();

    let x = Tensor::<4>::from_data(TensorData::new(images, input_shape), &device);
    let r = Tensor::<2>::from_data(TensorData::new(r_host, [batch, dim]), &device);
    let params = parameters(&model);
    let names: Vec<&str> = params.iter().map(|p| p.path.as_str()).collect();

    for &path in checked {
        let param =
            params.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("no parameter {path} in {names:?}"));
        let (id, count) = (&param.id, param.len);
        let grad = gradient(&grads, param).unwrap_or_else(|| panic!("{path}: no gradient"));
        // First, middle and last entries.
        for index in [0, count / 2, count - 1] {
            let plus = surrogate(&perturbed(&model, *id, index, STEP), &x, &r);
            let minus = surrogate(&perturbed(&model, *id, index, -STEP), &x, &r);
            let numeric = (plus - minus) / (2.0 * STEP);
            let error = (numeric - grad[index]).abs();
            assert!(
                error <= 1e-6 * (1.0 + numeric.abs()),
                "{path}[{index}]: analytic {} vs finite difference {numeric}",
                grad[index]
            );
        }
    }
    for &path in frozen {
        let param = params.iter().find(|p| p.path == path).unwrap();
        assert!(gradient(&grads, param).is_none(), "{path} is frozen but got a gradient");
    }
}

#[test]
fn small_cnn_gradients_match_finite_differences() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(5);
    let config = ModelConfig {
        backbone: Backbone::SmallCnn { channels: vec![4, 6, 8] },
        embedding_dim: Some(5),
        normalize: true,
        bn_head: true,
        ..ModelConfig::default()
    };
    let (model, _) = config.init(&device, 5).unwrap();
    // Trainable BN in training mode: the batch statistics depend on every image, and the
    // finite differences see that dependence too.
    check(
        model,
        [3, 3, 12, 12],
        &[
            "backbone.stages.0.conv.weight",
            "backbone.stages.1.bn.gamma",
            "backbone.stages.1.bn.beta",
            "backbone.stages.2.conv.weight",
            "head.projection.weight",
            "head.projection.bias",
        ],
        &[],
    );
}

#[test]
fn frozen_bn_resnet_gradients_match_finite_differences() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(6);
    // Loaded torchvision weights (non-trivial BN constants), read from f32 and widened.
    let config = ModelConfig {
        backbone: Backbone::ResNet { depth: 18, base_width: 8 },
        weights: Some(common::fixture("resnet18_w8.safetensors")),
        frozen_bn: true,
        embedding_dim: Some(4),
        normalize: true,
        bn_head: false,
        dropout: 0.0,
    };
    let (model, _) = config.init(&device, 6).unwrap();
    check(
        model,
        [2, 3, 32, 32],
        &[
            "backbone.conv1.weight",
            "backbone.layer1.0.conv2.weight",
            "backbone.layer2.0.downsample.conv.weight",
            "backbone.layer4.1.conv2.weight",
            "head.projection.weight",
        ],
        &["backbone.bn1.weight", "backbone.layer3.0.bn2.running_var", "backbone.layer2.0.downsample.bn.bias"],
    );
}

#[test]
fn resnet50_bottleneck_gradients_match_finite_differences() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(7);
    let config = ModelConfig {
        backbone: Backbone::ResNet { depth: 50, base_width: 4 },
        weights: Some(common::fixture("resnet50_w4.pth")),
        frozen_bn: true,
        embedding_dim: None,
        normalize: true,
        bn_head: false,
        dropout: 0.0,
    };
    let (model, _) = config.init(&device, 7).unwrap();
    check(
        model,
        [2, 3, 32, 32],
        &[
            "backbone.layer1.0.conv1.weight",
            "backbone.layer3.2.conv3.weight",
            "backbone.layer4.0.downsample.conv.weight",
        ],
        &["backbone.layer4.2.bn3.weight"],
    );
}
