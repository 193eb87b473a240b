//! Records for the unit tests of the leaderboard: small, written out by hand, shaped like the
//! records of the default experiment.

use std::path::PathBuf;

use crate::eval::Metrics;
use crate::report::record::{
    CellKey, CellRecord, CellStatus, DatasetInfo, Environment, EpochRecord, ExperimentRef, PluginRef,
    RECORD_FORMAT_VERSION, Selection, Timing, fingerprint,
};

/// Metrics with Recall@1 = `r1`, Recall@2 = `r1 + 0.1` (at most 1), MAP@R = `map`,
/// R-precision = `map + 0.05`, NMI = 0.5.
pub fn metrics(r1: f64, map: f64) -> Metrics {
    Metrics {
        recall_at_k: [(1, r1), (2, (r1 + 0.1).min(1.0))].into_iter().collect(),
        precision_at_1: r1,
        r_precision: map + 0.05,
        map_at_r: map,
        nmi: Some(0.5),
        ami: Some(0.4),
        queries: 100,
        skipped_queries: 0,
    }
}

fn base(
    dataset: &str,
    recipe: &str,
    loss: &str,
    miner: Option<&str>,
    seed: u64,
    epochs: usize,
) -> (PathBuf, CellRecord) {
    let cell = CellKey {
        dataset: dataset.into(),
        recipe: recipe.into(),
        loss: loss.into(),
        miner: miner.map(Into::into),
        variant: String::new(),
        seed,
    };
    let config = format!("(seed: {seed}, training: (epochs: {epochs}, batch_size: 32))");
    let mut plugins = vec![PluginRef {
        kind: "loss".into(),
        id: loss.into(),
        version: "0.1.0".into(),
        sdk_version: "dmlbench-sdk 0.1.0".into(),
        config: String::new(),
    }];
    if let Some(miner) = miner {
        plugins.push(PluginRef {
            kind: "miner".into(),
            id: miner.into(),
            version: "0.1.0".into(),
            sdk_version: "dmlbench-sdk 0.1.0".into(),
            config: String::new(),
        });
    }
    let path = PathBuf::from(format!("results/{recipe}/{}.ron", cell.id()));
    let record = CellRecord {
        format_version: RECORD_FORMAT_VERSION,
        experiment: ExperimentRef {
            name: recipe.into(),
            file: format!("experiments/{recipe}.ron"),
            fingerprint: fingerprint(recipe.as_bytes()),
        },
        cell,
        config_fingerprint: fingerprint(config.as_bytes()),
        config,
        dataset: DatasetInfo {
            format: dataset.into(),
            root: format!("data/{dataset}"),
            fingerprint: fingerprint(dataset.as_bytes()),
            train_images: 5864,
            train_classes: 100,
            test_images: 5924,
            test_classes: 100,
        },
        plugins,
        status: CellStatus::Running,
        initial_test: None,
        epochs: Vec::new(),
        final_metrics: None,
        selection: Selection::Last,
        peak_rss_bytes: 512 << 20,
        peak_device_bytes: None,
        environment: Environment {
            cpu: "AMD EPYC 7B13".into(),
            threads: 2,
            backend: "flex".into(),
            device: "cpu".into(),
            gpu: None,
            git_revision: "f70dfa8".into(),
            dmlbench_version: "0.1.0".into(),
            os: "linux x86_64".into(),
            host: "node1".into(),
        },
        started_unix_s: 1_700_000_000,
        updated_unix_s: 1_700_000_000 + seed,
        resumed: 0,
    };
    (path, record)
}

fn epoch(index: usize, test: Option<Metrics>) -> EpochRecord {
    EpochRecord {
        epoch: index,
        loss: 1.0 / index as f64,
        images: 5864,
        images_per_second: 20.0,
        timing: Timing { total_s: 300.0, ..Timing::default() },
        test,
        validation: None,
        plugin_stats: Default::default(),
    }
}

/// A completed cell with one evaluated epoch per value of `r1` (the last is final).
pub fn completed(
    dataset: &str,
    recipe: &str,
    loss: &str,
    miner: Option<&str>,
    seed: u64,
    r1: &[f64],
    map: f64,
) -> (PathBuf, CellRecord) {
    let (path, mut record) = base(dataset, recipe, loss, miner, seed, r1.len());
    record.epochs = r1.iter().enumerate().map(|(i, &v)| epoch(i + 1, Some(metrics(v, map)))).collect();
    record.final_metrics = Some(metrics(*r1.last().expect("at least one epoch"), map));
    record.status = CellStatus::Completed;
    (path, record)
}

/// A cell still running: `done` of `planned` epochs, each evaluated at Recall@1 = 0.3.
pub fn running(
    dataset: &str,
    recipe: &str,
    loss: &str,
    miner: Option<&str>,
    seed: u64,
    done: usize,
    planned: usize,
) -> (PathBuf, CellRecord) {
    let (path, mut record) = base(dataset, recipe, loss, miner, seed, planned);
    record.epochs = (1..=done).map(|i| epoch(i, Some(metrics(0.3, 0.1)))).collect();
    (path, record)
}

/// A cell that failed during its first epoch.
pub fn failed(
    dataset: &str,
    recipe: &str,
    loss: &str,
    miner: Option<&str>,
    seed: u64,
    reason: &str,
) -> (PathBuf, CellRecord) {
    let (path, mut record) = base(dataset, recipe, loss, miner, seed, 4);
    record.status = CellStatus::Failed { reason: reason.into() };
    (path, record)
}
