//! Evaluation speed at the sizes of the real test sets, on synthetic embeddings (class
//! centres plus noise, L2-normalised, 512-d).
//!
//! * `knn/cub_5924x512_k1000`, `knn/sop_60502x512_k1000`: exact self-retrieval search for
//!   the 1,000 nearest neighbours (cosine), the largest K published for SOP.
//! * `evaluate/sop_60502x512_retrieval`: `evaluate` without clustering, K = 1, 10, 100, 1000.
//! * `kmeans/cub_5924x512_100c_20it`, `kmeans/sop_60502x512_11316c_20it`: k-means++ and 20
//!   Lloyd iterations.
//!
//! Criterion takes at least 10 samples, so the SOP benchmarks cost about 11 runs each (a
//! quarter of an hour for the k-means on 2 cores). Run a subset with a filter, e.g.
//! `cargo bench --bench eval -- cub` or `-- knn/sop`. Threads: rayon's default (all cores),
//! or `RAYON_NUM_THREADS`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dmlbench_eval::kmeans::{KMeansOptions, kmeans};
use dmlbench_eval::knn::knn;
use dmlbench_eval::{Distance, EvalInput, EvalOptions, evaluate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 512;

/// `n` embeddings of `classes` classes (round robin, so sizes differ by at most one).
fn embeddings(n: usize, classes: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..classes * DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let labels: Vec<i64> = (0..n).map(|i| (i % classes) as i64).collect();
    let mut data = Vec::with_capacity(n * DIM);
    for &label in &labels {
        let centre = &centres[label as usize * DIM..(label as usize + 1) * DIM];
        let row: Vec<f32> = centre.iter().map(|c| c + rng.random_range(-1.0f32..1.0)).collect();
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        data.extend(row.iter().map(|v| v / norm));
    }
    (data, labels)
}

fn bench_cub(c: &mut Criterion) {
    let (data, labels) = embeddings(5924, 100, 1);
    let mut group = c.benchmark_group("knn");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    group.bench_function("cub_5924x512_k1000", |b| b.iter(|| knn(&data, None, DIM, 1000, Distance::Cosine).unwrap()));
    group.finish();

    let mut group = c.benchmark_group("kmeans");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    let options = KMeansOptions { max_iterations: 20, seed: 0, progress: false };
    group.bench_function("cub_5924x512_100c_20it", |b| b.iter(|| kmeans(&data, DIM, 100, &options)));
    group.finish();

    let mut group = c.benchmark_group("evaluate");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    let input = EvalInput::self_retrieval(&data, &labels, DIM);
    let options = EvalOptions::default();
    group.bench_function("cub_5924x512_with_clustering", |b| b.iter(|| evaluate(&input, &options).unwrap()));
    group.finish();
}

fn bench_sop(c: &mut Criterion) {
    let (data, labels) = embeddings(60502, 11316, 2);
    // One run takes tens of seconds: the minimum of 10 single-run samples, no long warm-up.
    let mut group = c.benchmark_group("knn");
    group.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(1));
    group.bench_function("sop_60502x512_k1000", |b| b.iter(|| knn(&data, None, DIM, 1000, Distance::Cosine).unwrap()));
    group.finish();

    let mut group = c.benchmark_group("evaluate");
    group.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(1));
    let input = EvalInput::self_retrieval(&data, &labels, DIM);
    let options = EvalOptions { k: vec![1, 10, 100, 1000], cluster: false, ..EvalOptions::default() };
    group.bench_function("sop_60502x512_retrieval", |b| b.iter(|| evaluate(&input, &options).unwrap()));
    group.finish();

    let mut group = c.benchmark_group("kmeans");
    group.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(1));
    let options = KMeansOptions { max_iterations: 20, seed: 0, progress: false };
    group.bench_function("sop_60502x512_11316c_20it", |b| b.iter(|| kmeans(&data, DIM, 11316, &options)));
    group.finish();
}

criterion_group!(benches, bench_cub, bench_sop);
criterion_main!(benches);
