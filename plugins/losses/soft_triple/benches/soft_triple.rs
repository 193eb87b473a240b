//! Forward + backward of SoftTriple at its defaults on the losses benchmark's batch (n = 256,
//! d = 512, 64 classes × 4 images, 100 training classes, so fc is 512×1000), called directly
//! rather than through the host.
//!
//! Run on one core: `taskset -c 0 cargo bench -p dmlbench-loss-soft-triple`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dmlbench_loss_soft_triple::{Config, SoftTriple};
use dmlbench_sdk::Instance;
use dmlbench_sdk::testing::{context, random_embeddings};

const N: usize = 256;
const D: usize = 512;
const CLASSES_IN_BATCH: usize = 64;
const TRAINING_CLASSES: usize = 100;

fn soft_triple(c: &mut Criterion) {
    let z = random_embeddings(1, N, D);
    let labels: Vec<i64> = (0..N).map(|i| (i / (N / CLASSES_IN_BATCH)) as i64).collect();
    let mut loss = Instance::<SoftTriple>::new(Config::default(), context(D, TRAINING_CLASSES)).unwrap();
    c.bench_function("soft_triple", |b| {
        b.iter(|| black_box(loss.forward_backward(black_box(&z), &labels, None).unwrap()))
    });
}

criterion_group!(benches, soft_triple);
criterion_main!(benches);
