//! Result records shaped like those of the default experiment (CUB, recipe `default`), for
//! the leaderboard tests: three seeds of three methods, one failed cell and one running cell.
//! Every number is written out here so the tests can compute the expected tables by hand.

use std::path::{Path, PathBuf};

use dmlbench_eval::Metrics;
use dmlbench_record::{CellRecord, CellStatus, EXPERIMENT_COPY, EpochRecord, fixture};

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
    fixture::metrics(&[(1, r1), (2, r1 + 0.10), (4, r1 + 0.15), (8, r1 + 0.18)], map, map + 0.1, nmi, 5924)
}

fn record(loss: &str, miner: Option<&str>, seed: u64) -> CellRecord {
    let config = format!(
        "(dataset: (format: \"cub\", root: \"data/cub\"), model: (backbone: \"resnet50\", embedding: 512), \
         training: (epochs: {EPOCHS}, batch_size: 112, lr: 0.00001), seed: {seed})"
    );
    let cell = fixture::cell("cub", "default", loss, miner, seed);
    let mut record = fixture::record(cell, config, EXPERIMENT_TEXT, 1_750_000_000);
    // The pretrained backbone before any training: the same for every method.
    record.initial_test = Some(metrics(0.30, 0.10, 0.50));
    record.peak_rss_bytes = (3000 + 100 * seed) << 20;
    record
}

/// Epoch `e` (1-based) of a cell whose last epoch reaches `last`: Recall@1 climbs by 0.05 per
/// epoch to it; every epoch takes `seconds`, 20 of them evaluating.
fn epoch(e: usize, last: &Final, seconds: f64) -> EpochRecord {
    let behind = 0.05 * (EPOCHS - e) as f64;
    fixture::epoch(e, seconds, 20.0, Some(metrics(last.r1 - behind, last.map - behind / 2.0, last.nmi)))
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
