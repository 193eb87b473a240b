//! From an experiment file to the cells to run, with every problem found at once.
//!
//! Parsing is in two stages, as a compiler would: RON syntax and structure first (serde
//! stops at the first error, with its line and column), then every semantic check, each
//! reported with its field path (`grid[2].miner: ...`), so a user fixes a file in one round.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use dmlbench_eval::MetricId;
use dmlbench_host::isolated::DEFAULT_CREATE_TIMEOUT;
use dmlbench_host::{PluginKind, Registry};
use dmlbench_models::Backend;
use dmlbench_record::{CellKey, TuningSummary, fingerprint};

use super::checks::{Problems, Resolved, validate};
use super::spec::{EvaluationSpec, ExperimentSpec, MemorySpec, OptimizerSpec};

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
    /// The cross-batch memory, if the grid entry asks for one.
    pub memory: Option<MemorySpec>,
    /// The network's optimiser: the grid entry's, else `training.optimizer`.
    pub optimizer: OptimizerSpec,
    /// The tuning that chose the grid entry's values, if `dmlbench tune` wrote it.
    pub tuned: Option<TuningSummary>,
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
    /// The pretrained backbone weights (`model.weights`), resolved against the root.
    pub weights: Option<PathBuf>,
    /// Recall@K values, resolved from the dataset when the file left them empty.
    pub k: Vec<usize>,
    /// The backend and device cells train on (`training.device`, or `--device`).
    pub backend: Backend,
    /// The validation metric that selects the reported epoch (`evaluation.selection`);
    /// `None` reports the last epoch.
    pub selection: Option<MetricId>,
    /// Every cell, in grid order then seed order.
    pub cells: Vec<Cell>,
    /// The overrides it was made with (passed on to cell processes).
    pub overrides: Overrides,
    /// Content fingerprint of the library of every plugin the grid names, by qualified id
    /// (`loss:spce`): what records keep, and compare to find the cells a plugin change made
    /// stale.
    pub libraries: BTreeMap<String, String>,
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
    /// Keep completed records whose plugins changed since they were written, instead of
    /// running their cells again.
    pub keep_stale: bool,
}

/// The code fingerprint of every plugin `cells` use, by qualified id ([`code_fingerprint`]).
fn library_fingerprints(cells: &[Cell], registry: &Registry, root: &Path) -> BTreeMap<String, String> {
    let mut libraries = BTreeMap::new();
    for cell in cells {
        let choices =
            std::iter::once((PluginKind::Loss, &cell.loss)).chain(cell.miner.iter().map(|m| (PluginKind::Miner, m)));
        for (kind, choice) in choices {
            let Ok(info) = registry.get(kind, &choice.id) else { continue };
            if !libraries.contains_key(&info.qualified_id())
                && let Some(code) = code_fingerprint(info.source.crate_dir.as_deref(), &info.source.library, root)
            {
                libraries.insert(info.qualified_id(), code);
            }
        }
    }
    libraries
}

/// What a plugin's results depend on, as a fingerprint. For a plugin crate under `plugins/`,
/// its sources and the SDK's (every file's path relative to the root, and its bytes): the
/// same on every machine and checkout, so committed records are not stale on a fresh clone,
/// which a hash of the built library (it holds the build directory's path) would make them.
/// For a prebuilt library (`DMLBENCH_PLUGIN_PATH`), the library's bytes. `None` when they
/// cannot be read (its cells are then never called stale).
pub fn code_fingerprint(crate_dir: Option<&Path>, library: &Path, root: &Path) -> Option<String> {
    let Some(crate_dir) = crate_dir else {
        return std::fs::read(library).ok().map(|bytes| fingerprint(&bytes));
    };
    let mut content = Vec::new();
    for file in dmlbench_host::source_files(&dmlbench_host::plugin_sources(root, crate_dir)) {
        let name = file.strip_prefix(root).unwrap_or(&file);
        content.extend_from_slice(name.to_string_lossy().as_bytes());
        content.push(0);
        content.extend_from_slice(&std::fs::read(&file).ok()?);
        content.push(0);
    }
    Some(fingerprint(&content))
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
    // Left out when absent, so that cells without a memory keep the fingerprints they had
    // before memories existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<&'a MemorySpec>,
    seed: u64,
    // Only for a fold run, as `memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    fold: Option<u32>,
    // Only for an entry with its own optimiser (it then replaces training's), as `memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    optimizer: Option<&'a OptimizerSpec>,
}

/// An experiment file's text as a spec (syntax and structure only; [`load`] checks the rest).
pub fn parse_spec(text: &str) -> Result<ExperimentSpec, FieldError> {
    // `implicit_some`: optional fields may be written as plain values (`miner: "batch_hard"`)
    // as well as `Some(...)`.
    let options = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    options.from_str(text).map_err(|e| FieldError {
        field: String::new(),
        message: format!("line {}, column {}: {}", e.span.start.line, e.span.start.col, e.code),
    })
}

/// Reads and validates an experiment file; `root` is the project root (relative paths in the
/// file are taken from it) and `registry` the loaded plugins.
pub fn load(file: &Path, root: &Path, registry: &Registry, overrides: &Overrides) -> Result<Plan, PlanError> {
    let fail = |errors: Vec<FieldError>| PlanError { file: file.to_path_buf(), errors };
    let text = std::fs::read_to_string(file)
        .map_err(|e| fail(vec![FieldError { field: String::new(), message: format!("cannot read: {e}") }]))?;
    if text.contains("Tune(")
        && let Ok(tunables) = crate::tune::space::find_tunables(&text)
        && let Some(first) = tunables.first()
    {
        return Err(fail(vec![FieldError {
            field: first.path.clone(),
            message: format!(
                "a search space (Tune(...)): this file is for `dmlbench tune {}`, which runs its trials and then \
                 the chosen values",
                file.display()
            ),
        }]));
    }
    let mut spec = parse_spec(&text).map_err(|e| fail(vec![e]))?;
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
    let Some(Resolved { backend, k, selection }) = validate(&spec, root, registry, create_timeout, &mut problems)
    else {
        return Err(fail(problems.0));
    };
    let dataset_root = root.join(&spec.dataset.root);
    let weights = spec.model.weights.as_ref().map(|w| root.join(w));
    let mut cells: Vec<Cell> = Vec::new();
    // Cell ids name record and checkpoint files, so two grid entries must not share one.
    let mut first_entry_of_id: BTreeMap<String, usize> = BTreeMap::new();
    for (index, entry) in spec.grid.iter().enumerate() {
        let loss = PluginChoice { id: entry.loss.clone(), config: entry.loss_config_text() };
        let miner = entry.miner.as_ref().map(|id| PluginChoice { id: id.clone(), config: entry.miner_config_text() });
        // A cross-validated entry runs each seed once per fold.
        let folds = spec.dataset.fold_ids();
        for (seed, fold) in spec.seeds.iter().flat_map(|&seed| folds.iter().map(move |&fold| (seed, fold))) {
            let key = CellKey {
                dataset: spec.dataset.format.name().to_string(),
                recipe: spec.name.clone(),
                loss: loss.id.clone(),
                miner: miner.as_ref().map(|m| m.id.clone()),
                variant: entry.variant.clone(),
                seed,
                fold,
            };
            let config = CellConfig {
                dataset: &spec.dataset,
                model: &spec.model,
                training: &spec.training,
                evaluation: &spec.evaluation,
                k: &k,
                loss: &loss,
                miner: miner.as_ref(),
                memory: entry.memory.as_ref(),
                seed,
                fold,
                optimizer: entry.optimizer.as_ref(),
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
            cells.push(Cell {
                key,
                loss: loss.clone(),
                miner: miner.clone(),
                memory: entry.memory,
                optimizer: entry.optimizer.unwrap_or(spec.training.optimizer),
                tuned: entry.tuned.clone(),
                config,
                fingerprint,
            });
        }
    }
    if !problems.0.is_empty() {
        return Err(fail(problems.0));
    }
    let libraries = library_fingerprints(&cells, registry, root);
    Ok(Plan {
        libraries,
        file: file.to_path_buf(),
        file_fingerprint: fingerprint(text.as_bytes()),
        root: root.to_path_buf(),
        dataset_root,
        weights,
        k,
        backend,
        selection,
        cells,
        spec,
        overrides: overrides.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugins_code_fingerprint_follows_its_sources_and_the_sdk_only() {
        let make = |dir: &Path| {
            for (file, text) in [
                ("plugins/sdk/src/lib.rs", "sdk"),
                ("plugins/abi/src/lib.rs", "abi"),
                ("plugins/losses/x/src/lib.rs", "x"),
                ("plugins/losses/y/src/lib.rs", "y"),
                ("Cargo.lock", "lock"),
            ] {
                std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
                std::fs::write(dir.join(file), text).unwrap();
            }
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        make(a.path());
        make(b.path());
        let code =
            |root: &Path| code_fingerprint(Some(&root.join("plugins/losses/x")), Path::new("unused"), root).unwrap();
        let first = code(a.path());
        assert_eq!(code(b.path()), first, "the same sources in another checkout");
        let write = |file: &str, text: &str| {
            std::fs::create_dir_all(a.path().join(file).parent().unwrap()).unwrap();
            std::fs::write(a.path().join(file), text).unwrap();
        };
        write("plugins/losses/y/src/lib.rs", "y changed");
        write("plugins/losses/x/target/debug/libx.so", "built");
        write("Cargo.lock", "another crate added");
        assert_eq!(code(a.path()), first, "other plugins, build output and the lock file do not count");
        write("plugins/losses/x/src/lib.rs", "x changed");
        let changed = code(a.path());
        assert_ne!(changed, first);
        write("plugins/sdk/src/lib.rs", "sdk changed");
        assert_ne!(code(a.path()), changed, "the SDK is part of every plugin's code");
        // A prebuilt library is its bytes.
        write("lib/libz.so", "z");
        let z = code_fingerprint(None, &a.path().join("lib/libz.so"), a.path());
        assert_eq!(z, Some(fingerprint(b"z")));
        assert_eq!(code_fingerprint(None, &a.path().join("lib/missing.so"), a.path()), None);
    }

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
