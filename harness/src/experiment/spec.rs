//! The experiment file as written: RON, parsed with serde. Every section but `dataset`,
//! `training` and `grid` has defaults; unknown fields are errors, so a misspelt option is
//! never silently ignored.

use std::path::PathBuf;

use dmlbench_datasets::Format;
use dmlbench_models::ModelConfig;
use ron::value::RawValue;
use serde::{Deserialize, Serialize};

use dmlbench_eval::Distance;

/// A whole experiment file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Short name: the results go to `results/<name>/`, and it names the leaderboard recipe.
    pub name: String,
    /// What the experiment is for.
    #[serde(default)]
    pub description: String,
    /// The data.
    pub dataset: DatasetSpec,
    /// The network.
    #[serde(default)]
    pub model: ModelConfig,
    /// How to train.
    pub training: TrainingSpec,
    /// How to evaluate.
    #[serde(default)]
    pub evaluation: EvaluationSpec,
    /// The (loss, miner) combinations to compare.
    pub grid: Vec<GridEntry>,
    /// One cell per seed for every grid entry.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// How `dmlbench sweep --slurm` submits the cells; not part of any cell's configuration.
    #[serde(default)]
    pub slurm: SlurmSpec,
    /// The budget and objective of `dmlbench tune` (see [`crate::tune`]); `dmlbench run`
    /// ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningSpec>,
}

/// How `dmlbench tune` searches the `Tune(...)` fields of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningSpec {
    /// Trials per grid entry.
    pub trials: usize,
    /// The validation metric maximised (`map_at_r`, `recall_at_1`, ...): its mean over the
    /// trial's folds (or its one validation split), at each fold's selected epoch.
    #[serde(default = "default_tuning_metric")]
    pub metric: String,
    /// How trials are proposed.
    #[serde(default)]
    pub sampler: SamplerKind,
    /// Trials proposed at once per grid entry, from the results of the earlier ones: the
    /// trials of a batch run side by side (a cluster runs them as one array).
    #[serde(default = "one")]
    pub batch: usize,
    /// Seed of the proposals.
    #[serde(default)]
    pub seed: u64,
}

fn default_tuning_metric() -> String {
    "map_at_r".into()
}

fn one() -> usize {
    1
}

/// The proposal algorithm of a tuning run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SamplerKind {
    /// Tree-structured Parzen estimators (Bergstra et al. 2011; Optuna's default), one per
    /// field, after `startup` trials drawn at random.
    Tpe {
        /// Trials drawn at random before the estimators take over.
        #[serde(default = "default_startup")]
        startup: usize,
    },
    /// Every trial drawn at random (the baseline TPE must beat).
    Random,
    /// `Tpe` with 4 random start-up trials.
    #[default]
    Default,
}

fn default_startup() -> usize {
    4
}

impl SamplerKind {
    /// Trials drawn at random before the estimators take over (all of them for `Random`).
    pub fn startup(self) -> usize {
        match self {
            SamplerKind::Tpe { startup } => startup,
            SamplerKind::Default => default_startup(),
            SamplerKind::Random => usize::MAX,
        }
    }
}

/// Cluster settings an experiment carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSpec {
    /// Extra `#SBATCH` options for every task, e.g. `["--qos=high", "--constraint=a100"]`.
    pub sbatch: Vec<String>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// Where the data is, and how images become tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// On-disk format.
    pub format: Format,
    /// Dataset root; a relative path is taken from the project root.
    pub root: PathBuf,
    /// Generate a synthetic dataset at `root` when it does not exist yet.
    #[serde(default)]
    pub synthetic: Option<SyntheticSpec>,
    /// Compare image and class counts with the published (or synthetic manifest) counts and
    /// stop on a mismatch.
    #[serde(default = "yes")]
    pub strict: bool,
    /// Resize and crop sizes and colour jitter.
    #[serde(default)]
    pub transforms: TransformSpec,
    /// Share of the training classes held out as a validation split (for `Best` model
    /// selection); 0 for none.
    #[serde(default)]
    pub validation_classes: f64,
    /// Cross-validation over the training classes (`validation: KFold(folds: 4)`), instead of
    /// one held-out share: each cell becomes one run per fold. Left out of a cell's
    /// configuration when absent, so other cells keep their fingerprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationSpec>,
}

impl DatasetSpec {
    /// The number of cross-validation folds, when the dataset asks for them.
    pub fn folds(&self) -> Option<usize> {
        self.validation.map(|ValidationSpec::KFold { folds }| folds)
    }

    /// The fold of each run of a cell: 0..k with cross-validation, else one run of no fold.
    pub fn fold_ids(&self) -> Vec<Option<u32>> {
        match self.folds() {
            Some(k) => (0..k as u32).map(Some).collect(),
            None => vec![None],
        }
    }

    /// Whether cells validate on held-out training classes (a share, or a fold).
    pub fn has_validation(&self) -> bool {
        self.validation_classes > 0.0 || self.validation.is_some()
    }
}

/// How the training classes are split for validation, besides a held-out share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidationSpec {
    /// Class-disjoint k-fold cross-validation (MLRC's protocol): the training classes are
    /// shuffled with a fixed seed and cut into `folds` parts of (nearly) equal class counts;
    /// fold run f trains on the other parts and validates on part f.
    KFold {
        /// k, at least 2.
        folds: usize,
    },
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// A synthetic dataset to generate on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// Number of classes (half train, half test).
    pub classes: usize,
    /// Images per class.
    pub per_class: usize,
    /// Image side in pixels.
    pub size: u32,
    /// Generator seed.
    #[serde(default)]
    pub seed: u64,
}

/// Image sizes of the transform recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformSpec {
    /// Resize target (shorter side or square, per dataset recipe).
    pub resize: u32,
    /// Crop side: the network's input size.
    pub crop: u32,
    /// Colour jitter during training.
    pub jitter: bool,
}

impl Default for TransformSpec {
    fn default() -> Self {
        TransformSpec { resize: 256, crop: 224, jitter: false }
    }
}

/// How training batches are drawn. Either way, one epoch is one pass over the training
/// images: `ceil(n / batch_size)` batches (the last one smaller for `Random`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SamplerSpec {
    /// Shuffled images (the paper's cross-entropy recipe).
    #[default]
    Random,
    /// Batches of `batch_size / m` classes with `m` images each (the pairwise recipes).
    MPerClass {
        /// Images per class in a batch.
        m: usize,
    },
}

/// The optimiser of the network's weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum OptimizerSpec {
    /// SGD with momentum; weight decay is applied to weights only, not to biases and
    /// normalisation parameters.
    Sgd {
        /// Base learning rate.
        lr: f64,
        /// Momentum.
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// L2 weight decay (weights only).
        #[serde(default)]
        weight_decay: f64,
    },
    /// AdamW (decoupled weight decay, weights only).
    AdamW {
        /// Base learning rate.
        lr: f64,
        /// β₁.
        #[serde(default = "beta1")]
        beta1: f64,
        /// β₂.
        #[serde(default = "beta2")]
        beta2: f64,
        /// ε.
        #[serde(default = "adam_eps")]
        eps: f64,
        /// Decoupled weight decay (weights only).
        #[serde(default)]
        weight_decay: f64,
    },
    /// RMSprop.
    RmsProp {
        /// Base learning rate.
        lr: f64,
        /// Smoothing constant α.
        #[serde(default = "rms_alpha")]
        alpha: f64,
        /// ε.
        #[serde(default = "rms_eps")]
        eps: f64,
        /// Momentum.
        #[serde(default)]
        momentum: f64,
        /// L2 weight decay (weights only).
        #[serde(default)]
        weight_decay: f64,
    },
}

fn beta1() -> f64 {
    0.9
}
fn beta2() -> f64 {
    0.999
}
fn adam_eps() -> f64 {
    1e-8
}
fn rms_alpha() -> f64 {
    0.99
}
fn rms_eps() -> f64 {
    1e-8
}

impl OptimizerSpec {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerSpec::Sgd { lr, .. } | OptimizerSpec::AdamW { lr, .. } | OptimizerSpec::RmsProp { lr, .. } => lr,
        }
    }
}

/// The learning-rate schedule: a factor of the base rate, per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum ScheduleSpec {
    /// Always 1.
    #[default]
    Constant,
    /// A cosine from 1 to 0 over the whole run, capped by a linear warm-up over the first
    /// `warmup_iterations`: min((i + 1) / w, ½ (1 + cos(π i / total))) (the paper's recipe).
    WarmupCosine {
        /// Warm-up length in iterations.
        warmup_iterations: usize,
    },
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Period in epochs.
        every_epochs: usize,
        /// Factor.
        gamma: f64,
    },
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Number of epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// How batches are drawn.
    #[serde(default)]
    pub sampler: SamplerSpec,
    /// The network's optimiser.
    pub optimizer: OptimizerSpec,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// Image decoding threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Batches decoded ahead of the model.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Keep resized images in memory after the first epoch instead of decoding every epoch.
    #[serde(default)]
    pub cache_images: bool,
    /// `cpu`, `cuda:N` (feature `cuda`), `tch` or `tch-cuda:N` (feature `tch`).
    #[serde(default = "default_device")]
    pub device: String,
    /// Seconds a cell may go without finishing a batch (of training or of evaluation) before
    /// it is stopped and recorded as failed: a plugin or a data source that hangs costs this
    /// long, not the whole run. It does not change results, so it is left out of the cell's
    /// configuration (and its fingerprint).
    #[serde(default = "default_stall_timeout", skip_serializing)]
    pub stall_timeout: f64,
}

fn default_workers() -> usize {
    2
}
fn default_prefetch() -> usize {
    4
}
fn default_stall_timeout() -> f64 {
    1800.0
}
fn default_device() -> String {
    "cpu".into()
}

/// How the reported model is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SelectionSpec {
    /// The model after the last epoch (the default: no decision is taken on test data).
    #[default]
    Last,
    /// The epoch with the best validation `metric` (`recall_at_1`, `map_at_r`, ...), on
    /// classes held out of training (`dataset.validation_classes`).
    Best {
        /// The metric to maximise.
        metric: String,
    },
}

/// How and when to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluationSpec {
    /// Evaluate on the test split every this many epochs (0: only after the last epoch).
    pub every: usize,
    /// Recall@K values; empty means the dataset's usual ones (CUB/Cars 1,2,4,8; SOP
    /// 1,10,100,1000; In-Shop 1,10,20,30,40,50).
    pub k: Vec<usize>,
    /// Distance for retrieval.
    pub distance: Distance,
    /// Compute NMI and AMI (k-means).
    pub cluster: bool,
    /// Model selection.
    pub selection: SelectionSpec,
    /// Evaluate on the test split (the default). `false`: validation only, never loading the
    /// test split, as a tuning trial runs; its record then has no test metrics. Left out of
    /// the cell's configuration when true, so other cells keep their fingerprints.
    #[serde(skip_serializing_if = "is_true")]
    pub test: bool,
    /// Evaluation batch size (images through the network at once).
    pub batch_size: usize,
}

impl Default for EvaluationSpec {
    fn default() -> Self {
        EvaluationSpec {
            every: 1,
            k: Vec::new(),
            distance: Distance::Cosine,
            cluster: true,
            selection: SelectionSpec::Last,
            test: true,
            batch_size: 128,
        }
    }
}

/// One (loss, miner) combination of the grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridEntry {
    /// Loss plugin id.
    pub loss: String,
    /// Loss configuration, a RON value (`(neg_margin: 0.8)`); omitted: the defaults.
    #[serde(default)]
    pub loss_config: Option<Box<RawValue>>,
    /// Miner plugin id.
    #[serde(default)]
    pub miner: Option<String>,
    /// Miner configuration, a RON value.
    #[serde(default)]
    pub miner_config: Option<Box<RawValue>>,
    /// A label telling apart entries with the same loss and miner (`m0.1`, `ls0`); part of
    /// the leaderboard row name.
    #[serde(default)]
    pub variant: String,
    /// A cross-batch memory of past embeddings the loss (and miner) compare each batch with
    /// (`memory: Some((size: 4096))`); none by default.
    #[serde(default)]
    pub memory: Option<MemorySpec>,
    /// The network's optimiser for this entry's cells instead of `training.optimizer` (a
    /// tuning trial's, when the optimiser is tuned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerSpec>,
    /// For an entry whose values `dmlbench tune` chose: the trials behind them. Copied into
    /// its records; not part of the cells' configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<dmlbench_record::TuningSummary>,
}

/// A cross-batch memory (XBM, Wang et al. 2020; PML's `CrossBatchMemory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    /// Number of past embeddings kept (PML's `memory_size`); at least the batch size.
    pub size: usize,
}

impl GridEntry {
    /// The loss configuration as RON text ("" for the defaults).
    pub fn loss_config_text(&self) -> String {
        self.loss_config.as_ref().map_or_else(String::new, |v| v.get_ron().trim().to_string())
    }

    /// The miner configuration as RON text ("" for the defaults).
    pub fn miner_config_text(&self) -> String {
        self.miner_config.as_ref().map_or_else(String::new, |v| v.get_ron().trim().to_string())
    }
}

/// The usual Recall@K values of a dataset format.
pub fn default_k(format: Format) -> Vec<usize> {
    match format {
        Format::Sop => vec![1, 10, 100, 1000],
        Format::Inshop => vec![1, 10, 20, 30, 40, 50],
        _ => vec![1, 2, 4, 8],
    }
}
