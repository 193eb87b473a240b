//! Tiny experiments on synthetic data for the tests that train, and what to compare of their
//! records.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dmlbench_eval::Metrics;
use dmlbench_record::{CellRecord, CellStatus};

use super::{dmlbench, run};

/// A tiny experiment: 8 synthetic classes of 8 images at 32 px, a 2-stage CNN, seed 0.
pub fn experiment(dir: &Path, name: &str, epochs: usize, grid: &str) -> PathBuf {
    experiment_sized(
        dir,
        name,
        Size { classes: 8, per_class: 8, channels: "[8, 16]", lr: 0.05, epochs, seeds: "[0]" },
        grid,
    )
}

/// What varies between the experiments of these tests.
pub struct Size {
    pub classes: usize,
    pub per_class: usize,
    pub channels: &'static str,
    pub lr: f64,
    pub epochs: usize,
    pub seeds: &'static str,
}

pub fn experiment_sized(dir: &Path, name: &str, size: Size, grid: &str) -> PathBuf {
    let Size { classes, per_class, channels, lr, epochs, seeds } = size;
    let data = dir.join(format!("data-{classes}x{per_class}"));
    let text = format!(
        r#"(
    name: "{name}",
    dataset: (
        format: cub,
        root: "{data}",
        synthetic: (classes: {classes}, per_class: {per_class}, size: 32, seed: 1),
        transforms: (resize: 32, crop: 28),
    ),
    model: (backbone: SmallCnn(channels: {channels}), embedding_dim: 16),
    training: (
        epochs: {epochs},
        batch_size: 16,
        sampler: MPerClass(m: 4),
        optimizer: Sgd(lr: {lr}, momentum: 0.9, nesterov: true),
        schedule: WarmupCosine(warmup_iterations: 2),
        workers: 1,
    ),
    evaluation: (k: [1, 2], cluster: true, batch_size: 32),
    grid: [{grid}],
    seeds: {seeds},
)"#,
        data = data.display(),
    );
    let file = dir.join(format!("{name}.ron"));
    std::fs::write(&file, text).unwrap();
    file
}

/// A tiny tuning file: contrastive's negative margin and the optimiser's learning rate,
/// 2 folds, 3 trials per entry in batches of 2, final runs on seeds 0 and 1.
pub fn tuning_experiment(dir: &Path) -> PathBuf {
    let file = experiment_sized(
        dir,
        "tn",
        Size { classes: 16, per_class: 8, channels: "[8, 16]", lr: 0.05, epochs: 2, seeds: "[0, 1]" },
        r#"(loss: "contrastive", loss_config: (neg_margin: Tune(Uniform(0.5, 1.2)))), (loss: "cross_entropy")"#,
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .replace("transforms: (resize: 32, crop: 28),", "transforms: (resize: 32, crop: 28),\n        validation: KFold(folds: 2),")
        .replace("optimizer: Sgd(lr: 0.05,", "optimizer: Sgd(lr: Tune(LogUniform(0.01, 0.1)),")
        .replace("evaluation: (k: [1, 2],", "evaluation: (selection: Best(metric: \"map_at_r\"), k: [1, 2],")
        .replace(
            "seeds: [0, 1],",
            "seeds: [0, 1],\n    tuning: (trials: 3, metric: \"map_at_r\", sampler: Tpe(startup: 2), batch: 2, seed: 5),",
        );
    std::fs::write(&file, text).unwrap();
    file
}

/// `dmlbench run FILE --results RESULTS`, which must succeed; its (stdout, stderr).
pub fn run_to_the_end(file: &Path, results: &Path) -> (String, String) {
    let (code, stdout, stderr) = run(dmlbench().arg("run").arg(file).arg("--results").arg(results));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    (stdout, stderr)
}

pub fn record(results: &Path, experiment: &str, cell: &str) -> CellRecord {
    let path = results.join(experiment).join(format!("{cell}.ron"));
    CellRecord::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// What a record says about the method, without how long it took: the status, each epoch's
/// number, loss, images, plugin statistics and metrics, the untrained baseline and the final
/// metrics.
pub type Result = (
    CellStatus,
    Vec<(usize, f64, usize, Vec<(String, f64)>, Option<Metrics>, Option<Metrics>)>,
    Option<Metrics>,
    Option<Metrics>,
);

pub fn result_of(r: &CellRecord) -> Result {
    let epochs = r
        .epochs
        .iter()
        .map(|e| {
            (
                e.epoch,
                e.loss,
                e.images,
                e.plugin_stats.clone().into_iter().collect(),
                e.test.clone(),
                e.validation.clone(),
            )
        })
        .collect();
    (r.status.clone(), epochs, r.initial_test.clone(), r.final_metrics.clone())
}

/// `dmlbench run FILE --results RESULTS ARGS...` in the background, its output discarded.
pub fn spawn_run(file: &Path, results: &Path, args: &[&str]) -> Child {
    dmlbench()
        .arg("run")
        .arg(file)
        .arg("--results")
        .arg(results)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills `child` once the record at `record` holds an epoch and `checkpoint_file` exists
/// (in the middle of a later epoch); panics if `child` ends first or 5 minutes pass.
pub fn kill_after_first_epoch(mut child: Child, record: &Path, checkpoint_file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !(CellRecord::load(record).is_ok_and(|r| !r.epochs.is_empty()) && checkpoint_file.is_file()) {
        assert!(Instant::now() < deadline, "no epoch checkpointed in time");
        assert!(child.try_wait().unwrap().is_none(), "the cell ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
