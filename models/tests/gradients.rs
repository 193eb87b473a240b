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

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::FloatDType;
use dmlbench_models::{Backbone, EmbeddingModel, ModelConfig};

mod common;

use common::values;

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
    (model.forward(x.clone()) * r.clone())
        .sum()
        .into_scalar::<f64>()
}

/// (path, id, number of entries) of every float parameter.
fn parameters(model: &EmbeddingModel) -> Vec<(String, ParamId, usize)> {
    struct Visitor {
        path: Vec<String>,
        out: Vec<(String, ParamId, usize)>,
    }
    impl ModuleVisitor for Visitor {
        fn enter_module(&mut self, name: &str, container: &str) {
            // Enum variant names are not part of torchvision-style paths.
            if !container.starts_with("Enum:") {
                self.path.push(name.to_string());
            }
        }
        fn exit_module(&mut self, _name: &str, container: &str) {
            if !container.starts_with("Enum:") {
                self.path.pop();
            }
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.lazy_shape().num_elements();
            self.out.push((self.path.join("."), param.id, n));
        }
    }
    let mut visitor = Visitor {
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.out
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
                let mut flat = tensor
                    .into_data()
                    .convert::<f64>()
                    .try_to_vec::<f64>()
                    .unwrap();
                flat[index] += delta;
                Tensor::from_data(TensorData::new(flat, shape), &device)
            })
        }
    }
    model.clone().map(&mut Perturb { id, index, delta })
}

fn analytic(grads: &GradientsParams, id: ParamId, rank: usize) -> Option<Vec<f64>> {
    let data = match rank {
        1 => grads.get::<1>(id).map(|g| g.into_data()),
        2 => grads.get::<2>(id).map(|g| g.into_data()),
        4 => grads.get::<4>(id).map(|g| g.into_data()),
        _ => unreachable!(),
    };
    data.map(|d| d.convert::<f64>().try_to_vec::<f64>().unwrap())
}

/// Checks `entries` entries of each parameter whose path is in `checked`, and that parameters in
/// `frozen` get no gradient.
fn check(
    model: EmbeddingModel,
    input_shape: [usize; 4],
    checked: &[(&str, usize)],
    frozen: &[&str],
) {
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
    let names: Vec<&str> = params.iter().map(|(p, _, _)| p.as_str()).collect();

    for &(path, rank) in checked {
        let (_, id, count) = params
            .iter()
            .find(|(p, _, _)| p == path)
            .unwrap_or_else(|| panic!("no parameter {path} in {names:?}"));
        let grad = analytic(&grads, *id, rank).unwrap_or_else(|| panic!("{path}: no gradient"));
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
        let (_, id, _) = params.iter().find(|(p, _, _)| p == path).unwrap();
        assert!(
            analytic(&grads, *id, 1).is_none(),
            "{path} is frozen but got a gradient"
        );
    }
}

#[test]
fn small_cnn_gradients_match_finite_differences() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(5);
    let config = ModelConfig {
        backbone: Backbone::SmallCnn {
            channels: vec![4, 6, 8],
        },
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
            ("backbone.stages.0.conv.weight", 4),
            ("backbone.stages.1.bn.gamma", 1),
            ("backbone.stages.1.bn.beta", 1),
            ("backbone.stages.2.conv.weight", 4),
            ("head.projection.weight", 2),
            ("head.projection.bias", 1),
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
        backbone: Backbone::ResNet {
            depth: 18,
            base_width: 8,
        },
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
            ("backbone.conv1.weight", 4),
            ("backbone.layer1.0.conv2.weight", 4),
            ("backbone.layer2.0.downsample.conv.weight", 4),
            ("backbone.layer4.1.conv2.weight", 4),
            ("head.projection.weight", 2),
        ],
        &[
            "backbone.bn1.weight",
            "backbone.layer3.0.bn2.running_var",
            "backbone.layer2.0.downsample.bn.bias",
        ],
    );
}

#[test]
fn resnet50_bottleneck_gradients_match_finite_differences() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(7);
    let config = ModelConfig {
        backbone: Backbone::ResNet {
            depth: 50,
            base_width: 4,
        },
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
            ("backbone.layer1.0.conv1.weight", 4),
            ("backbone.layer3.2.conv3.weight", 4),
            ("backbone.layer4.0.downsample.conv.weight", 4),
        ],
        &["backbone.layer4.2.bn3.weight"],
    );
}
