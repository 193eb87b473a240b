//! Throughput of the image pipeline on one core: decoding a CUB-like JPEG (about 500×375)
//! and the training augmentation to 224×224, with and without the resize cache.
//!
//! Run with `cargo bench -p dmlbench-datasets`; criterion reports images per second (one
//! element = one image). The images are synthetic CUB-format JPEGs of longer side 500.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dmlbench_datasets::cache::ResizeCache;
use dmlbench_datasets::synth::{self, SynthOptions};
use dmlbench_datasets::transform::{self, RecipeSizes, image_rng};
use dmlbench_datasets::{Format, LoadOptions, Split, decode, index};

fn pipeline(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let options = SynthOptions { classes: 2, per_class: 12, size: 500, seed: 0, png: false };
    synth::generate(Format::Cub, dir.path(), &options).unwrap();
    let split = Arc::new(
        index::load(Format::Cub, dir.path(), &LoadOptions::default()).unwrap().into_split(Split::Train).unwrap(),
    );
    let n = split.len();
    let recipe = transform::recipe(Format::Cub, RecipeSizes::default(), false);
    let jittered = transform::recipe(Format::Cub, RecipeSizes::default(), true).train;
    let bytes: Vec<Vec<u8>> = (0..n).map(|i| std::fs::read(split.path(i)).unwrap()).collect();
    let cache = ResizeCache::in_memory(recipe.train.resize, u64::MAX);
    for i in 0..n {
        cache.get(&split, i).unwrap();
    }
    let mut out = vec![0f32; recipe.train.output_len()];

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));

    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % n;
        i
    };
    group.bench_function("decode only", |b| {
        b.iter(|| {
            let k = next();
            black_box(decode::decode(&bytes[k], &split.path(k)).unwrap());
        })
    });
    group.bench_function("decode + train augment (no cache)", |b| {
        b.iter(|| {
            let k = next();
            let d = decode::read(&split.path(k)).unwrap();
            recipe.train.apply(&d.image, &mut image_rng(0, 0, k as u64), &mut out);
            black_box(&out);
        })
    });
    group.bench_function("decode + train augment + jitter (no cache)", |b| {
        b.iter(|| {
            let k = next();
            let d = decode::read(&split.path(k)).unwrap();
            jittered.apply(&d.image, &mut image_rng(0, 0, k as u64), &mut out);
            black_box(&out);
        })
    });
    group.bench_function("train augment from resize cache", |b| {
        b.iter(|| {
            let k = next();
            let image = cache.get(&split, k).unwrap();
            recipe.train.apply_prepared(&image, &mut image_rng(0, 0, k as u64), &mut out);
            black_box(&out);
        })
    });
    group.bench_function("decode + eval resize/centre crop (no cache)", |b| {
        b.iter(|| {
            let k = next();
            let d = decode::read(&split.path(k)).unwrap();
            recipe.eval.apply(&d.image, &mut image_rng(0, 0, k as u64), &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
