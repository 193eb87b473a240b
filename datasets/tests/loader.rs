//! The threaded loader: order, determinism whatever the number of workers, agreement
//! with the transform applied directly, the resize cache, and errors.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{write, write_jpeg};
use dmlbench_datasets::cache::ResizeCache;
use dmlbench_datasets::loader::{ImageBatch, Loader, sequential_batches};
use dmlbench_datasets::transform::{ColorJitter, Resize, Transform, image_rng};
use dmlbench_datasets::{Format, LoadOptions, Split, SplitIndex, decode, index};

/// A folder dataset of 4 classes × 3 images of various sizes and aspect ratios.
fn dataset() -> (tempfile::TempDir, Arc<SplitIndex>) {
    let dir = tempfile::tempdir().unwrap();
    for (c, class) in ["a", "b", "c", "d"].iter().enumerate() {
        for k in 0..3u32 {
            write_jpeg(
                dir.path(),
                &format!("{class}/{k}.jpg"),
                40 + 7 * k,
                30 + 5 * c as u32,
                40 * c as u8,
                c == 1 && k == 0,
            );
        }
    }
    let data = index::load(Format::Folder, dir.path(), &LoadOptions::default()).unwrap();
    // The train split: classes a, b; use all 6 images.
    (dir, Arc::new(data.into_split(Split::Train).unwrap()))
}

fn collect(loader: Loader) -> Vec<ImageBatch> {
    loader.map(|b| b.unwrap()).collect()
}

fn train_transform() -> Transform {
    Transform::train(Some(Resize::Shorter(24)), 16).with_jitter(ColorJitter::CARS)
}

#[test]
fn batches_come_in_order_with_labels_and_indices() {
    let (_dir, split) = dataset();
    let batches = vec![vec![5, 0], vec![3], vec![1, 2, 4]];
    let out = collect(Loader::new(split.clone(), train_transform(), batches.clone(), 0, 1, 3, 2));
    assert_eq!(out.len(), 3);
    for (k, (batch, want)) in out.iter().zip(&batches).enumerate() {
        assert_eq!(batch.position, k);
        assert_eq!(&batch.indices, want);
        assert_eq!(batch.labels, want.iter().map(|&i| split.items[i].label).collect::<Vec<_>>());
        assert_eq!(batch.side, 16);
        assert_eq!(batch.images.len(), want.len() * 3 * 16 * 16);
        assert!(batch.images.iter().all(|v| v.is_finite()));
    }
    assert_eq!(out[0].labels, vec![1, 0]);
}

#[test]
fn output_depends_on_seed_epoch_and_index_only() {
    let (_dir, split) = dataset();
    let t = train_transform();
    let run = |batches: Vec<Vec<usize>>, epoch, workers, prefetch| {
        collect(Loader::new(split.clone(), t.clone(), batches, epoch, 9, workers, prefetch))
    };
    let one = run(sequential_batches(6, 2), 0, 1, 1);
    let many = run(sequential_batches(6, 2), 0, 4, 8);
    assert_eq!(one, many);
    // Regrouping the batches does not change any image.
    let regrouped = run(vec![vec![0, 1, 2, 3, 4, 5]], 0, 2, 1);
    assert_eq!(regrouped[0].images, one.iter().flat_map(|b| b.images.clone()).collect::<Vec<_>>());
    // Another epoch gives other crops.
    assert_ne!(run(sequential_batches(6, 2), 1, 2, 2), one);
}

#[test]
fn loader_output_equals_the_transform_applied_directly() {
    let (_dir, split) = dataset();
    let t = train_transform();
    let batch = collect(Loader::new(split.clone(), t.clone(), vec![vec![4]], 3, 21, 1, 1)).remove(0);
    let decoded = decode::read(&split.path(4)).unwrap();
    let mut want = vec![0.0; t.output_len()];
    t.apply(&decoded.image, &mut image_rng(21, 3, 4), &mut want);
    assert_eq!(batch.image(0), &want[..]);
}

#[test]
fn cache_gives_the_same_evaluation_crops_and_decodes_once() {
    let (dir, split) = dataset();
    let t = Transform::eval(Some(Resize::Shorter(24)), 16);
    let plain = collect(Loader::new(split.clone(), t.clone(), sequential_batches(6, 4), 0, 0, 2, 2));
    let cache = Arc::new(ResizeCache::in_memory(t.resize, 1 << 20));
    for epoch in 0..2 {
        let cached = collect(
            Loader::new(split.clone(), t.clone(), sequential_batches(6, 4), epoch, 0, 2, 2).with_cache(cache.clone()),
        );
        for (a, b) in plain.iter().zip(&cached) {
            // The cache keeps the resized image as bytes: at most half a grey level apart.
            let worst = a.images.iter().zip(&b.images).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(worst <= 0.5 / 255.0 / 0.224 + 1e-5, "epoch {epoch}: {worst}");
        }
    }
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits), (6, 6));
    assert!(stats.memory_bytes > 0);

    // A disk cache survives into a new cache object.
    let cache_dir = dir.path().join("cache");
    let first = Arc::new(ResizeCache::on_disk(t.resize, &cache_dir, 0).unwrap());
    let a =
        collect(Loader::new(split.clone(), t.clone(), sequential_batches(6, 6), 0, 0, 1, 1).with_cache(first.clone()));
    let second = Arc::new(ResizeCache::on_disk(t.resize, &cache_dir, 0).unwrap());
    let b =
        collect(Loader::new(split.clone(), t.clone(), sequential_batches(6, 6), 0, 0, 1, 1).with_cache(second.clone()));
    assert_eq!(a, b);
    assert_eq!((first.stats().misses, second.stats().misses, second.stats().hits), (6, 0, 6));
    // A changed source image invalidates its entry.
    write_jpeg(dir.path(), "a/0.jpg", 41, 30, 200, false);
    let third = ResizeCache::on_disk(t.resize, &cache_dir, 0).unwrap();
    third.get(&split, 0).unwrap();
    assert_eq!(third.stats().misses, 1);
}

#[test]
fn a_bad_image_fails_its_batch_only_and_names_file_and_listing() {
    let (dir, split) = dataset();
    // Image 3 is b/0.jpg; truncate it.
    let victim = dir.path().join(&split.items[3].path);
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::remove_file(dir.path().join(&split.items[5].path)).unwrap();
    let out: Vec<_> =
        Loader::new(split.clone(), train_transform(), vec![vec![0], vec![3], vec![1], vec![5]], 0, 0, 2, 2).collect();
    assert!(out[0].is_ok() && out[2].is_ok());
    let e = out[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("b/0.jpg") && e.contains("truncated JPEG"), "{e}");
    let e = out[3].as_ref().unwrap_err().to_string();
    assert!(e.contains("b/2.jpg") && e.contains("cannot read") && e.contains("listed at"), "{e}");
}

#[test]
fn out_of_range_index_is_an_error() {
    let (_dir, split) = dataset();
    let out: Vec<_> = Loader::new(split, train_transform(), vec![vec![0, 99]], 0, 0, 1, 1).collect();
    let e = out[0].as_ref().unwrap_err().to_string();
    assert!(e.contains("item 99") && e.contains("has 6 items"), "{e}");
}

#[test]
fn dropping_a_loader_early_returns_promptly() {
    let (_dir, split) = dataset();
    let many: Vec<Vec<usize>> = (0..200).map(|k| vec![k % 6]).collect();
    let started = Instant::now();
    let mut loader = Loader::new(split, train_transform(), many, 0, 0, 2, 4);
    assert!(loader.next().unwrap().is_ok());
    drop(loader);
    // Workers stop at the prefetch window: they never build the 199 other batches.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn empty_batch_list_yields_nothing() {
    let (_dir, split) = dataset();
    assert_eq!(Loader::new(split, train_transform(), Vec::new(), 0, 0, 2, 2).count(), 0);
}

#[test]
fn greyscale_images_become_three_equal_channels() {
    let dir = tempfile::tempdir().unwrap();
    write_jpeg(dir.path(), "g/0.jpg", 20, 20, 0, true);
    write_jpeg(dir.path(), "h/0.jpg", 20, 20, 0, false);
    write(dir.path(), "split.txt", "train g\ntest h\n");
    let split = Arc::new(
        index::load(Format::Folder, dir.path(), &LoadOptions::default()).unwrap().into_split(Split::Train).unwrap(),
    );
    let t = Transform { mean: [0.0; 3], std: [1.0; 3], ..Transform::eval(None, 20) };
    let batch = collect(Loader::new(split, t, vec![vec![0]], 0, 0, 1, 1)).remove(0);
    let plane = 20 * 20;
    for p in 0..plane {
        let (r, g, b) = (batch.images[p], batch.images[plane + p], batch.images[2 * plane + p]);
        assert!(r == g && g == b, "pixel {p}: {r} {g} {b}");
    }
}
