//! The pieces of a training step: backward from a host gradient, optimiser steps with frozen
//! batch norm, checkpoints.

mod common;

use burn::module::{Module, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use common::{fixture, pooled_features_config, snapshot, values};
use dmlbench_models::{
    Backbone, BackboneNet, EmbeddingModel, ModelConfig, ModelError, Norm2d, load_checkpoint, save_checkpoint,
};

fn small_config() -> ModelConfig {
    ModelConfig {
        backbone: Backbone::SmallCnn { channels: vec![4, 8, 8] },
        embedding_dim: Some(6),
        normalize: true,
        ..ModelConfig::default()
    }
}

fn frozen_bn_layers(model: &EmbeddingModel) -> Vec<&dmlbench_models::FrozenBatchNorm2d> {
    let BackboneNet::ResNet(net) = &model.backbone else { panic!("not a ResNet") };
    let mut norms = vec![&net.bn1];
    for block in net.layer1.iter().chain(&net.layer2).chain(&net.layer3).chain(&net.layer4) {
        match block {
            dmlbench_models::resnet::Block::Basic(b) => {
                norms.extend([&b.bn1, &b.bn2]);
                norms.extend(b.downsample.as_ref().map(|d| &d.bn));
            }
            dmlbench_models::resnet::Block::Bottleneck(b) => {
                norms.extend([&b.bn1, &b.bn2, &b.bn3]);
                norms.extend(b.downsample.as_ref().map(|d| &d.bn));
            }
        }
    }
    norms
        .into_iter()
        .map(|n| match n {
            Norm2d::Frozen(bn) => bn,
            Norm2d::Trainable(_) => panic!("expected frozen batch norm"),
        })
        .collect()
}

/// Backpropagating dL/dZ from the host gives exactly the gradients of the loss computed on the
/// device: here L = ½‖Z − T‖², whose dL/dZ = Z − T is computed on the host.
#[test]
fn host_gradient_backward_equals_direct_backward() {
    let device = Device::flex().autodiff();
    device.seed(1);
    let (model, _) = small_config().init(&device, 1).unwrap();
    let shape = [3, 3, 12, 12];
    let images = values(3 * 3 * 12 * 12, 2);
    let target = values(3 * 6, 3);

    // Direct: the loss on the device, burn's backward.
    let input = Tensor::<4>::from_data(TensorData::new(images.clone(), shape), &device);
    let t = Tensor::<2>::from_data(TensorData::new(target.clone(), [3, 6]), &device);
    let z = model.forward(input);
    let loss = (z - t).square().sum().mul_scalar(0.5);
    let direct = GradientsParams::from_grads(loss.backward(), &model);

    // Through the host: Z to the host, dL/dZ = Z − T there, backward from it.
    let pass = model.forward_host(&device, &images, shape).unwrap();
    let grad: Vec<f32> = pass.embeddings().iter().zip(&target).map(|(z, t)| z - t).collect();
    let hosted = pass.backward(&grad, &model).unwrap();

    let direct = param_grads(&model, &direct);
    let hosted = param_grads(&model, &hosted);
    let names = |grads: &[(String, Vec<f32>)]| grads.iter().map(|g| g.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&direct), names(&hosted));
    for ((name, direct), (_, hosted)) in direct.iter().zip(&hosted) {
        assert_eq!(direct.len(), hosted.len(), "{name}");
        for (a, b) in direct.iter().zip(hosted) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{name}: {a} vs {b}");
        }
    }
    // conv + BN gamma/beta per stage, projection weight + bias.
    assert_eq!(direct.len(), 3 * 3 + 2);
}

/// (path, flattened gradient) of every parameter with a gradient in `grads`.
fn param_grads(model: &EmbeddingModel, grads: &GradientsParams) -> Vec<(String, Vec<f32>)> {
    struct Visitor<'a> {
        grads: &'a GradientsParams,
        path: Vec<String>,
        out: Vec<(String, Vec<f32>)>,
    }
    impl burn::module::ModuleVisitor for Visitor<'_> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let flat = g.into_data().try_to_vec::<f32>().unwrap();
                self.out.push((self.path.join("."), flat));
            }
        }
    }
    let mut visitor = Visitor { grads, path: Vec::new(), out: Vec::new() };
    model.visit(&mut visitor);
    visitor.out
}

/// The paper's recipe: a pretrained ResNet with frozen BN. After an SGD step with momentum and
/// weight decay, every BN constant is bit-identical while the convolutions moved.
#[test]
fn frozen_bn_parameters_do_not_change_after_an_optimizer_step() {
    let device = Device::flex().autodiff();
    let mut config =
        pooled_features_config(Backbone::ResNet { depth: 18, base_width: 8 }, fixture("resnet18_w8.pth"), true);
    config.embedding_dim = Some(8);
    config.normalize = true;
    let (model, _) = config.init(&device, 0).unwrap();
    let before = snapshot(&model);
    let bn_before: Vec<_> =
        frozen_bn_layers(&model).iter().map(|bn| bn.scale_shift().0.into_data().try_to_vec::<f32>().unwrap()).collect();

    let images = values(2 * 3 * 32 * 32, 5);
    let pass = model.forward_host(&device, &images, [2, 3, 32, 32]).unwrap();
    let grad = values(pass.embeddings().len(), 6);
    let grads = pass.backward(&grad, &model).unwrap();
    // No frozen constant received a gradient.
    for bn in frozen_bn_layers(&model) {
        for id in [bn.weight.id, bn.bias.id, bn.running_mean.id, bn.running_var.id] {
            assert!(grads.get::<1>(id).is_none(), "a frozen BN parameter got a gradient");
        }
    }
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
        .with_weight_decay(Some(WeightDecayConfig::new(1e-4)))
        .init();
    let model = optimizer.step(0.1, model, grads);
    let after = snapshot(&model);

    let mut bn_tensors = 0;
    let mut moved = 0;
    for ((name, a), (name_after, b)) in before.iter().zip(&after) {
        assert_eq!(name, name_after);
        let is_bn = name.contains("bn1.") || name.contains("bn2.") || name.contains("downsample.bn.");
        if is_bn {
            assert_eq!(a, b, "{name} changed");
            bn_tensors += 1;
        } else if a != b {
            moved += 1;
        }
    }
    // 4 tensors per BN layer: stem + 2 per block × 8 blocks + 3 downsamples = 20 layers.
    assert_eq!(bn_tensors, 4 * 20);
    // Every conv (20) and the projection (weight, bias) moved.
    assert_eq!(moved, 20 + 2);
    let bn_after: Vec<_> =
        frozen_bn_layers(&model).iter().map(|bn| bn.scale_shift().0.into_data().try_to_vec::<f32>().unwrap()).collect();
    assert_eq!(bn_before, bn_after);
}

/// Trainable BN (the switch off): the affine parameters train and the running statistics move.
#[test]
fn trainable_bn_trains_and_updates_running_statistics() {
    let device = Device::flex().autodiff();
    let config =
        pooled_features_config(Backbone::ResNet { depth: 18, base_width: 8 }, fixture("resnet18_w8.pth"), false);
    let (model, _) = config.init(&device, 0).unwrap();
    let BackboneNet::ResNet(net) = &model.backbone else { unreachable!() };
    let Norm2d::Trainable(bn) = &net.bn1 else { panic!("expected trainable BN") };
    let mean_before = bn.running_mean.value_sync().into_data().try_to_vec::<f32>().unwrap();
    let gamma_id = bn.gamma.id;

    let images = values(2 * 3 * 32 * 32, 7);
    let pass = model.forward_host(&device, &images, [2, 3, 32, 32]).unwrap();
    let BackboneNet::ResNet(net) = &model.backbone else { unreachable!() };
    let Norm2d::Trainable(bn) = &net.bn1 else { unreachable!() };
    let mean_after = bn.running_mean.value_sync().into_data().try_to_vec::<f32>().unwrap();
    assert_ne!(mean_before, mean_after, "running mean did not move");
    let grad = values(pass.embeddings().len(), 8);
    let grads = pass.backward(&grad, &model).unwrap();
    assert!(grads.get::<1>(gamma_id).is_some(), "trainable BN gamma got no gradient");
}

#[test]
fn backward_checks_the_gradient_it_is_given() {
    let device = Device::flex().autodiff();
    let (model, _) = small_config().init(&device, 0).unwrap();
    let images = values(2 * 3 * 8 * 8, 9);
    let pass = model.forward_host(&device, &images, [2, 3, 8, 8]).unwrap();
    let error = pass.backward(&[0.0; 5], &model).unwrap_err();
    assert!(error.to_string().contains("expected batch × dim = 2 × 6 = 12"), "{error}");

    let pass = model.forward_host(&device, &images, [2, 3, 8, 8]).unwrap();
    let mut grad = vec![0.0; 12];
    grad[7] = f32::NAN;
    let error = pass.backward(&grad, &model).unwrap_err();
    assert!(error.to_string().contains("row 1, column 1"), "{error}");
}

#[test]
fn forward_host_checks_the_images() {
    let device = Device::flex().autodiff();
    let (model, _) = small_config().init(&device, 0).unwrap();
    let error = model.forward_host(&device, &[0.0; 10], [2, 3, 8, 8]).unwrap_err();
    assert!(matches!(error, ModelError::Input { .. }), "{error}");
    let error = model.forward_host(&device, &[0.0; 128], [2, 1, 8, 8]).unwrap_err();
    assert!(error.to_string().contains("3 channels"), "{error}");
    // Training needs the autodiff device.
    let error = model.forward_host(&Device::flex(), &[0.0; 384], [2, 3, 8, 8]).unwrap_err();
    assert!(error.to_string().contains("autodiff"), "{error}");
}

#[test]
fn head_bn_needs_two_images_in_training() {
    let device = Device::flex().autodiff();
    let config = ModelConfig { bn_head: true, ..small_config() };
    let (model, _) = config.init(&device, 0).unwrap();
    let error = model.forward_host(&device, &[0.0; 192], [1, 3, 8, 8]).unwrap_err();
    assert!(error.to_string().contains("bn_head"), "{error}");
    // Evaluation uses running statistics and takes single images.
    assert_eq!(model.embed_host(&device, &[0.0; 192], [1, 3, 8, 8]).unwrap().len(), 6);
}

/// The head's outputs: unit norm with `normalize`, and with `bn_head` in training, zero mean
/// and unit (biased) variance per dimension before normalisation.
#[test]
fn head_normalises_as_configured() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let images = values(8 * 3 * 8 * 8, 10);

    let (model, _) = small_config().init(&device, 3).unwrap();
    let pass = model.forward_host(&device, &images, [8, 3, 8, 8]).unwrap();
    for row in pass.embeddings().chunks(6) {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    // bn_head against the same computation on the host, from the embeddings without it.
    let config = ModelConfig { bn_head: true, normalize: false, ..small_config() };
    let (model, _) = config.init(&device, 3).unwrap();
    let mut without_bn = model.clone();
    without_bn.head.bn = None;
    let before = without_bn.forward_host(&device, &images, [8, 3, 8, 8]).unwrap();
    let pass = model.forward_host(&device, &images, [8, 3, 8, 8]).unwrap();
    let (z, pre) = (pass.embeddings(), before.embeddings());
    let bn = model.head.bn.as_ref().unwrap();
    let running_mean = bn.running_mean.value_sync().into_data().try_to_vec::<f32>().unwrap();
    let running_var = bn.running_var.value_sync().into_data().try_to_vec::<f32>().unwrap();
    for column in 0..6 {
        let xs: Vec<f64> = (0..8).map(|row| f64::from(pre[row * 6 + column])).collect();
        let mean = xs.iter().sum::<f64>() / 8.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 8.0;
        for row in 0..8 {
            let expected = (xs[row] - mean) / (var + 1e-5).sqrt();
            let got = f64::from(z[row * 6 + column]);
            assert!((got - expected).abs() < 1e-4 * (1.0 + expected.abs()), "{got} vs {expected}");
        }
        // PyTorch's running statistics: momentum 0.1, unbiased variance.
        let expected_mean = 0.1 * mean;
        let expected_var = 0.9 + 0.1 * var * 8.0 / 7.0;
        assert!((f64::from(running_mean[column]) - expected_mean).abs() < 1e-6);
        assert!((f64::from(running_var[column]) - expected_var).abs() < 1e-6);
    }
}

#[test]
fn dropout_is_active_in_training_only() {
    let device = Device::flex().autodiff();
    device.seed(4);
    let config = ModelConfig { dropout: 0.5, normalize: false, ..small_config() };
    let (model, _) = config.init(&device, 4).unwrap();
    let images = values(2 * 3 * 8 * 8, 11);
    let a = model.forward_host(&device, &images, [2, 3, 8, 8]).unwrap();
    let b = model.forward_host(&device, &images, [2, 3, 8, 8]).unwrap();
    assert_ne!(a.embeddings(), b.embeddings(), "dropout masks should differ between steps");
    let e1 = model.embed_host(&device, &images, [2, 3, 8, 8]).unwrap();
    let e2 = model.embed_host(&device, &images, [2, 3, 8, 8]).unwrap();
    assert_eq!(e1, e2, "evaluation must be deterministic");
}

#[test]
fn checkpoints_round_trip_and_convert_between_bn_modes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let device = Device::flex();
    let images = values(2 * 3 * 32 * 32, 12);

    // A trainable-BN ResNet whose running statistics moved during training.
    let mut config =
        pooled_features_config(Backbone::ResNet { depth: 18, base_width: 8 }, fixture("resnet18_w8.pth"), false);
    config.embedding_dim = Some(8);
    config.bn_head = true;
    let train_device = device.clone().autodiff();
    let (model, _) = config.init(&train_device, 0).unwrap();
    let pass = model.forward_host(&train_device, &images, [2, 3, 32, 32]).unwrap();
    let grads = pass.backward(&values(16, 13), &model).unwrap();
    let model = SgdConfig::new().init().step(0.05, model, grads);
    let expected = model.embed_host(&train_device, &images, [2, 3, 32, 32]).unwrap();
    save_checkpoint(&model, &path).unwrap();

    // Restored into a fresh, randomly initialised model of each BN mode.
    for frozen_bn in [false, true] {
        let fresh_config = ModelConfig { weights: None, frozen_bn, ..config.clone() };
        device.seed(99);
        let (fresh, _) = fresh_config.init(&device, 99).unwrap();
        let restored = load_checkpoint(fresh, &path).unwrap();
        let got = restored.embed_host(&device, &images, [2, 3, 32, 32]).unwrap();
        for (a, b) in got.iter().zip(&expected) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "frozen_bn={frozen_bn}: {a} vs {b}");
        }
    }

    // Into another architecture: an error naming the file and tensors.
    let other = ModelConfig { weights: None, embedding_dim: Some(4), ..config.clone() };
    let (other, _) = other.init(&device, 99).unwrap();
    let error = load_checkpoint(other, &path).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("model.safetensors") && message.contains("head.projection"), "{message}");
}
