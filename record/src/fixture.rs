//! Hand-written records for the tests of the crates that read records (feature `fixture`):
//! one builder behind the leaderboard's unit tests and the command-line tests alike, so that a
//! field added to the record is filled in one place.
//!
//! [`record`] makes a running cell with no epochs, on a CUB-sized dataset, on a plain CPU
//! machine; tests set the epochs, metrics and status they need on the returned value.

use dmlbench_eval::Metrics;

use crate::{
    CellKey, CellRecord, CellStatus, DatasetInfo, Environment, EpochRecord, ExperimentRef, PluginRef,
    RECORD_FORMAT_VERSION, Selection, Timing, fingerprint,
};

/// The key of a cell of `recipe` on `dataset`.
pub fn cell(dataset: &str, recipe: &str, loss: &str, miner: Option<&str>, seed: u64) -> CellKey {
    CellKey {
        fold: None,
        dataset: dataset.into(),
        recipe: recipe.into(),
        loss: loss.into(),
        miner: miner.map(Into::into),
        variant: String::new(),
        seed,
    }
}

/// A running cell with no finished epoch, configured by `config` (RON text), of the
/// experiment whose file reads `experiment_text`. Plugins are version 0.1.0 with empty
/// configurations; the dataset has CUB's counts (5,864 training and 5,924 test images of 100
/// classes each); the record was started at `started_unix_s` and last written `seed + 1`
/// hours later.
pub fn record(cell: CellKey, config: String, experiment_text: &str, started_unix_s: u64) -> CellRecord {
    let plugin = |kind: &str, id: &str| PluginRef {
        kind: kind.into(),
        id: id.into(),
        version: "0.1.0".into(),
        sdk_version: "dmlbench-sdk 0.1.0".into(),
        config: String::new(),
        library: String::new(),
    };
    let mut plugins = vec![plugin("loss", &cell.loss)];
    plugins.extend(cell.miner.as_deref().map(|miner| plugin("miner", miner)));
    let seed = cell.seed;
    CellRecord {
        tuning: None,
        validation_only: false,
        folds: None,
        format_version: RECORD_FORMAT_VERSION,
        experiment: ExperimentRef {
            name: cell.recipe.clone(),
            file: format!("experiments/{}.ron", cell.recipe),
            fingerprint: fingerprint(experiment_text.as_bytes()),
        },
        config_fingerprint: fingerprint(config.as_bytes()),
        config,
        dataset: DatasetInfo {
            validation_classes: Vec::new(),
            format: cell.dataset.clone(),
            root: format!("data/{}", cell.dataset),
            fingerprint: fingerprint(cell.dataset.as_bytes()),
            train_images: 5864,
            train_classes: 100,
            test_images: 5924,
            test_classes: 100,
        },
        cell,
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
            git_revision: "f70dfa8c0ffee".into(),
            dmlbench_version: "0.1.0".into(),
            dmlbench_build: "5eed0fb01d0c0de5".into(),
            os: "linux x86_64".into(),
            host: "node-a".into(),
        },
        started_unix_s,
        updated_unix_s: started_unix_s + 3600 * (seed + 1),
        resumed: 0,
    }
}

/// Metrics with the given Recall@K values, MAP@R, R-precision and NMI (AMI = NMI − 0.05),
/// over `queries` queries of which none was skipped.
pub fn metrics(recall: &[(usize, f64)], map: f64, r_precision: f64, nmi: f64, queries: usize) -> Metrics {
    Metrics {
        recall_at_k: recall.iter().copied().collect(),
        precision_at_1: recall.iter().find(|(k, _)| *k == 1).map_or(f64::NAN, |(_, r)| *r),
        r_precision,
        map_at_r: map,
        nmi: Some(nmi),
        ami: Some(nmi - 0.05),
        queries,
        skipped_queries: 0,
    }
}

/// Epoch `index` (1-based) over CUB's 5,864 training images with loss `1 / index`, taking
/// `seconds` of which `eval_seconds` evaluating, with test metrics `test`.
pub fn epoch(index: usize, seconds: f64, eval_seconds: f64, test: Option<Metrics>) -> EpochRecord {
    EpochRecord {
        epoch: index,
        loss: 1.0 / index as f64,
        images: 5864,
        images_per_second: 5864.0 / (seconds - eval_seconds),
        timing: Timing { total_s: seconds, eval_s: eval_seconds, ..Timing::default() },
        test,
        validation: None,
        plugin_stats: Default::default(),
    }
}
