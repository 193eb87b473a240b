//! What the plugin ABI costs: the contrastive loss at n = 256, d = 512 (64 classes × 4),
//! forward and backward, called three ways in one run, each writing into a gradient buffer it
//! reuses from call to call, as the training loop does:
//! - `direct`: the plugin's `Loss::forward_backward`, linked into this binary, no checks
//!   (the buffer is zeroed first, as the SDK does before every call);
//! - `sdk_checked`: the same through the SDK's `Instance` (every input and output check);
//! - `through_abi`: the plugin's shared library loaded by the host, through `LossHandle`
//!   (C ABI, the SDK's checks inside the plugin, the host's checks outside, callbacks).
//!
//! The README quotes `through_abi / direct`.

use criterion::{Criterion, criterion_group, criterion_main};
use dmlbench_host::{CreateOptions, HostOptions, LossHandle, PluginKind, Registry};
use dmlbench_loss_contrastive::{Config, Contrastive};
use dmlbench_sdk::instance::RawBatch;
use dmlbench_sdk::matrix::MatRef;
use dmlbench_sdk::testing::{context, random_embeddings};
use dmlbench_sdk::{Batch, Instance, Loss, Plugin, Stats};

const N: usize = 256;
const D: usize = 512;

fn bench(c: &mut Criterion) {
    let z = random_embeddings(1, N, D);
    let labels: Vec<i64> = (0..N as i64).map(|i| i / 4).collect();
    let mut group = c.benchmark_group("contrastive_256x512");
    // The first seconds of a process run slower (the allocator and the kernel settle its
    // memory); a long warm-up keeps that out of whichever variant is measured first.
    group.warm_up_time(std::time::Duration::from_secs(10));

    let mut plain = Contrastive::new(Config::default(), &context(D, 0)).unwrap();
    let batch = Batch { embeddings: MatRef::new(N, D, &z), labels: &labels, tuples: None, references: None };
    let mut grad = vec![0.0f32; N * D];
    group.bench_function("direct", |b| {
        b.iter(|| {
            grad.fill(0.0);
            plain.forward_backward(&batch, &mut grad, &mut Stats::default()).unwrap()
        })
    });

    let mut checked = Instance::<Contrastive>::new(Config::default(), context(D, 0)).unwrap();
    let raw = RawBatch { n: N, d: D, embeddings: &z, labels: &labels, references: None };
    group.bench_function("sdk_checked", |b| {
        b.iter(|| checked.forward_backward_into(raw, None, &mut grad, &mut Stats::default()).unwrap())
    });

    let registry = Registry::open(&HostOptions { plugin_path: Vec::new(), ..HostOptions::default() });
    let info = registry.get(PluginKind::Loss, "contrastive").expect("the contrastive plugin loads");
    let options = CreateOptions { config: String::new(), embedding_dim: D, num_classes: 0, seed: 0, base_lr: 0.0 };
    let mut handle = LossHandle::create(info, &options).unwrap();
    group.bench_function("through_abi", |b| {
        b.iter(|| {
            let out = handle.forward_backward(&z, D, &labels, None).unwrap();
            let loss = out.loss;
            handle.recycle(out.grad);
            loss
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
