//! Records for the unit tests of the leaderboard, built with the record crate's fixture
//! builder: CUB-shaped cells whose accuracy is set by the test.

use std::path::PathBuf;

use dmlbench_eval::Metrics;
use dmlbench_record::fixture;
use dmlbench_record::{CellRecord, CellStatus};

/// Metrics with Recall@1 = `r1`, Recall@2 = `r1 + 0.1` (at most 1), MAP@R = `map`,
/// R-precision = `map + 0.05`, NMI = 0.5.
pub fn metrics(r1: f64, map: f64) -> Metrics {
    fixture::metrics(&[(1, r1), (2, (r1 + 0.1).min(1.0))], map, map + 0.05, 0.5, 100)
}

fn base(
    dataset: &str,
    recipe: &str,
    loss: &str,
    miner: Option<&str>,
    seed: u64,
    epochs: usize,
) -> (PathBuf, CellRecord) {
    let cell = fixture::cell(dataset, recipe, loss, miner, seed);
    let config = format!("(seed: {seed}, training: (epochs: {epochs}, batch_size: 32))");
    let path = PathBuf::from(format!("results/{recipe}/{}.ron", cell.id()));
    (path, fixture::record(cell, config, recipe, 1_700_000_000))
}

/// A completed cell with one evaluated epoch per value of `r1` (the last is final), 300 s
/// each.
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
    record.epochs =
        r1.iter().enumerate().map(|(i, &v)| fixture::epoch(i + 1, 300.0, 0.0, Some(metrics(v, map)))).collect();
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
    record.epochs = (1..=done).map(|i| fixture::epoch(i, 300.0, 0.0, Some(metrics(0.3, 0.1)))).collect();
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

/// Two leaderboards for the diff renderers: `spce` falls from 60, 62, 67 (63.0 ± 9.0) to 40,
/// 41, 42 (41.0 ± 2.5; intervals apart) and its plugin's code changed; `cross_entropy` (50, 50,
/// 50) is the same on both sides.
pub fn moved_loss() -> (crate::table::Leaderboard, crate::table::Leaderboard) {
    let side = |spce: [f64; 3], library: &str| {
        let mut records = Vec::new();
        for seed in 0..3 {
            let mut cell = completed("cub", "default", "spce", None, seed, &[spce[seed as usize]], 0.3);
            cell.1.plugins[0].library = library.into();
            records.push(cell);
            records.push(completed("cub", "default", "cross_entropy", None, seed, &[0.5], 0.3));
        }
        crate::table::Leaderboard::from_records(records)
    };
    (side([0.60, 0.62, 0.67], "aaaa"), side([0.40, 0.41, 0.42], "bbbb"))
}
