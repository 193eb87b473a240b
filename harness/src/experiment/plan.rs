//! From an experiment file to the cells to run, with every problem found at once.
//!
//! Parsing is in two stages, as a compiler would: RON syntax and structure first (serde
//! stops at the first error, with its line and column), then every semantic check, each
//! reported with its field path (`grid[2].miner: ...`), so a user fixes a file in one round.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use dmlbench_datasets::Format;
use serde::Serialize;

use super::spec::{EvaluationSpec, ExperimentSpec, OptimizerSpec, SamplerSpec, ScheduleSpec, SelectionSpec, default_k};
use crate::report::record::{CellKey, fingerprint};
use dmlbench_host::isolated::{CreateError, DEFAULT_CREATE_TIMEOUT, create_all_in_child, describe_create_error};
use dmlbench_host::{CreateOptions, PluginInfo, PluginKind, Registry};

/// A plugin and its configuration text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginChoice {
    /// Plugin id.
    pub id: String,
    /// RON configuration ("" for the defaults).
    pub config: String,
}

/// One cell: what to train and test, completely resolved.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Its identity (table, row, seed).
    pub key: CellKey,
    /// The loss.
    pub loss: PluginChoice,
    /// The miner.
    pub miner: Option<PluginChoice>,
    /// The resolved configuration as RON (what the record stores).
    pub config: String,
    /// Fingerprint of `config`.
    pub fingerprint: String,
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The parsed file (with any overrides applied).
    pub spec: ExperimentSpec,
    /// The file.
    pub file: PathBuf,
    /// Fingerprint of the file's text.
    pub file_fingerprint: String,
    /// Project root, against which relative paths are resolved.
    pub root: PathBuf,
    /// The dataset root, resolved.
    pub dataset_root: PathBuf,
    /// Recall@K values, resolved from the dataset when the file left them empty.
    pub k: Vec<usize>,
    /// Every cell, in grid order then seed order.
    pub cells: Vec<Cell>,
    /// The overrides it was made with (passed on to cell processes).
    pub overrides: Overrides,
}

impl Plan {
    /// The cell with this id.
    pub fn cell(&self, id: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.key.id() == id)
    }

    /// Where this experiment's records go.
    pub fn results_dir(&self, results: &Path) -> PathBuf {
        results.join(&self.spec.name)
    }

    /// `path` as records show it: relative to the project root when it lies inside, so
    /// records from different checkouts and machines read the same; as given otherwise.
    pub fn shown(&self, path: &Path) -> String {
        let root = self.root.canonicalize().unwrap_or_else(|_| self.root.clone());
        let full = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        full.strip_prefix(&root).unwrap_or(path).display().to_string()
    }
}

/// One problem in an experiment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `training.batch_size`, `grid[1].loss_config`, or empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in an experiment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The file.
    pub file: PathBuf,
    /// The problems, in file order.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "{}: {n} problem{}", self.file.display(), if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            if e.field.is_empty() {
                write!(f, "\n  {}", e.message)?;
            } else {
                write!(f, "\n  {}: {}", e.field, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}

/// Changes applied to an experiment file before validation (`dmlbench run --smoke`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Train this many epochs instead.
    pub epochs: Option<usize>,
    /// Train and evaluate on this device instead (`cpu`, `cuda:0`, ...).
    pub device: Option<String>,
    /// A smoke run: the experiment is renamed `<name>-smoke`, so that its one-epoch records go
    /// to a directory of their own and never replace the experiment's real results.
    pub smoke: bool,
    /// How long each plugin's `create` may take while the file is validated (it runs in a
    /// child process); `None` for [`DEFAULT_CREATE_TIMEOUT`].
    pub create_timeout: Option<std::time::Duration>,
    /// Leave out the `create` calls of validation: a cell process of `dmlbench run`, whose
    /// parent validated the same file just before (each call is a process of its own).
    pub skip_plugin_creation: bool,
}

/// The resolved configuration of one cell, as stored in its record.
#[derive(Serialize)]
struct CellConfig<'a> {
    dataset: &'a super::spec::DatasetSpec,
    model: &'a dmlbench_models::ModelConfig,
    training: &'a super::spec::TrainingSpec,
    evaluation: &'a EvaluationSpec,
    k: &'a [usize],
    loss: &'a PluginChoice,
    miner: Option<&'a PluginChoice>,
    seed: u64,
}

/// Collects problems with their field paths.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.add(field, message());
        }
    }
}

/// Reads and validates an experiment file; `root` is the project root (relative paths in the
/// file are taken from it) and `registry` the loaded plugins.
pub fn load(file: &Path, root: &Path, registry: &Registry, overrides: &Overrides) -> Result<Plan, PlanError> {
    let fail = |errors: Vec<FieldError>| PlanError { file: file.to_path_buf(), errors };
    let text = std::fs::read_to_string(file)
        .map_err(|e| fail(vec![FieldError { field: String::new(), message: format!("cannot read: {e}") }]))?;
    // `implicit_some`: optional fields may be written as plain values (`miner: "batch_hard"`)
    // as well as `Some(...)`.
    let options = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    let mut spec: ExperimentSpec = options.from_str(&text).map_err(|e| {
        fail(vec![FieldError {
            field: String::new(),
            message: format!("line {}, column {}: {}", e.span.start.line, e.span.start.col, e.code),
        }])
    })?;
    if let Some(epochs) = overrides.epochs {
        spec.training.epochs = epochs;
    }
    if let Some(device) = &overrides.device {
        spec.training.device = device.clone();
    }
    if overrides.smoke {
        spec.name = format!("{}-smoke", spec.name);
    }
    let mut problems = Problems::default();
    let create_timeout =
        (!overrides.skip_plugin_creation).then(|| overrides.create_timeout.unwrap_or(DEFAULT_CREATE_TIMEOUT));
    validate(&spec, root, registry, create_timeout, &mut problems);
    if !problems.0.is_empty() {
        return Err(fail(problems.0));
    }
    let dataset_root = root.join(&spec.dataset.root);
    let k = if spec.evaluation.k.is_empty() { default_k(spec.dataset.format) } else { spec.evaluation.k.clone() };
    let mut cells: Vec<Cell> = Vec::new();
    // Cell ids name record and checkpoint files, so two grid entries must not share one.
    let mut first_entry_of_id: BTreeMap<String, usize> = BTreeMap::new();
    for (index, entry) in spec.grid.iter().enumerate() {
        let loss = PluginChoice { id: entry.loss.clone(), config: entry.loss_config_text() };
        let miner = entry.miner.as_ref().map(|id| PluginChoice { id: id.clone(), config: entry.miner_config_text() });
        for &seed in &spec.seeds {
            let key = CellKey {
                dataset: spec.dataset.format.name().to_string(),
                recipe: spec.name.clone(),
                loss: loss.id.clone(),
                miner: miner.as_ref().map(|m| m.id.clone()),
                variant: entry.variant.clone(),
                seed,
            };
            let config = CellConfig {
                dataset: &spec.dataset,
                model: &spec.model,
                training: &spec.training,
                evaluation: &spec.evaluation,
                k: &k,
                loss: &loss,
                miner: miner.as_ref(),
                seed,
            };
            let config =
                ron::ser::to_string_pretty(&config, ron::ser::PrettyConfig::new()).expect("a cell config serialises");
            let fingerprint = fingerprint(config.as_bytes());
            let id = key.id();
            match first_entry_of_id.get(&id) {
                Some(&first) if first != index => {
                    problems.add(
                        format!("grid[{index}]"),
                        format!("its cell id '{id}' is also grid[{first}]'s (ids keep only letters, digits, '_', '+' and '-'); give one of them another `variant`"),
                    );
                    break;
                }
                _ => {
                    first_entry_of_id.insert(id, index);
                }
            }
            cells.push(Cell { key, loss: loss.clone(), miner: miner.clone(), config, fingerprint });
        }
    }
    if !problems.0.is_empty() {
        return Err(fail(problems.0));
    }
    Ok(Plan {
        file: file.to_path_buf(),
        file_fingerprint: fingerprint(text.as_bytes()),
        root: root.to_path_buf(),
        dataset_root,
        k,
        cells,
        spec,
        overrides: overrides.clone(),
    })
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Checks `spec`, creating each plugin with its configuration (in a child process, within
/// `create_timeout`) unless that is `None`.
fn validate(
    spec: &ExperimentSpec,
    root: &Path,
    registry: &Registry,
    create_timeout: Option<std::time::Duration>,
    p: &mut Problems,
) {
    p.check(
        !spec.name.is_empty()
            && spec.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !spec.name.starts_with('.'),
        "name",
        || format!("'{}' must be letters, digits, '-', '_' or '.' (it names the results directory)", spec.name),
    );

    let d = &spec.dataset;
    if d.format == Format::Features {
        p.add("dataset.format", "training needs images; evaluate feature files with `dmlbench eval`");
    }
    if d.synthetic.is_none() && !root.join(&d.root).exists() {
        p.add(
            "dataset.root",
            format!("{} does not exist (add `synthetic: Some(...)` to generate it)", root.join(&d.root).display()),
        );
    }
    if let Some(s) = d.synthetic {
        p.check(s.classes >= 4, "dataset.synthetic.classes", || format!("needs at least 4 classes, got {}", s.classes));
        p.check(s.per_class >= 2, "dataset.synthetic.per_class", || {
            format!("needs at least 2 images per class, got {}", s.per_class)
        });
        p.check((16..=4096).contains(&s.size), "dataset.synthetic.size", || {
            format!("must be 16–4096 pixels, got {}", s.size)
        });
    }
    p.check((0.0..0.9).contains(&d.validation_classes), "dataset.validation_classes", || {
        format!("must be in [0, 0.9), got {}", d.validation_classes)
    });
    let t = d.transforms;
    p.check(t.crop >= 8 && t.crop <= t.resize, "dataset.transforms", || {
        format!("crop ({}) must be at least 8 and at most resize ({})", t.crop, t.resize)
    });

    if let Err(e) = spec.model.validate() {
        p.add("model", e.to_string());
    }
    if let Some(weights) = &spec.model.weights {
        let path = root.join(weights);
        p.check(path.is_file(), "model.weights", || {
            format!(
                "{} not found; download torchvision's ImageNet weights, e.g. \
                 https://download.pytorch.org/models/resnet50-0676ba61.pth for ResNet-50, and put the file there",
                path.display()
            )
        });
    }

    let tr = &spec.training;
    p.check(tr.epochs >= 1, "training.epochs", || "must be at least 1".into());
    p.check(tr.batch_size >= 2, "training.batch_size", || format!("must be at least 2, got {}", tr.batch_size));
    if let SamplerSpec::MPerClass { m } = tr.sampler {
        p.check(m >= 2, "training.sampler.m", || format!("needs at least 2 images per class, got {m}"));
        p.check(tr.batch_size.is_multiple_of(m.max(1)), "training.batch_size", || {
            format!("{} is not divisible by the sampler's m = {m}", tr.batch_size)
        });
    }
    p.check(positive(tr.optimizer.lr()), "training.optimizer.lr", || {
        format!("must be positive, got {}", tr.optimizer.lr())
    });
    let (momentum, weight_decay) = match tr.optimizer {
        OptimizerSpec::Sgd { momentum, weight_decay, .. } | OptimizerSpec::RmsProp { momentum, weight_decay, .. } => {
            (momentum, weight_decay)
        }
        OptimizerSpec::AdamW { weight_decay, .. } => (0.0, weight_decay),
    };
    p.check((0.0..1.0).contains(&momentum), "training.optimizer.momentum", || {
        format!("must be in [0, 1), got {momentum}")
    });
    p.check(weight_decay >= 0.0 && weight_decay.is_finite(), "training.optimizer.weight_decay", || {
        format!("must be non-negative, got {weight_decay}")
    });
    // The optimisers' own constants: a decay rate outside [0, 1) or a non-positive ε trains on
    // without error and gives meaningless results, or fails much later with a misleading one.
    let (rates, eps) = match tr.optimizer {
        OptimizerSpec::AdamW { beta1, beta2, eps, .. } => (vec![("beta1", beta1), ("beta2", beta2)], Some(eps)),
        OptimizerSpec::RmsProp { alpha, eps, .. } => (vec![("alpha", alpha)], Some(eps)),
        OptimizerSpec::Sgd { .. } => (vec![], None),
    };
    for (field, value) in rates {
        p.check((0.0..1.0).contains(&value), &format!("training.optimizer.{field}"), || {
            format!("must be in [0, 1), got {value}")
        });
    }
    if let Some(eps) = eps {
        p.check(positive(eps), "training.optimizer.eps", || format!("must be positive, got {eps}"));
    }
    if let ScheduleSpec::Step { every_epochs, gamma } = tr.schedule {
        p.check(every_epochs >= 1, "training.schedule.every_epochs", || "must be at least 1".into());
        p.check(positive(gamma), "training.schedule.gamma", || format!("must be positive, got {gamma}"));
    }
    p.check(tr.workers >= 1, "training.workers", || "must be at least 1".into());
    p.check(tr.prefetch >= 1, "training.prefetch", || "must be at least 1".into());
    p.check(tr.stall_timeout.is_finite() && tr.stall_timeout > 0.0, "training.stall_timeout", || {
        format!("must be a positive number of seconds, not {}", tr.stall_timeout)
    });
    if let Err(e) = super::device::parse_device(&tr.device) {
        p.add("training.device", e);
    }

    let ev = &spec.evaluation;
    p.check(ev.k.iter().all(|&k| k >= 1), "evaluation.k", || "every K must be at least 1".into());
    p.check(ev.batch_size >= 1, "evaluation.batch_size", || "must be at least 1".into());
    if let SelectionSpec::Best { metric } = &ev.selection {
        let k = if ev.k.is_empty() { default_k(d.format) } else { ev.k.clone() };
        let mut known: Vec<String> = k.iter().map(|k| format!("recall_at_{k}")).collect();
        known.extend(["precision_at_1", "r_precision", "map_at_r", "nmi", "ami"].map(String::from));
        p.check(known.contains(metric), "evaluation.selection.metric", || {
            format!("unknown metric '{metric}'; one of {}", known.join(", "))
        });
        p.check(d.validation_classes > 0.0, "evaluation.selection", || {
            "Best selection needs held-out validation classes: set dataset.validation_classes (e.g. 0.2)".into()
        });
        p.check(metric != "nmi" && metric != "ami" || ev.cluster, "evaluation.selection.metric", || {
            format!("'{metric}' needs evaluation.cluster: true")
        });
    }

    p.check(!spec.seeds.is_empty(), "seeds", || "give at least one seed".into());
    let mut seen = spec.seeds.clone();
    seen.sort_unstable();
    seen.dedup();
    p.check(seen.len() == spec.seeds.len(), "seeds", || "seeds repeat".into());

    p.check(!spec.grid.is_empty(), "grid", || "give at least one (loss, miner) entry".into());
    let embedding_dim = spec.model.embedding_size().unwrap_or(0);
    // Every plugin of the grid with its configuration, created together once the grid is read.
    let mut creations: Vec<Creation> = Vec::new();
    for (i, entry) in spec.grid.iter().enumerate() {
        let at = |field: &str| format!("grid[{i}].{field}");
        // Plan-time instances only check the configuration; the real class count comes from
        // the dataset when the cell runs.
        let options = |config: String| CreateOptions {
            config,
            embedding_dim,
            num_classes: 2,
            seed: 0,
            base_lr: tr.optimizer.lr(),
        };
        let loss = match registry.get(PluginKind::Loss, &entry.loss) {
            Ok(info) => Some(info),
            Err(e) => {
                p.add(at("loss"), e);
                None
            }
        };
        if let Some(info) = loss {
            creations.push(Creation {
                info,
                options: options(entry.loss_config_text()),
                fields: (at("loss"), at("loss_config")),
            });
            match &entry.miner {
                Some(_) if !info.capabilities.accepts_tuples() => {
                    p.add(at("miner"), format!("loss '{}' does not use mined tuples; remove the miner", info.id));
                }
                None if info.capabilities.needs_tuples => {
                    p.add(at("miner"), format!("loss '{}' needs a miner", info.id))
                }
                _ => {}
            }
        }
        if let Some(miner) = &entry.miner {
            match registry.get(PluginKind::Miner, miner) {
                Ok(info) => creations.push(Creation {
                    info,
                    options: options(entry.miner_config_text()),
                    fields: (at("miner"), at("miner_config")),
                }),
                Err(e) => p.add(at("miner"), e),
            }
        } else if entry.miner_config.is_some() {
            p.add(at("miner_config"), "given without a miner");
        }
        for (j, earlier) in spec.grid[..i].iter().enumerate() {
            if earlier.loss == entry.loss && earlier.miner == entry.miner && earlier.variant == entry.variant {
                p.add(
                    at("variant"),
                    format!("grid[{i}] repeats grid[{j}]'s loss and miner; give one of them a distinct variant"),
                );
            }
        }
    }
    if let Some(timeout) = create_timeout.filter(|_| embedding_dim > 0) {
        create_all(&creations, timeout, p);
    }
}

/// A plugin of the grid to create during validation, and the fields its problems belong to:
/// (the plugin's, its configuration's).
struct Creation<'r> {
    info: &'r PluginInfo,
    options: CreateOptions,
    fields: (String, String),
}

/// Creates an instance of each plugin in child processes, so that a plugin that crashes or
/// hangs in `create` is a problem of the file, not the end of `dmlbench`. A refused
/// configuration is the configuration field's problem; a failed process is the plugin field's.
fn create_all(creations: &[Creation], timeout: std::time::Duration, p: &mut Problems) {
    let jobs: Vec<_> = creations.iter().map(|c| (c.info, c.options.clone())).collect();
    for (creation, result) in creations.iter().zip(create_all_in_child(&jobs, timeout)) {
        let (plugin_field, config_field) = creation.fields.clone();
        match result {
            Ok(()) => {}
            Err(e @ CreateError::Refused(_)) => p.add(config_field, describe_create_error(&e)),
            Err(e @ CreateError::Child(_)) => p.add(plugin_field, describe_create_error(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<FieldError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.ron");
        std::fs::write(&file, text).unwrap();
        load(&file, dir.path(), &Registry::default(), &Overrides::default()).unwrap_err().errors
    }

    /// A ResNet width past the bound is a field error; it overflowed the channel arithmetic.
    #[test]
    fn a_huge_resnet_width_is_a_field_error() {
        let text = |width: &str| {
            format!(
                r#"(name: "w", dataset: (format: cub, root: "x", synthetic: Some((classes: 8, per_class: 4, size: 32))),
                   model: (backbone: ResNet(depth: 50, base_width: {width})),
                   training: (epochs: 1, batch_size: 8, optimizer: Sgd(lr: 0.1)), grid: [(loss: "x")])"#
            )
        };
        let errors = problems(&text("18446744073709551615"));
        let width = errors.iter().find(|e| e.field == "model").expect("a width error");
        assert!(
            width.message.contains("backbone.base_width") && width.message.contains("between 1 and 1024"),
            "{width:?}"
        );
        let errors = problems(&text("64"));
        assert!(errors.iter().all(|e| e.field.starts_with("grid[")), "{errors:?}");
    }
}
