//! The semantic checks of an experiment file, one function per part of the file (name,
//! dataset, model, training, evaluation, grid). Each adds every problem it finds, with its
//! field path, and returns what it resolved into typed values: after these checks nothing
//! parses a string of the file again.

use std::path::Path;

use dmlbench_datasets::Format;
use dmlbench_eval::MetricId;
use dmlbench_host::errors::describe;
use dmlbench_host::isolated::{CreateError, create_all_in_child, describe_create_error};
use dmlbench_host::{CreateOptions, PluginInfo, PluginKind, Registry};
use dmlbench_models::Backend;

use super::device::parse_device;
use super::plan::FieldError;
use super::spec::{
    DatasetSpec, EvaluationSpec, ExperimentSpec, GridEntry, MemorySpec, OptimizerSpec, SamplerSpec, ScheduleSpec,
    SelectionSpec, TrainingSpec, default_k,
};

/// The most cross-validation folds a dataset may be cut into (MLRC uses 4).
pub const MAX_FOLDS: usize = 20;

/// Collects problems with their field paths.
#[derive(Default)]
pub(super) struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.add(field, message());
        }
    }
}

/// What a valid file resolves to beside its cells.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Resolved {
    /// The backend and device of `training.device`.
    pub backend: Backend,
    /// Recall@K values: the file's, or the dataset's usual ones.
    pub k: Vec<usize>,
    /// The validation metric that selects the reported epoch; `None` for the last epoch.
    pub selection: Option<MetricId>,
}

/// Checks `spec`, creating each plugin with its configuration (in a child process, within
/// `create_timeout`) unless that is `None`. Returns the resolved values when nothing was
/// wrong.
pub(super) fn validate(
    spec: &ExperimentSpec,
    root: &Path,
    registry: &Registry,
    create_timeout: Option<std::time::Duration>,
    p: &mut Problems,
) -> Option<Resolved> {
    check_name(&spec.name, p);
    check_dataset(&spec.dataset, root, p);
    check_model(spec, root, p);
    let backend = check_training(&spec.training, p);
    let (k, selection) = check_evaluation(&spec.evaluation, &spec.dataset, p);
    check_seeds(&spec.seeds, p);
    check_grid(spec, registry, create_timeout, p);
    if !p.0.is_empty() {
        return None;
    }
    Some(Resolved { backend: backend?, k, selection: selection? })
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// The experiment's name names its results directory.
fn check_name(name: &str, p: &mut Problems) {
    p.check(
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !name.starts_with('.'),
        "name",
        || format!("'{name}' must be letters, digits, '-', '_' or '.' (it names the results directory)"),
    );
}

fn check_dataset(d: &DatasetSpec, root: &Path, p: &mut Problems) {
    if d.format == Format::Features {
        p.add("dataset.format", "training needs images; evaluate feature files with `dmlbench eval`");
    }
    if d.synthetic.is_none() && !root.join(&d.root).exists() {
        let download = match dmlbench_download::catalogue::dataset(&d.format.to_string()) {
            Some(source) => format!(
                "`dmlbench data download {}` puts {} in data/{} (--to for another directory), or ",
                source.name, source.title, source.dir
            ),
            None => String::new(),
        };
        p.add(
            "dataset.root",
            format!(
                "{} does not exist ({download}add `synthetic: Some(...)` to generate a synthetic one)",
                root.join(&d.root).display()
            ),
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
    if let Some(folds) = d.folds() {
        p.check((2..=MAX_FOLDS).contains(&folds), "dataset.validation.folds", || {
            format!("must be 2–{MAX_FOLDS}, got {folds}")
        });
        p.check(d.validation_classes == 0.0, "dataset.validation", || {
            format!(
                "cross-validation holds out its own folds; remove dataset.validation_classes ({}) or the folds",
                d.validation_classes
            )
        });
    }
    let t = d.transforms;
    p.check(t.crop >= 8 && t.crop <= t.resize, "dataset.transforms", || {
        format!("crop ({}) must be at least 8 and at most resize ({})", t.crop, t.resize)
    });
}

fn check_model(spec: &ExperimentSpec, root: &Path, p: &mut Problems) {
    if let Err(e) = spec.model.validate() {
        p.add("model", e.to_string());
    }
    if let Some(weights) = &spec.model.weights {
        let path = root.join(weights);
        p.check(path.is_file(), "model.weights", || {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            match dmlbench_download::catalogue::WEIGHTS.iter().find(|w| w.file == name) {
                Some(w) => format!(
                    "{} not found; `dmlbench weights download {}` puts torchvision's ImageNet weights in \
                     weights/{} (--to for another directory)",
                    path.display(),
                    w.name,
                    w.file
                ),
                None => format!(
                    "{} not found; `dmlbench weights download resnet18|resnet34|resnet50` downloads \
                     torchvision's ImageNet weights",
                    path.display()
                ),
            }
        });
    }
}

/// Checks the training settings; returns the device's backend when it is one this build has.
fn check_training(tr: &TrainingSpec, p: &mut Problems) -> Option<Backend> {
    p.check(tr.epochs >= 1, "training.epochs", || "must be at least 1".into());
    p.check(tr.batch_size >= 2, "training.batch_size", || format!("must be at least 2, got {}", tr.batch_size));
    if let SamplerSpec::MPerClass { m } = tr.sampler {
        p.check(m >= 2, "training.sampler.m", || format!("needs at least 2 images per class, got {m}"));
        p.check(tr.batch_size.is_multiple_of(m.max(1)), "training.batch_size", || {
            format!("{} is not divisible by the sampler's m = {m}", tr.batch_size)
        });
    }
    check_optimizer(&tr.optimizer, "training.optimizer", p);
    if let ScheduleSpec::Step { every_epochs, gamma } = tr.schedule {
        p.check(every_epochs >= 1, "training.schedule.every_epochs", || "must be at least 1".into());
        p.check(positive(gamma), "training.schedule.gamma", || format!("must be positive, got {gamma}"));
    }
    p.check(tr.workers >= 1, "training.workers", || "must be at least 1".into());
    p.check(tr.prefetch >= 1, "training.prefetch", || "must be at least 1".into());
    p.check(tr.stall_timeout.is_finite() && tr.stall_timeout > 0.0, "training.stall_timeout", || {
        format!("must be a positive number of seconds, not {}", tr.stall_timeout)
    });
    match parse_device(&tr.device) {
        Ok(backend) => Some(backend),
        Err(e) => {
            p.add("training.device", describe(&e));
            None
        }
    }
}

/// Checks an optimiser's settings; `at` is its field (`training.optimizer`, `grid[2].optimizer`).
fn check_optimizer(optimizer: &OptimizerSpec, at: &str, p: &mut Problems) {
    p.check(positive(optimizer.lr()), &format!("{at}.lr"), || format!("must be positive, got {}", optimizer.lr()));
    let (momentum, weight_decay) = match *optimizer {
        OptimizerSpec::Sgd { momentum, weight_decay, .. } | OptimizerSpec::RmsProp { momentum, weight_decay, .. } => {
            (momentum, weight_decay)
        }
        OptimizerSpec::AdamW { weight_decay, .. } => (0.0, weight_decay),
    };
    p.check((0.0..1.0).contains(&momentum), &format!("{at}.momentum"), || format!("must be in [0, 1), got {momentum}"));
    p.check(weight_decay >= 0.0 && weight_decay.is_finite(), &format!("{at}.weight_decay"), || {
        format!("must be non-negative, got {weight_decay}")
    });
    // The optimisers' own constants: a decay rate outside [0, 1) or a non-positive ε trains on
    // without error and gives meaningless results, or fails much later with a misleading one.
    let (rates, eps) = match *optimizer {
        OptimizerSpec::AdamW { beta1, beta2, eps, .. } => (vec![("beta1", beta1), ("beta2", beta2)], Some(eps)),
        OptimizerSpec::RmsProp { alpha, eps, .. } => (vec![("alpha", alpha)], Some(eps)),
        OptimizerSpec::Sgd { .. } => (vec![], None),
    };
    for (field, value) in rates {
        p.check((0.0..1.0).contains(&value), &format!("{at}.{field}"), || format!("must be in [0, 1), got {value}"));
    }
    if let Some(eps) = eps {
        p.check(positive(eps), &format!("{at}.eps"), || format!("must be positive, got {eps}"));
    }
}

/// Checks the evaluation settings; returns the K values and, when the selection metric is
/// valid, the selection (`Some(None)` for the last epoch).
fn check_evaluation(ev: &EvaluationSpec, d: &DatasetSpec, p: &mut Problems) -> (Vec<usize>, Option<Option<MetricId>>) {
    p.check(ev.k.iter().all(|&k| k >= 1), "evaluation.k", || "every K must be at least 1".into());
    p.check(ev.batch_size >= 1, "evaluation.batch_size", || "must be at least 1".into());
    p.check(ev.test || d.has_validation(), "evaluation.test", || {
        "a cell that skips the test split needs a validation split to report: set dataset.validation_classes or \
         dataset.validation"
            .into()
    });
    let k = if ev.k.is_empty() { default_k(d.format) } else { ev.k.clone() };
    let SelectionSpec::Best { metric } = &ev.selection else {
        return (k, Some(None));
    };
    p.check(d.has_validation(), "evaluation.selection", || {
        "Best selection needs held-out validation classes: set dataset.validation_classes (e.g. 0.2) or \
         dataset.validation: KFold(folds: 4)"
            .into()
    });
    let measured = MetricId::all(&k);
    let known = || measured.iter().map(MetricId::key).collect::<Vec<_>>().join(", ");
    let id = match metric.parse::<MetricId>() {
        Ok(id) if measured.contains(&id) => id,
        _ => {
            p.add("evaluation.selection.metric", format!("unknown metric '{metric}'; one of {}", known()));
            return (k, None);
        }
    };
    if id.needs_clustering() && !ev.cluster {
        p.add("evaluation.selection.metric", format!("'{metric}' needs evaluation.cluster: true"));
        return (k, None);
    }
    (k, Some(Some(id)))
}

fn check_seeds(seeds: &[u64], p: &mut Problems) {
    p.check(!seeds.is_empty(), "seeds", || "give at least one seed".into());
    let mut seen = seeds.to_vec();
    seen.sort_unstable();
    seen.dedup();
    p.check(seen.len() == seeds.len(), "seeds", || "seeds repeat".into());
}

/// Checks every grid entry: its plugins exist and fit together, no entry repeats another, and
/// (unless `create_timeout` is `None`) each plugin accepts its configuration.
fn check_grid(
    spec: &ExperimentSpec,
    registry: &Registry,
    create_timeout: Option<std::time::Duration>,
    p: &mut Problems,
) {
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
            base_lr: entry.optimizer.as_ref().unwrap_or(&spec.training.optimizer).lr(),
        };
        if let Some(optimizer) = &entry.optimizer {
            check_optimizer(optimizer, &at("optimizer"), p);
        }
        let loss = match registry.get(PluginKind::Loss, &entry.loss) {
            Ok(info) => Some(info),
            Err(e) => {
                p.add(at("loss"), e.to_string());
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
                Err(e) => p.add(at("miner"), e.to_string()),
            }
        } else if entry.miner_config.is_some() {
            p.add(at("miner_config"), "given without a miner");
        }
        if let Some(memory) = entry.memory {
            check_memory(memory, spec.training.batch_size, entry, registry, &at, p);
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

/// A memory holds at least one batch (PML asserts as much), and its loss and miner take
/// reference embeddings.
fn check_memory(
    memory: MemorySpec,
    batch_size: usize,
    entry: &GridEntry,
    registry: &Registry,
    at: &dyn Fn(&str) -> String,
    p: &mut Problems,
) {
    p.check(memory.size >= batch_size.max(1), &at("memory.size"), || {
        format!("a memory of {} cannot hold a batch of {batch_size}; give it at least the batch size", memory.size)
    });
    let plugins = [(PluginKind::Loss, Some(&entry.loss), "loss"), (PluginKind::Miner, entry.miner.as_ref(), "miner")];
    for (kind, id, field) in plugins {
        let Some(info) = id.and_then(|id| registry.get(kind, id).ok()) else { continue };
        p.check(info.capabilities.accepts_references, &at(field), || {
            format!(
                "{kind} '{}' does not take reference embeddings, so it cannot use a memory (plugins that can say \
                 \"accepts references\" in `dmlbench plugins list`)",
                info.id
            )
        });
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

    fn parse<T: serde::de::DeserializeOwned>(text: &str) -> T {
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The fields with problems, in order, after running `check` on a fresh list.
    fn fields(check: impl FnOnce(&mut Problems)) -> Vec<String> {
        let mut p = Problems::default();
        check(&mut p);
        p.0.into_iter().map(|e| e.field).collect()
    }

    fn messages(check: impl FnOnce(&mut Problems)) -> String {
        let mut p = Problems::default();
        check(&mut p);
        p.0.into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn names_are_safe_directory_names() {
        for good in ["default", "paper-cub_1.0"] {
            assert!(fields(|p| check_name(good, p)).is_empty(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "..", "cub\u{1b}"] {
            assert_eq!(fields(|p| check_name(bad, p)), ["name"], "{bad:?}");
        }
    }

    #[test]
    fn dataset_rules() {
        let dir = tempfile::tempdir().unwrap();
        let check = |text: &str| fields(|p| check_dataset(&parse(text), dir.path(), p));
        let synthetic = "synthetic: Some((classes: 8, per_class: 4, size: 32))";
        assert!(check(&format!("(format: cub, root: \"x\", {synthetic})")).is_empty());
        assert_eq!(check("(format: cub, root: \"missing\")"), ["dataset.root"]);
        let hint = messages(|p| check_dataset(&parse("(format: cub, root: \"missing\")"), dir.path(), p));
        assert!(hint.contains("`dmlbench data download cub` puts CUB-200-2011 in data/CUB_200_2011"), "{hint}");
        assert_eq!(check(&format!("(format: features, root: \"x\", {synthetic})")), ["dataset.format"]);
        assert_eq!(
            check("(format: cub, root: \"x\", synthetic: Some((classes: 3, per_class: 1, size: 15)))"),
            ["dataset.synthetic.classes", "dataset.synthetic.per_class", "dataset.synthetic.size"]
        );
        assert_eq!(
            check(&format!("(format: cub, root: \"x\", {synthetic}, validation_classes: 0.9)")),
            ["dataset.validation_classes"]
        );
        assert_eq!(
            check(&format!("(format: cub, root: \"x\", {synthetic}, transforms: (resize: 32, crop: 40))")),
            ["dataset.transforms"]
        );
    }

    #[test]
    fn model_weights_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let spec = |weights: &str| -> ExperimentSpec {
            parse(&format!(
                "(name: \"m\", dataset: (format: cub, root: \"x\"), training: (epochs: 1, batch_size: 8, \
                 optimizer: Sgd(lr: 0.1)), model: (backbone: ResNet50, weights: Some(\"{weights}\")), grid: [])"
            ))
        };
        let missing = messages(|p| check_model(&spec("w/r18.pth"), dir.path(), p));
        assert!(missing.starts_with("model.weights: ") && missing.contains("r18.pth not found"), "{missing}");
        let named = messages(|p| check_model(&spec("weights/resnet50-0676ba61.pth"), dir.path(), p));
        assert!(named.contains("`dmlbench weights download resnet50` puts"), "{named}");
        std::fs::create_dir(dir.path().join("w")).unwrap();
        std::fs::write(dir.path().join("w/r18.pth"), b"x").unwrap();
        assert!(fields(|p| check_model(&spec("w/r18.pth"), dir.path(), p)).is_empty());
    }

    fn training(extra: &str) -> TrainingSpec {
        parse(&format!("(epochs: 1, batch_size: 8, optimizer: Sgd(lr: 0.1){extra})"))
    }

    #[test]
    fn training_rules() {
        let check = |tr: TrainingSpec| fields(|p| _ = check_training(&tr, p));
        assert!(check(training("")).is_empty());
        assert_eq!(
            check(parse("(epochs: 0, batch_size: 1, optimizer: Sgd(lr: 0.1))")),
            ["training.epochs", "training.batch_size"]
        );
        assert_eq!(check(training(", sampler: MPerClass(m: 3)")), ["training.batch_size"]);
        assert_eq!(check(training(", sampler: MPerClass(m: 1)")), ["training.sampler.m"]);
        assert_eq!(
            check(parse("(epochs: 1, batch_size: 8, optimizer: Sgd(lr: 0.0, momentum: 1.0, weight_decay: -1.0))")),
            ["training.optimizer.lr", "training.optimizer.momentum", "training.optimizer.weight_decay"]
        );
        assert_eq!(
            check(parse("(epochs: 1, batch_size: 8, optimizer: AdamW(lr: 0.1, beta2: 1.0, eps: 0.0))")),
            ["training.optimizer.beta2", "training.optimizer.eps"]
        );
        assert_eq!(
            check(parse("(epochs: 1, batch_size: 8, optimizer: RmsProp(lr: 0.1, alpha: -0.1))")),
            ["training.optimizer.alpha"]
        );
        assert_eq!(
            check(training(", schedule: Step(every_epochs: 0, gamma: 0.0)")),
            ["training.schedule.every_epochs", "training.schedule.gamma"]
        );
        assert_eq!(check(training(", workers: 0, prefetch: 0")), ["training.workers", "training.prefetch"]);
    }

    #[test]
    fn the_device_is_resolved_once_here() {
        let mut p = Problems::default();
        assert_eq!(check_training(&training(""), &mut p), Some(Backend::Flex));
        assert_eq!(check_training(&training(", device: \"gpu\""), &mut p), None);
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.0[0].field, "training.device");
        assert!(p.0[0].message.contains("unknown device 'gpu'"), "{}", p.0[0].message);
    }

    #[test]
    fn evaluation_resolves_k_and_the_selection_metric() {
        let with_validation: DatasetSpec = parse("(format: cub, root: \"x\", validation_classes: 0.2)");
        let sop: DatasetSpec = parse("(format: sop, root: \"x\", validation_classes: 0.2)");
        let run = |ev: &str, d: &DatasetSpec| {
            let mut p = Problems::default();
            let resolved = check_evaluation(&parse(ev), d, &mut p);
            (resolved, p.0.into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>())
        };
        assert_eq!(run("()", &with_validation), ((vec![1, 2, 4, 8], Some(None)), vec![]));
        assert_eq!(run("()", &sop).0.0, [1, 10, 100, 1000]);
        assert_eq!(
            run("(selection: Best(metric: \"map_at_r\"))", &with_validation),
            ((vec![1, 2, 4, 8], Some(Some(MetricId::MapAtR))), vec![])
        );
        assert_eq!(
            run("(k: [1, 5], selection: Best(metric: \"recall_at_5\"))", &with_validation).0.1,
            Some(Some(MetricId::RecallAt(5)))
        );
        let (resolved, errors) = run("(k: [1, 2], selection: Best(metric: \"recall_at_4\"))", &with_validation);
        assert_eq!(resolved.1, None);
        assert_eq!(
            errors,
            ["evaluation.selection.metric: unknown metric 'recall_at_4'; one of recall_at_1, recall_at_2, \
             precision_at_1, r_precision, map_at_r, nmi, ami"]
        );
        let (_, errors) = run("(cluster: false, selection: Best(metric: \"ami\"))", &with_validation);
        assert_eq!(errors, ["evaluation.selection.metric: 'ami' needs evaluation.cluster: true"]);
        let (_, errors) = run("(selection: Best(metric: \"nmi\"))", &parse("(format: cub, root: \"x\")"));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("evaluation.selection: Best selection needs held-out"), "{errors:?}");
        let (_, errors) = run("(k: [0], batch_size: 0)", &with_validation);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn seeds_are_given_and_distinct() {
        assert!(fields(|p| check_seeds(&[0, 1, 2], p)).is_empty());
        assert_eq!(fields(|p| check_seeds(&[], p)), ["seeds"]);
        assert_eq!(messages(|p| check_seeds(&[3, 1, 3], p)), "seeds: seeds repeat");
    }

    #[test]
    fn grid_rules_without_plugins() {
        let spec = |grid: &str| -> ExperimentSpec {
            parse(&format!(
                "(name: \"g\", dataset: (format: cub, root: \"x\"), training: (epochs: 1, batch_size: 8, \
                 optimizer: Sgd(lr: 0.1)), grid: {grid})"
            ))
        };
        let check = |grid: &str| fields(|p| check_grid(&spec(grid), &Registry::default(), None, p));
        assert_eq!(check("[]"), ["grid"]);
        assert_eq!(check("[(loss: \"nope\")]"), ["grid[0].loss"]);
        assert_eq!(check("[(loss: \"nope\", miner_config: (margin: 1.0))]"), ["grid[0].loss", "grid[0].miner_config"]);
        assert_eq!(
            check("[(loss: \"a\", miner: \"m\"), (loss: \"a\", miner: \"m\")]"),
            ["grid[0].loss", "grid[0].miner", "grid[1].loss", "grid[1].miner", "grid[1].variant"]
        );
        assert_eq!(check("[(loss: \"a\"), (loss: \"a\", variant: \"v2\")]"), ["grid[0].loss", "grid[1].loss"]);
        // A memory must hold a batch (8 here).
        assert_eq!(check("[(loss: \"a\", memory: Some((size: 8)))]"), ["grid[0].loss"]);
        assert_eq!(check("[(loss: \"a\", memory: Some((size: 7)))]"), ["grid[0].loss", "grid[0].memory.size"]);
    }
}
