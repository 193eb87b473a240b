//! Forward + backward of the margin-softmax core on the losses benchmark's batch (n = 256,
//! d = 512, 64 classes × 4 images, 100 training classes), with the scale and target change of
//! each loss that uses it at its defaults: `norm_softmax` (scale 1/0.05, no margin),
//! `cosface` (64, s − 0.35), `arcface` (64, φ at 28.6°) and `sub_center_arcface` (the same
//! over 3 sub-centres). The plugins add only their configuration around this call, so this
//! times the core without building the host.
//!
//! Run on one core: `taskset -c 0 cargo bench -p dmlbench-sdk --bench margin_softmax`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dmlbench_sdk::Context;
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::margin_softmax::{MarginSoftmax, arcface_target};
use dmlbench_sdk::matrix::MatRef;
use dmlbench_sdk::testing::random_embeddings;

const N: usize = 256;
const D: usize = 512;
const CLASSES_IN_BATCH: usize = 64;
const TRAINING_CLASSES: usize = 100;

/// The target change s ↦ (φ(s), φ'(s)) of a loss.
type Target<'a> = &'a dyn Fn(f64) -> (f64, f64);

fn margin_softmax(c: &mut Criterion) {
    let z = random_embeddings(1, N, D);
    let labels: Vec<i64> = (0..N).map(|i| (i / (N / CLASSES_IN_BATCH)) as i64).collect();
    let context = Context { embedding_dim: D, num_classes: TRAINING_CLASSES, seed: 0, base_lr: 0.01 };
    let margin = 28.6f64.to_radians();
    let cases: [(&str, usize, f64, Target); 4] = [
        ("norm_softmax", 1, 20.0, &|s| (s, 1.0)),
        ("cosface", 1, 64.0, &|s| (s - 0.35, 1.0)),
        ("arcface", 1, 64.0, &|s| arcface_target(margin, s)),
        ("sub_center_arcface", 3, 64.0, &|s| arcface_target(margin, s)),
    ];
    for (name, sub_centers, scale, target) in cases {
        let mut head = MarginSoftmax::new(&context, sub_centers, SgdConfig::plain()).unwrap();
        let mut grad = vec![0.0f32; N * D];
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut stats = Default::default();
                let z = MatRef::new(N, D, black_box(&z));
                black_box(head.forward_backward(z, &labels, scale, target, &mut grad, &mut stats).unwrap())
            })
        });
    }
}

criterion_group!(benches, margin_softmax);
criterion_main!(benches);
