//! Forward + backward of every loss plugin on one batch of n = 256 embeddings of d = 512
//! (64 classes × 4 images, the usual P×K sampler), with default configurations and no miner,
//! through the host exactly as training calls them (the plugin's shared library, the C ABI,
//! the checks on both sides). Every loss plugin found is measured, so a new plugin appears
//! here without editing this file.
//!
//! Run on one core, e.g. `taskset -c 0 cargo bench -p dmlbench --bench losses`. Losses with
//! a classifier get 100 training classes (CUB's split) and one call and step before timing,
//! so their weights are not zero; `cross_entropy/sop` shows the cost at Stanford Online
//! Products' 11,318 classes, where the classifier's C×d products dominate, and
//! `cross_entropy/step` the optimiser step that follows each call.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dmlbench_host::{CreateOptions, HostOptions, LossHandle, PluginKind, Registry};
use dmlbench_sdk::testing::random_embeddings;

const N: usize = 256;
const D: usize = 512;
const CLASSES_IN_BATCH: usize = 64;

fn batch() -> (Vec<f32>, Vec<i64>) {
    let labels = (0..N).map(|i| (i / (N / CLASSES_IN_BATCH)) as i64).collect();
    (random_embeddings(1, N, D), labels)
}

fn registry() -> Registry {
    Registry::open(&HostOptions { plugin_path: Vec::new(), ..HostOptions::default() })
}

/// A loss ready to time: created, then one call and one step, as on every training step but
/// the first.
fn warmed_up(registry: &Registry, id: &str, num_classes: usize) -> LossHandle {
    let info = registry.get(PluginKind::Loss, id).unwrap_or_else(|e| panic!("{e}"));
    let options = CreateOptions { config: String::new(), embedding_dim: D, num_classes, seed: 0, base_lr: 0.01 };
    let mut loss = LossHandle::create(info, &options).unwrap();
    let (z, labels) = batch();
    loss.forward_backward(&z, D, &labels, None).unwrap();
    loss.step(1.0).unwrap();
    loss
}

fn losses(c: &mut Criterion) {
    let registry = registry();
    let (z, labels) = batch();
    for info in registry.plugins().iter().filter(|p| p.kind == PluginKind::Loss && !p.capabilities.needs_tuples) {
        let classes = if info.capabilities.owns_parameters { 100 } else { 0 };
        let mut loss = warmed_up(&registry, &info.id, classes);
        c.bench_function(&info.id, |b| {
            b.iter(|| black_box(loss.forward_backward(black_box(&z), D, &labels, None).unwrap()))
        });
    }
    if registry.get(PluginKind::Loss, "cross_entropy").is_ok() {
        let mut loss = warmed_up(&registry, "cross_entropy", 100);
        c.bench_function("cross_entropy/step", |b| {
            b.iter(|| {
                loss.forward_backward(&z, D, &labels, None).unwrap();
                loss.step(1.0).unwrap();
            })
        });
    }
}

fn large_classifier(c: &mut Criterion) {
    let registry = registry();
    if registry.get(PluginKind::Loss, "cross_entropy").is_ok() {
        let (z, labels) = batch();
        let mut loss = warmed_up(&registry, "cross_entropy", 11_318);
        c.bench_function("cross_entropy/sop", |b| {
            b.iter(|| black_box(loss.forward_backward(&z, D, &labels, None).unwrap()))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = losses
}
criterion_group! {
    name = slow;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = large_classifier
}
criterion_main!(benches, slow);
