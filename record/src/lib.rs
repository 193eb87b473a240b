//! The result record of one experiment cell: everything needed to trust, reproduce and
//! tabulate it. One RON file per cell; leaderboards are rendered from these files only.
//!
//! A record is rewritten (atomically, see [`write_atomic`]) after every epoch, so a run that
//! is killed leaves a consistent record with status `Running` and the epochs it finished.
//! `format_version` changes when a field changes meaning; readers refuse versions they do not
//! know.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use dmlbench_eval::{MetricId, Metrics};

#[cfg(feature = "fixture")]
pub mod fixture;

/// The statistic of [`EpochRecord::plugin_stats`] in which training records how many tuples
/// the miner returned per batch (triplets, or positive plus negative pairs), whatever the
/// miner's own statistics call them.
pub const MINED_TUPLES_STAT: &str = "mined.tuples";

/// The version of the record format written by this build.
pub const RECORD_FORMAT_VERSION: u32 = 1;

/// The copy of the experiment file that `dmlbench run` keeps beside an experiment's records:
/// not a record, but read by the HTML page to show what produced them.
pub const EXPERIMENT_COPY: &str = "experiment.ron";

/// The directory beside a tuning run's records that holds the experiment files it generates
/// (its trials, its final runs): not records.
pub const GENERATED_EXPERIMENTS: &str = "experiments";

/// One cell: (dataset, model, loss, miner, seed) of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// [`RECORD_FORMAT_VERSION`] at writing.
    pub format_version: u32,
    /// The experiment this cell belongs to.
    pub experiment: ExperimentRef,
    /// Which cell.
    pub cell: CellKey,
    /// The full resolved configuration of the cell, as RON text (dataset, transforms, model,
    /// training, evaluation, plugin configurations, seed): enough to run it again.
    pub config: String,
    /// SHA-like fingerprint of `config` (FNV-1a 64, hex); a finished record is reused only
    /// when the fingerprint of the cell to run is the same.
    pub config_fingerprint: String,
    /// The data it was trained and tested on.
    pub dataset: DatasetInfo,
    /// The plugins it ran, with their versions.
    pub plugins: Vec<PluginRef>,
    /// Running, completed or failed.
    pub status: CellStatus,
    /// Test metrics of the network before any training (the untrained baseline), when the
    /// cell started from scratch.
    #[serde(default)]
    pub initial_test: Option<Metrics>,
    /// One entry per finished epoch.
    pub epochs: Vec<EpochRecord>,
    /// The selected model's test metrics (see `selection`); `None` until the cell completes.
    pub final_metrics: Option<Metrics>,
    /// How the reported model was selected.
    pub selection: Selection,
    /// Peak resident memory of the cell's process, bytes.
    pub peak_rss_bytes: u64,
    /// Peak device memory on a GPU, bytes (`None` on CPU).
    pub peak_device_bytes: Option<u64>,
    /// Where it ran.
    pub environment: Environment,
    /// Start of the first attempt, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// Time of the last write, seconds since the Unix epoch.
    pub updated_unix_s: u64,
    /// How many times the cell was resumed from a checkpoint.
    pub resumed: u32,
    /// For the record of a cross-validated cell (`dataset.validation: KFold(...)`): what its
    /// fold runs gave. Its `final_metrics` are then those of the fold models' concatenated
    /// embeddings; `None` for every other record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<FoldSummary>,
    /// The cell never loaded the test split (`evaluation.test: false`, a tuning trial): it
    /// has validation metrics only, and leaderboards leave it out of their tables.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub validation_only: bool,
    /// For a cell whose grid entry `dmlbench tune` chose: the tuning behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningSummary>,
}

/// The tuning run that chose a grid entry's values: every trial's objective, and the best.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuningSummary {
    /// The tuning experiment whose records hold the trials (`<experiment>-tuning`).
    pub experiment: String,
    /// The validation metric maximised.
    pub metric: String,
    /// Each trial in the order proposed: its label (`t007`) and objective (the metric's mean
    /// over its folds), `None` for a trial that failed.
    pub trials: Vec<(String, Option<f64>)>,
    /// The best trial's label.
    pub best: String,
    /// The values it chose, by field (`grid[0].loss_config.margin` → `0.12`), as RON text.
    pub chosen: BTreeMap<String, String>,
}

/// The fold runs behind a cross-validated record (MLRC's protocol: k models, each trained
/// on k − 1 class-disjoint folds of the training classes and validated on the last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldSummary {
    /// Number of folds k.
    pub count: usize,
    /// The ids of the fold runs' records, fold 0 first.
    pub cells: Vec<String>,
    /// The mean of the fold models' own test metrics (MLRC's "separate" numbers).
    pub separate: Metrics,
    /// The test metrics of the fold models' embeddings, each L2-normalised, concatenated
    /// (k·d dimensions; MLRC's "concatenated" numbers): also the record's `final_metrics`.
    pub concatenated: Metrics,
}

/// The experiment a record belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentRef {
    /// Its `name`.
    pub name: String,
    /// The file it was read from, as given.
    pub file: String,
    /// Fingerprint of the file's text.
    pub fingerprint: String,
}

/// What identifies a cell within an experiment; also its leaderboard row and table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellKey {
    /// Dataset format (`cub`, `cars196`, `sop`, `inshop`, `folder`, `features`).
    pub dataset: String,
    /// The recipe: the experiment name, so that tables of different recipes are not mixed.
    pub recipe: String,
    /// Loss plugin id.
    pub loss: String,
    /// Miner plugin id, if any.
    pub miner: Option<String>,
    /// Label of the grid entry when the same (loss, miner) appears with several
    /// configurations; empty otherwise.
    pub variant: String,
    /// The seed.
    pub seed: u64,
    /// The fold of a cross-validation run (0..k); `None` for every other cell, and for the
    /// record that combines a cross-validated cell's folds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<u32>,
}

impl CellKey {
    /// `loss`, `loss+miner`, with `[variant]` when there is one: the leaderboard row name.
    pub fn method(&self) -> String {
        let mut name = self.loss.clone();
        if let Some(miner) = &self.miner {
            name.push('+');
            name.push_str(miner);
        }
        if !self.variant.is_empty() {
            name.push_str(&format!("[{}]", self.variant));
        }
        name
    }

    /// A file-name-safe id, unique within the experiment: `method-seedN`, and `-foldF` for a
    /// fold run.
    pub fn id(&self) -> String {
        let method: String = self
            .method()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '+' || c == '-' { c } else { '_' })
            .collect();
        match self.fold {
            Some(fold) => format!("{}-seed{}-fold{fold}", method, self.seed),
            None => format!("{}-seed{}", method, self.seed),
        }
    }

    /// The key of the cross-validated cell a fold run belongs to (itself without the fold).
    pub fn without_fold(&self) -> CellKey {
        CellKey { fold: None, ..self.clone() }
    }
}

/// The data of a cell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Dataset format.
    pub format: String,
    /// Its root directory.
    pub root: String,
    /// Fingerprint of the annotation files and image list (not the pixels).
    pub fingerprint: String,
    /// Training images and classes.
    pub train_images: usize,
    /// Training classes.
    pub train_classes: usize,
    /// Test (or query) images.
    pub test_images: usize,
    /// Test classes.
    pub test_classes: usize,
    /// The dataset's ids of the training classes held out for validation (a share of them,
    /// or a cross-validation fold), in ascending order; empty without a validation split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_classes: Vec<i64>,
}

/// A plugin a cell ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    /// `loss` or `miner`.
    pub kind: String,
    /// Its id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// The SDK that built it.
    pub sdk_version: String,
    /// Its configuration as RON text (empty for the defaults).
    pub config: String,
    /// Fingerprint ([`fingerprint`]) of the plugin's code when the cell ran: its crate's and
    /// the SDK's sources, or a prebuilt library's bytes. A record whose plugin's code changed
    /// since is stale. Empty in records written before dmlbench kept it (never called stale).
    #[serde(default)]
    pub library: String,
}

impl PluginRef {
    /// `loss:ID` or `miner:ID`, as plugins are named across kinds.
    pub fn qualified_id(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }
}

impl CellRecord {
    /// The plugins of this record whose library differs from the current one, given each
    /// plugin's current library fingerprint by qualified id (`loss:spce`). A plugin the record
    /// does not fingerprint, or that is no longer there, is not counted: nothing shows it
    /// changed.
    pub fn stale_plugins(&self, current: &BTreeMap<String, String>) -> Vec<&PluginRef> {
        self.plugins
            .iter()
            .filter(|p| !p.library.is_empty())
            .filter(|p| current.get(&p.qualified_id()).is_some_and(|now| *now != p.library))
            .collect()
    }
}

/// The state of a cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CellStatus {
    /// Started and not finished (or interrupted: re-running resumes it).
    Running,
    /// Finished; `final_metrics` is set.
    Completed,
    /// Stopped by an error; the reason says what happened and where.
    Failed {
        /// Why, in one or a few lines.
        reason: String,
    },
}

/// How the reported model was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selection {
    /// The model after the last epoch.
    Last,
    /// The epoch with the best validation `metric` (on classes held out of training).
    Best {
        /// The metric compared, e.g. `recall_at_1`.
        metric: MetricId,
        /// The epoch chosen (1-based), once known.
        epoch: Option<usize>,
    },
}

/// Wall-clock seconds of one epoch, split by phase. `total` is measured separately and
/// includes what the phases do not (bookkeeping, checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Waiting for the next batch of images.
    pub data_s: f64,
    /// Backbone forward pass.
    pub forward_s: f64,
    /// The miner.
    pub miner_s: f64,
    /// The loss (forward and dL/dZ).
    pub loss_s: f64,
    /// Backward pass through the backbone.
    pub backward_s: f64,
    /// Optimiser step (and the loss plugin's own step).
    pub optimizer_s: f64,
    /// Evaluation after the epoch, if any.
    pub eval_s: f64,
    /// The whole epoch, evaluation included.
    pub total_s: f64,
}

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// Training images processed.
    pub images: usize,
    /// Training images per second (excluding evaluation time).
    pub images_per_second: f64,
    /// Time split.
    pub timing: Timing,
    /// Test metrics after this epoch, when evaluated.
    pub test: Option<Metrics>,
    /// Validation metrics after this epoch, when a validation split is used.
    pub validation: Option<Metrics>,
    /// Mean of each plugin statistic over the epoch (`loss.active_pos_pairs`, `miner.triplets`).
    pub plugin_stats: BTreeMap<String, f64>,
}

/// Where a cell ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// CPU model name.
    pub cpu: String,
    /// Threads used for training.
    pub threads: usize,
    /// Compute backend (`flex`, `cuda`, `tch`).
    pub backend: String,
    /// Device (`cpu`, `cuda:0`).
    pub device: String,
    /// GPU name on a GPU.
    pub gpu: Option<String>,
    /// `git rev-parse HEAD` of the project, with `-dirty` when the tree had changes.
    pub git_revision: String,
    /// dmlbench's version.
    pub dmlbench_version: String,
    /// Fingerprint ([`fingerprint`]) of the sources the running dmlbench was built from: the
    /// crates compiled into it (every file's path relative to the workspace, and its bytes), so
    /// the same in any checkout and on any machine. It says whether two records ran the same
    /// harness; unlike a plugin's fingerprint it never makes a record stale. Empty in records
    /// written before dmlbench kept it.
    #[serde(default)]
    pub dmlbench_build: String,
    /// Operating system and architecture.
    pub os: String,
    /// Host name.
    pub host: String,
}

impl CellRecord {
    /// Time per epoch, mean over finished epochs (training and evaluation).
    pub fn mean_epoch_seconds(&self) -> Option<f64> {
        mean(self.epochs.iter().map(|e| e.timing.total_s))
    }

    /// Training images per second, mean over finished epochs.
    pub fn mean_images_per_second(&self) -> Option<f64> {
        mean(self.epochs.iter().map(|e| e.images_per_second))
    }

    /// The share of training time (each epoch's total less its evaluation) spent mining,
    /// over the finished epochs; `None` before the first epoch.
    pub fn mining_time_share(&self) -> Option<f64> {
        let (mining, training) = self
            .epochs
            .iter()
            .fold((0.0, 0.0), |(m, t), e| (m + e.timing.miner_s, t + (e.timing.total_s - e.timing.eval_s).max(0.0)));
        (training > 0.0).then(|| mining / training)
    }

    /// Tuples a miner returned per batch ([`MINED_TUPLES_STAT`]), mean over the epochs that
    /// recorded it.
    pub fn mined_tuples_per_batch(&self) -> Option<f64> {
        mean(self.epochs.iter().filter_map(|e| e.plugin_stats.get(MINED_TUPLES_STAT).copied()))
    }

    /// The share of the loss's terms that were non-zero: for every statistic pair
    /// `loss.active_X` / `loss.X` the loss records (active pairs, triplets, anchors), the
    /// active count over the whole count, summed over X, per epoch; mean over epochs.
    pub fn nonzero_loss_share(&self) -> Option<f64> {
        mean(self.epochs.iter().filter_map(|e| {
            let (active, all) = e
                .plugin_stats
                .iter()
                .filter_map(|(name, &active)| {
                    let kind = name.strip_prefix("loss.active_")?;
                    Some((active, *e.plugin_stats.get(&format!("loss.{kind}"))?))
                })
                .fold((0.0, 0.0), |(a, n), (x, y)| (a + x, n + y));
            (all > 0.0).then(|| active / all)
        }))
    }

    /// What keeps this record of a cell trained for `epochs` epochs from being a complete
    /// result, whatever its status says: the untrained baseline, epochs 1 to `epochs` in
    /// order, and (once completed) the final metrics. `None` when nothing is missing.
    pub fn incompleteness(&self, epochs: usize) -> Option<String> {
        let numbers: Vec<usize> = self.epochs.iter().map(|e| e.epoch).collect();
        // A validation-only cell has neither the untrained baseline nor final test metrics.
        if self.initial_test.is_none() && !self.validation_only {
            Some("the untrained network's metrics (epoch 0) are missing".into())
        } else if numbers != (1..=epochs).collect::<Vec<_>>() {
            Some(format!("it holds epochs {numbers:?}, not 1 to {epochs}"))
        } else if self.status == CellStatus::Completed && self.final_metrics.is_none() && !self.validation_only {
            Some("the final metrics are missing".into())
        } else {
            None
        }
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / count as f64)
}

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a valid record.
    #[error("{path}: not a valid result record: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message with its position.
        message: String,
    },
    /// Written by a version of dmlbench with another record format.
    #[error("{path}: record format version {found}, this dmlbench reads version {RECORD_FORMAT_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
}

/// FNV-1a 64-bit hash of `bytes`, as 16 hex digits: a stable fingerprint (not a security
/// hash) for configurations and annotation files.
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a
/// part: write a temporary file in the same directory, flush it to disk, rename it over.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Removes the temporary files [`write_atomic`] leaves beside `path` when its process is killed
/// between writing and renaming. Call it where no other process is writing `path`.
pub fn remove_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl CellRecord {
    /// Pretty RON text.
    pub fn to_ron(&self) -> String {
        let pretty = ron::ser::PrettyConfig::new().struct_names(false).depth_limit(6);
        ron::ser::to_string_pretty(self, pretty).expect("a record always serialises")
    }

    /// Writes the record atomically.
    pub fn save(&self, path: &Path) -> Result<(), RecordError> {
        write_atomic(path, self.to_ron().as_bytes())
            .map_err(|source| RecordError::Io { path: path.to_path_buf(), source })
    }

    /// Reads and checks a record.
    pub fn load(path: &Path) -> Result<CellRecord, RecordError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| RecordError::Io { path: path.to_path_buf(), source })?;
        let parse_error =
            |e: ron::error::SpannedError| RecordError::Parse { path: path.to_path_buf(), message: e.to_string() };
        // The version first (other fields ignored), so that a record of another format gets a
        // clear message rather than a parse error about some field.
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let version: VersionOnly = ron::from_str(&text).map_err(parse_error)?;
        if version.format_version != RECORD_FORMAT_VERSION {
            return Err(RecordError::Version { path: path.to_path_buf(), found: version.format_version });
        }
        ron::from_str(&text).map_err(parse_error)
    }
}

/// Every record (`*.ron` other than [`EXPERIMENT_COPY`]) under `dirs`, recursively, sorted by
/// path, with the files that could not be read.
pub fn load_all(dirs: &[PathBuf]) -> (Vec<(PathBuf, CellRecord)>, Vec<RecordError>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || (e.file_name() != "checkpoints"
                        && e.file_name() != GENERATED_EXPERIMENTS
                        && !e.file_name().to_string_lossy().starts_with('.'))
            })
            .flatten()
            .filter(|e| {
                e.file_type().is_file()
                    && e.path().extension().is_some_and(|x| x == "ron")
                    && e.file_name() != EXPERIMENT_COPY
            })
            .map(|e| e.into_path())
            .collect();
        files.sort();
        for file in files {
            match CellRecord::load(&file) {
                Ok(record) => records.push((file, record)),
                Err(e) => errors.push(e),
            }
        }
    }
    (records, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> CellRecord {
        let metrics = Metrics {
            recall_at_k: [(1, 0.5), (2, 0.625)].into_iter().collect(),
            precision_at_1: 0.5,
            r_precision: 0.25,
            map_at_r: 0.125,
            nmi: Some(0.75),
            ami: None,
            queries: 8,
            skipped_queries: 0,
        };
        CellRecord {
            tuning: None,
            validation_only: false,
            folds: None,
            format_version: RECORD_FORMAT_VERSION,
            experiment: ExperimentRef {
                name: "default".into(),
                file: "experiments/default.ron".into(),
                fingerprint: fingerprint(b"x"),
            },
            cell: CellKey {
                fold: None,
                dataset: "cub".into(),
                recipe: "default".into(),
                loss: "contrastive".into(),
                miner: Some("batch_hard".into()),
                variant: String::new(),
                seed: 3,
            },
            config: "(seed: 3)".into(),
            config_fingerprint: fingerprint(b"(seed: 3)"),
            dataset: DatasetInfo {
                validation_classes: Vec::new(),
                format: "cub".into(),
                root: "data/x".into(),
                fingerprint: "0".into(),
                train_images: 10,
                train_classes: 2,
                test_images: 8,
                test_classes: 2,
            },
            plugins: vec![PluginRef {
                kind: "loss".into(),
                id: "contrastive".into(),
                version: "0.1.0".into(),
                sdk_version: "dmlbench-sdk 0.1.0".into(),
                config: String::new(),
                library: String::new(),
            }],
            status: CellStatus::Failed { reason: "line one\nline \"two\"".into() },
            initial_test: None,
            epochs: vec![EpochRecord {
                epoch: 1,
                loss: 0.5,
                images: 10,
                images_per_second: 20.0,
                timing: Timing { total_s: 0.5, ..Timing::default() },
                test: Some(metrics.clone()),
                validation: None,
                plugin_stats: [("loss.active_pos_pairs".to_string(), 3.0)].into_iter().collect(),
            }],
            final_metrics: Some(metrics),
            selection: Selection::Best { metric: MetricId::RecallAt(1), epoch: Some(1) },
            peak_rss_bytes: 1 << 20,
            peak_device_bytes: None,
            environment: Environment::default(),
            started_unix_s: 1,
            updated_unix_s: 2,
            resumed: 0,
        }
    }

    #[test]
    fn temporaries_of_a_killed_write_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a-seed0.ron");
        write_atomic(&path, b"record").unwrap();
        for name in [".a-seed0.ron.tmp-123", ".a-seed0.ron.tmp-456", ".b-seed0.ron.tmp-1", "a-seed0.ron.tmp-9"] {
            std::fs::write(dir.path().join(name), b"half").unwrap();
        }
        remove_temporaries(&path);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![".b-seed0.ron.tmp-1", "a-seed0.ron", "a-seed0.ron.tmp-9"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"record");
    }

    #[test]
    fn round_trips_through_ron_and_names_cells() {
        let dir = tempfile::tempdir().unwrap();
        let record = sample();
        assert_eq!(record.cell.method(), "contrastive+batch_hard");
        assert_eq!(record.cell.id(), "contrastive+batch_hard-seed3");
        let path = dir.path().join("a/b.ron");
        record.save(&path).unwrap();
        assert_eq!(CellRecord::load(&path).unwrap(), record);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn records_written_before_the_build_fingerprint_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = sample();
        record.environment.dmlbench_build = "0123456789abcdef".into();
        let text = record.to_ron();
        let line = "dmlbench_build: \"0123456789abcdef\",";
        assert!(text.contains(line), "{text}");
        let older = dir.path().join("older.ron");
        std::fs::write(&older, text.lines().filter(|l| l.trim() != line).collect::<Vec<_>>().join("\n")).unwrap();
        let loaded = CellRecord::load(&older).unwrap();
        assert_eq!(loaded.environment.dmlbench_build, "");
        record.environment.dmlbench_build = String::new();
        assert_eq!(loaded, record);
    }

    #[test]
    fn other_versions_and_garbage_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = sample();
        record.format_version = 99;
        let newer = dir.path().join("newer.ron");
        std::fs::write(&newer, record.to_ron()).unwrap();
        let e = CellRecord::load(&newer).unwrap_err().to_string();
        assert!(e.contains("format version 99") && e.contains("newer.ron"), "{e}");
        let garbage = dir.path().join("garbage.ron");
        std::fs::write(&garbage, "(format_version: 1, status: ???)").unwrap();
        assert!(CellRecord::load(&garbage).unwrap_err().to_string().contains("not a valid result record"));
        sample().save(&dir.path().join("ok.ron")).unwrap();
        let (records, errors) = load_all(&[dir.path().to_path_buf()]);
        assert_eq!((records.len(), errors.len()), (1, 2));
    }

    #[test]
    fn fingerprint_is_fnv1a() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(fingerprint(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fingerprint(b""), "cbf29ce484222325");
    }

    #[test]
    fn mining_figures_by_hand() {
        let mut record = sample();
        let template = record.epochs[0].clone();
        let epoch = |miner_s: f64, total_s: f64, eval_s: f64, stats: &[(&str, f64)]| EpochRecord {
            timing: Timing { miner_s, total_s, eval_s, ..Timing::default() },
            plugin_stats: stats.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..template.clone()
        };
        record.epochs = vec![
            // 1 s of 10 s training; 30 tuples; contrastive's active pairs 6 + 2 of 10 + 10.
            epoch(
                1.0,
                12.0,
                2.0,
                &[
                    (MINED_TUPLES_STAT, 30.0),
                    ("loss.active_pos_pairs", 6.0),
                    ("loss.pos_pairs", 10.0),
                    ("loss.active_neg_pairs", 2.0),
                    ("loss.neg_pairs", 10.0),
                ],
            ),
            // 3 s of 10 s training; 50 tuples; a triplet loss with 5 of 20 active.
            epoch(3.0, 10.0, 0.0, &[(MINED_TUPLES_STAT, 50.0), ("loss.active_triplets", 5.0), ("loss.triplets", 20.0)]),
        ];
        assert!((record.mining_time_share().unwrap() - 4.0 / 20.0).abs() < 1e-12);
        assert_eq!(record.mined_tuples_per_batch(), Some(40.0));
        assert!((record.nonzero_loss_share().unwrap() - (0.4 + 0.25) / 2.0).abs() < 1e-12);
        // A loss without active counts and no miner: nothing to report.
        record.epochs = vec![epoch(0.0, 5.0, 1.0, &[("loss.classes_in_batch", 4.0)])];
        assert_eq!((record.mined_tuples_per_batch(), record.nonzero_loss_share()), (None, None));
        assert_eq!(record.mining_time_share(), Some(0.0));
        record.epochs.clear();
        assert_eq!(record.mining_time_share(), None);
    }

    #[test]
    fn a_record_is_stale_only_for_plugins_whose_library_changed() {
        let mut record = sample();
        record.plugins = vec![
            PluginRef { kind: "loss".into(), id: "spce".into(), library: "aaaa".into(), ..record.plugins[0].clone() },
            PluginRef { kind: "miner".into(), id: "hdc".into(), library: "bbbb".into(), ..record.plugins[0].clone() },
            PluginRef { kind: "loss".into(), id: "old".into(), library: String::new(), ..record.plugins[0].clone() },
        ];
        let current = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(record.stale_plugins(&current(&[("loss:spce", "aaaa"), ("miner:hdc", "bbbb")])).is_empty());
        let stale = record.stale_plugins(&current(&[("loss:spce", "cccc"), ("miner:hdc", "bbbb"), ("loss:old", "x")]));
        assert_eq!(stale.iter().map(|p| p.qualified_id()).collect::<Vec<_>>(), ["loss:spce"]);
        // A plugin that is gone is not called changed.
        assert!(record.stale_plugins(&current(&[])).is_empty());
    }
}
