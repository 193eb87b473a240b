//! Result records shaped like those of the default experiment (CUB, recipe `default`), for
//! the leaderboard tests: three seeds of three methods, one failed cell and one running cell.
//! Every number is written out here so the tests can compute the expected tables by hand.

use std::path::{Path, PathBuf};

use dmlbench::eval::Metrics;
use dmlbench::report::record::{
    CellKey, CellRecord, CellStatus, DatasetInfo, EXPERIMENT_COPY, Environment, EpochRecord, ExperimentRef, PluginRef,
    RECORD_FORMAT_VERSION, Selection, Timing, fingerprint,
};

/// The experiment file behind the records, kept beside them as `dmlbench run` does.
pub const EXPERIMENT_TEXT: &str =
    "// the fixture's experiment\n(name: \"default\", seeds: [0, 1, 2], grid: [(loss: \"cross_entropy\")])\n";

/// Final metrics of one completed seed.
pub struct Final {
    /// Recall@1 (R@2, R@4, R@8 follow as +0.10, +0.15, +0.18).
    pub r1: f64,
    /// MAP@R (R-precision is MAP@R + 0.1).
    pub map: f64,
    /// NMI.
    pub nmi: f64,
}

/// (loss, miner, seconds per epoch, [final metrics of seeds 0, 1, 2]).
pub const COMPLETED: [(&str, Option<&str>, f64, [Final; 3]); 3] = [
    (
        "cross_entropy",
        None,
        300.0,
        [
            Final { r1: 0.60, map: 0.300, nmi: 0.70 },
            Final { r1: 0.62, map: 0.310, nmi: 0.71 },
            Final { r1: 0.67, map: 0.320, nmi: 0.72 },
        ],
    ),
    (
        "contrastive",
        Some("batch_hard"),
        250.0,
        [
            Final { r1: 0.55, map: 0.315, nmi: 0.66 },
            Final { r1: 0.56, map: 0.316, nmi: 0.67 },
            Final { r1: 0.57, map: 0.317, nmi: 0.68 },
        ],
    ),
    (
        "multi_similarity",
        Some("multi_similarity"),
        360.0,
        [
            Final { r1: 0.40, map: 0.200, nmi: 0.60 },
            Final { r1: 0.41, map: 0.210, nmi: 0.61 },
            Final { r1: 0.42, map: 0.220, nmi: 0.62 },
        ],
    ),
];

/// The failure of the failed cell (`triplet_margin+semihard`, seed 0).
pub const FAILURE: &str = "loss plugin triplet_margin: the gradient has a NaN in row 3 (batch 12 of epoch 2)\n\
caused by: embeddings of norm 0 after the backbone <relu>; lower the learning rate";

/// Epochs every cell is configured for.
pub const EPOCHS: usize = 4;

/// Metrics with the fixture's pattern of Recall@K.
pub fn metrics(r1: f64, map: f64, nmi: f64) -> Metrics {
    Metrics {
        recall_at_k: [(1, r1), (2, r1 + 0.10), (4, r1 + 0.15), (8, r1 + 0.18)].into_iter().collect(),
        precision_at_1: r1,
        r_precision: map + 0.1,
        map_at_r: map,
        nmi: Some(nmi),
        ami: Some(nmi - 0.05),
        queries: 5924,
        skipped_queries: 0,
    }
}

fn record(loss: &str, miner: Option<&str>, seed: u64) -> CellRecord {
    let cell = CellKey {
        dataset: "cub".into(),
        recipe: "default".into(),
        loss: loss.into(),
        miner: miner.map(Into::into),
        variant: String::new(),
        seed,
    };
    let config = format!(
        "(dataset: (format: \"cub\", root: \"data/cub\"), model: (backbone: \"resnet50\", embedding: 512), \
         training: (epochs: {EPOCHS}, batch_size: 112, lr: 0.00001), seed: {seed})"
    );
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
    CellRecord {
        format_version: RECORD_FORMAT_VERSION,
        experiment: ExperimentRef {
            name: "default".into(),
            file: "experiments/default.ron".into(),
            fingerprint: fingerprint(EXPERIMENT_TEXT.as_bytes()),
        },
        cell,
        config_fingerprint: fingerprint(config.as_bytes()),
        config,
        dataset: DatasetInfo {
            format: "cub".into(),
            root: "data/cub".into(),
            fingerprint: "5a1e0c3b9d2f4e71".into(),
            train_images: 5864,
            train_classes: 100,
            test_images: 5924,
            test_classes: 100,
        },
        plugins,
        status: CellStatus::Running,
        // The pretrained backbone before any training: the same for every method.
        initial_test: Some(metrics(0.30, 0.10, 0.50)),
        epochs: Vec::new(),
        final_metrics: None,
        selection: Selection::Last,
        peak_rss_bytes: (3000 + 100 * seed) << 20,
        peak_device_bytes: None,
        environment: Environment {
            cpu: "AMD EPYC 7B13".into(),
            threads: 2,
            backend: "flex".into(),
            device: "cpu".into(),
            gpu: None,
            git_revision: "f70dfa8c0ffee".into(),
            dmlbench_version: "0.1.0".into(),
            os: "linux x86_64".into(),
            host: "node-a".into(),
        },
        started_unix_s: 1_750_000_000,
        updated_unix_s: 1_750_000_000 + 3600 * (seed + 1),
        resumed: 0,
    }
}

/// Epoch `e` (1-based) of a cell whose last epoch reaches `last`: Recall@1 climbs by 0.05 per
/// epoch to it; every epoch takes `seconds`.
fn epoch(e: usize, last: &Final, seconds: f64) -> EpochRecord {
    let behind = 0.05 * (EPOCHS - e) as f64;
    EpochRecord {
        epoch: e,
        loss: 1.0 / e as f64,
        images: 5864,
        images_per_second: 5864.0 / (seconds - 20.0),
        timing: Timing { total_s: seconds, eval_s: 20.0, ..Timing::default() },
        test: Some(metrics(last.r1 - behind, last.map - behind / 2.0, last.nmi)),
        validation: None,
        plugin_stats: Default::default(),
    }
}

/// Every record of the fixture, with the path it is saved at under a results directory.
pub fn records() -> Vec<(PathBuf, CellRecord)> {
    let mut out = Vec::new();
    for (loss, miner, seconds, finals) in &COMPLETED {
        for (seed, last) in finals.iter().enumerate() {
            let mut r = record(loss, *miner, seed as u64);
            r.epochs = (1..=EPOCHS).map(|e| epoch(e, last, *seconds)).collect();
            r.final_metrics = Some(metrics(last.r1, last.map, last.nmi));
            r.status = CellStatus::Completed;
            out.push(r);
        }
    }
    let mut failed = record("triplet_margin", Some("semihard"), 0);
    failed.epochs = vec![epoch(1, &Final { r1: 0.45, map: 0.2, nmi: 0.6 }, 330.0)];
    failed.status = CellStatus::Failed { reason: FAILURE.into() };
    out.push(failed);
    let mut running = record("snca", None, 0);
    running.epochs = (1..=2).map(|e| epoch(e, &Final { r1: 0.66, map: 0.3, nmi: 0.7 }, 310.0)).collect();
    out.push(running);
    out.into_iter().map(|r| (PathBuf::from("default").join(format!("{}.ron", r.cell.id())), r)).collect()
}

/// Saves every record under `dir` (as `dir/default/<cell-id>.ron`), with the experiment
/// file's copy, and returns the paths of the records.
pub fn write_records(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir.join("default")).expect("the fixture directory is created");
    std::fs::write(dir.join("default").join(EXPERIMENT_COPY), EXPERIMENT_TEXT).expect("the experiment copy is written");
    records()
        .into_iter()
        .map(|(relative, record)| {
            let path = dir.join(relative);
            record.save(&path).expect("the fixture record is written");
            path
        })
        .collect()
}
