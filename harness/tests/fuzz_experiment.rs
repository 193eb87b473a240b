//! Property test of the experiment-file parser: random bytes, and the project's experiment
//! files damaged by a few mutations (see `fuzz_support` in the datasets crate's tests), go
//! through `experiment::load`, the entry point of `dmlbench run`.
//!
//! It asserts that loading returns instead of panicking (RON's parser, serde, then every
//! validation check on whatever values got through), returns within
//! `fuzz_support::TIME_LIMIT`, makes no single allocation over
//! `fuzz_support::ALLOCATION_LIMIT`, and reports at least one problem naming the file. The
//! registry is empty, so every input is an error (its losses are unknown) and every check
//! that does not need a plugin runs on it.
//!
//! A sweep then sets every number of every seed to every extreme value in turn, which random
//! mutations reach only now and then.
//!
//! Case count: a case takes a fraction of a millisecond (a temporary file written and
//! parsed), so the 1,024 random cases and the sweep together take about two seconds in the
//! test profile on two cores; the inputs are drawn anew on every run, and `PROPTEST_CASES`
//! runs more.

#[path = "../../datasets/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::path::{Path, PathBuf};

use dmlbench::experiment::{self, Overrides, PlanError};
use dmlbench_host::Registry;
use fuzz_support::{CappedAllocator, config, damaged, every_number_replaced, finishes};
use proptest::prelude::*;

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

/// Experiments that use what the project's files do not: a ResNet of a given width, AdamW and
/// RMSprop, the step schedule, best-epoch selection, pretrained weights, explicit configs.
const EXTRA_SEEDS: &[&str] = &[
    r#"(
    name: "wide",
    dataset: (format: sop, root: "data/sop", strict: false, validation_classes: 0.2,
              transforms: (resize: 256, crop: 224, jitter: true)),
    model: (backbone: ResNet(depth: 50, base_width: 64), weights: Some("weights/r50.pth"),
            frozen_bn: true, embedding_dim: None, normalize: true, bn_head: true, dropout: 0.1),
    training: (epochs: 3, batch_size: 64, sampler: Random,
               optimizer: AdamW(lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4),
               schedule: Step(every_epochs: 2, gamma: 0.5), workers: 4, prefetch: 2, device: "cpu"),
    evaluation: (every: 0, k: [1, 10, 100, 1000], distance: euclidean, cluster: false,
                 selection: Best(metric: "recall_at_1"), batch_size: 256),
    grid: [(loss: "proxy_anchor", loss_config: Some((margin: 0.1, alpha: 32.0)), variant: "m0.1")],
    seeds: [18446744073709551615],
)"#,
    r#"(name: "rms", dataset: (format: inshop, root: "x", synthetic: Some((classes: 8, per_class: 4, size: 32))),
    model: (backbone: ResNet18, embedding_dim: Some(512)),
    training: (epochs: 1, batch_size: 8, sampler: MPerClass(m: 2),
               optimizer: RmsProp(lr: 0.01, alpha: 0.99, eps: 1e-8, momentum: 0.5, weight_decay: 0.0)),
    grid: [(loss: "contrastive", miner: Some("pair_margin"), miner_config: Some((pos_margin: 0.0))),
           (loss: "cross_entropy", miner: "batch_hard")],
)"#,
];

/// The project's experiment files and [`EXTRA_SEEDS`].
fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "ron"))
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no experiment files in {}", dir.display());
    seeds.extend(EXTRA_SEEDS.iter().map(|s| s.as_bytes().to_vec()));
    seeds
}

/// Loads `bytes` as an experiment file in a fresh project root.
fn load(bytes: Vec<u8>) -> (PathBuf, Result<(), PlanError>) {
    finishes(move || {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fuzzed.ron");
        std::fs::write(&file, &bytes).unwrap();
        let result = experiment::load(&file, dir.path(), &Registry::default(), &Overrides::default());
        (file, result.map(drop))
    })
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn experiment_parser_survives_damaged_files(bytes in damaged(seeds(), 512)) {
        check(bytes)?;
    }
}

/// Loads `bytes` and checks the error: there is one, with at least one problem, naming the
/// file.
fn check(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let (file, result) = load(bytes);
    let error = match result {
        Ok(()) => return Err(TestCaseError::fail("a plan was made although no loss plugin is known")),
        Err(error) => error,
    };
    prop_assert_eq!(&error.file, &file);
    prop_assert!(!error.errors.is_empty(), "an error without problems");
    prop_assert!(error.to_string().starts_with(&file.display().to_string()), "{}", error);
    Ok(())
}

/// Every number of every seed set to every extreme value, one at a time: random mutations
/// reach a given field only now and then, and most of them break the syntax around it too.
#[test]
fn every_number_set_to_every_extreme_value() {
    for seed in seeds() {
        for bytes in every_number_replaced(&seed) {
            if let Err(e) = check(bytes.clone()) {
                panic!("{e}\ninput:\n{}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}

/// The seeds themselves parse, so that the mutations start from files that get past RON into
/// the checks: what is reported is only what this empty project lacks (plugins, data,
/// weights).
#[test]
fn every_seed_fails_only_for_what_the_project_lacks() {
    for seed in seeds() {
        let text = String::from_utf8(seed.clone()).unwrap();
        let (_, result) = load(seed);
        let error = result.unwrap_err();
        for problem in &error.errors {
            let field = problem.field.as_str();
            let missing = field.starts_with("grid[") || ["dataset.root", "model.weights"].contains(&field);
            assert!(missing, "{problem:?} in\n{text}");
        }
    }
}
