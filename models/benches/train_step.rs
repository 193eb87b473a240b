//! One training step per iteration, reported as images per second (criterion's `thrpt`).
//!
//! A step is what the training loop does: host images → forward on the autodiff device →
//! embeddings copied to the host → backward from a fixed host dL/dZ → plain SGD step, each
//! step from the same initial weights.
//! Cases (same as the PyTorch comparison script): the small CNN (trainable BN) at 64×64,
//! batch 64; ResNet-18 at 224×224, batch 32, and ResNet-50 at 224×224, batch 16, both with
//! frozen BN (the paper's recipe); every head projects to 128-d and L2-normalises.
//!
//! Every case runs on every backend built in: flex always, LibTorch's CPU with `--features tch`,
//! and LibTorch on GPU N when `DMLBENCH_BENCH_GPU=N` is set in a `tch` build. Benchmarks are
//! named `train_step/<backend>/<case>`, so a filter picks a backend or a case:
//!
//! ```sh
//! cargo bench -p dmlbench-models --bench train_step                      # flex
//! cargo bench -p dmlbench-models --features tch --bench train_step -- libtorch/
//! ```
//!
//! The PyTorch side is `benches/pytorch/train_step.py`. Sample counts are criterion's minimum
//! so the whole run takes a few minutes on two cores.

use std::time::Duration;

// The integration tests' helpers, for their seeded input values.
#[path = "../tests/common/mod.rs"]
mod common;

use burn::optim::SgdConfig;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dmlbench_models::{Backbone, Backend, EmbeddingModel, ModelConfig};

struct Case {
    name: &'static str,
    backbone: Backbone,
    frozen_bn: bool,
    batch: usize,
    size: usize,
}

fn cases() -> Vec<Case> {
    vec![
        Case { name: "small_cnn_b64_64px", backbone: Backbone::default(), frozen_bn: false, batch: 64, size: 64 },
        Case { name: "resnet18_b32_224px", backbone: Backbone::ResNet18, frozen_bn: true, batch: 32, size: 224 },
        Case { name: "resnet50_b16_224px", backbone: Backbone::ResNet50, frozen_bn: true, batch: 16, size: 224 },
    ]
}

/// The backends this build includes, as named by [`Backend::compiled`].
fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Flex];
    if Backend::compiled().contains(&"tch") {
        backends.push(Backend::LibTorch);
        if let Ok(index) = std::env::var("DMLBENCH_BENCH_GPU") {
            let index = index.parse().expect("DMLBENCH_BENCH_GPU is a GPU index");
            backends.push(Backend::LibTorchCuda(index));
        }
    }
    backends
}

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for (backend, case) in backends().into_iter().flat_map(|b| cases().into_iter().map(move |c| (b, c))) {
        let device = backend.training_device().expect("a built-in backend");
        let config = ModelConfig {
            backbone: case.backbone,
            frozen_bn: case.frozen_bn,
            embedding_dim: Some(128),
            normalize: true,
            ..ModelConfig::default()
        };
        let (model, _) = config.init(&device, 0).expect("model");
        let shape = [case.batch, 3, case.size, case.size];
        let images = common::values(shape.iter().product(), 1);
        let grad = common::values(case.batch * 128, 2);
        let mut optimizer = SgdConfig::new().init();

        group.throughput(Throughput::Elements(case.batch as u64));
        let name = format!("{}/{}", backend.label(), case.name);
        group.bench_function(name, |b| {
            // Every step starts from the initial weights (the copy is not timed). Hundreds of
            // steps along the same fixed gradient would drive the weights somewhere no training
            // goes, where gradients underflow into subnormal numbers and every backend slows
            // down by a different amount.
            b.iter_batched(
                || model.clone(),
                |current: EmbeddingModel| {
                    let pass = current.forward_host(&device, &images, shape).expect("forward");
                    // The plugin's work would happen here, on pass.embeddings().
                    std::hint::black_box(pass.embeddings());
                    let grads = pass.backward(&grad, &current).expect("backward");
                    optimizer.step(0.01, current, grads)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
