//! What the plugin ABI costs: the contrastive loss at n = 256, d = 512 (64 classes × 4),
//! forward and backward, called three ways in one run:
//! - `direct`: the plugin's `Loss::forward_backward`, linked into this binary, no checks;
//! - `sdk_checked`: the same through the SDK's `Instance` (every input and output check);
//! - `through_abi`: the plugin's shared library loaded by the host, through `LossHandle`
//!   (C ABI, host-side checks, callbacks).
//! The README quotes `through_abi / direct`.

use criterion::{criterion_group, criterion_main, Criterion};
use dmlbench::plugin::{CreateOptions, HostOptions, LossHandle, PluginKind, Registry};
use dmlbench_loss_contrastive::{loss_and_grad, Config, Contrastive};
use dmlbench_sdk::matrix::MatRef;
use dmlbench_sdk::testing::{context, random_embeddings};
use dmlbench_sdk::Instance;

const N: usize = 256;
const D: usize = 512;

fn bench(c: &mut Criterion) {
    let z = random_embeddings(1, N, D);
    let labels: Vec<i64> = (0..N as i64).map(|i| i / 4).collect();
    let mut group = c.benchmark_group("contrastive_256x512");

    group.bench_function("direct", |b| {
        b.iter(|| loss_and_grad(&Config::default(), MatRef::new(N, D, &z), &labels).unwrap())
    });

    let mut checked = Instance::<Contrastive>::new(Config::default(), context(D, 0)).unwrap();
    group.bench_function("sdk_checked", |b| b.iter(|| checked.forward_backward(&z, &labels, None).unwrap()));

    let registry = Registry::open(&HostOptions { plugin_path: Vec::new(), ..HostOptions::default() });
    let info = registry.get(PluginKind::Loss, "contrastive").expect("the contrastive plugin loads");
    let options = CreateOptions { config: String::new(), embedding_dim: D, num_classes: 0, seed: 0, base_lr: 0.0 };
    let mut handle = LossHandle::create(info, &options).unwrap();
    group.bench_function("through_abi", |b| b.iter(|| handle.forward_backward(&z, D, &labels, None).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
