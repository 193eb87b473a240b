//! `dmlbench tune EXPERIMENT.ron`: equal tuning for every grid entry, on validation data only
//! (the protocol of Musgrave et al., "A Metric Learning Reality Check", ECCV 2020).
//!
//! The file marks search spaces with `Tune(...)` ([`space`]) and sets the budget in
//! `tuning: (trials: N, metric: "map_at_r", sampler: Default, batch: 1, seed: 0)`. For each
//! grid entry with a search space (every entry, when the optimiser has one):
//!
//! 1. the sampler ([`sampler`]) proposes `batch` trials from the objectives of the earlier
//!    ones; each trial is the entry with those values, a grid entry `variant: "tNNN"` of the
//!    generated experiment `<name>-tuning` (`results/<name>-tuning/experiments/trials.ron`),
//!    run for the first seed with `evaluation.test: false`: its cells (one per fold with
//!    cross-validation) never load the test split and record validation metrics only;
//! 2. a trial's objective is the tuning metric's mean over its cells, each at its selected
//!    epoch (`selection: Best`) or its last; a trial whose cell failed has none, is left out
//!    of the sampler's history and is not run again;
//! 3. after `trials` trials, the best of each entry is run with the experiment's seeds (or
//!    `--final-seeds`) and its test split, as the experiment `<name>`
//!    (`results/<name>-tuning/experiments/final.ron`, records in `results/<name>/`); each of
//!    its records holds the tuning (`tuning`: every trial's objective, the best, the values
//!    chosen).
//!
//! Every trial is cells of an ordinary experiment: recorded, resumable, lockable, runnable
//! with `dmlbench run FILE --cell ID` or `dmlbench sweep FILE --slurm`. The proposals are kept
//! in `experiments/proposals.json`; each is a function of the seed and the objectives before
//! it, so a run killed and run again continues with the same proposals.

pub mod sampler;
pub mod space;
mod trials;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use dmlbench_eval::MetricId;
use dmlbench_host::Registry;
use dmlbench_record::{GENERATED_EXPERIMENTS, TuningSummary, fingerprint, write_atomic};

use crate::experiment::plan::parse_spec;
use crate::experiment::spec::{ExperimentSpec, GridEntry, TuningSpec};
use crate::experiment::{self, Overrides};
use crate::train::runner::{RunOptions, RunSummary, run_plan};
use space::{Tunable, find_tunables, substitute};
use trials::{Proposal, Proposals, trial_label};

/// What `dmlbench tune` was asked.
pub struct TuneOptions {
    /// Results directory: trials go to `<results>/<name>-tuning/`, final runs to
    /// `<results>/<name>/`.
    pub results: PathBuf,
    /// Project root.
    pub root: PathBuf,
    /// Seeds of the final runs instead of the file's.
    pub final_seeds: Option<Vec<u64>>,
    /// Write the next trials and stop: their cells run elsewhere (a cluster), and `tune`
    /// runs again afterwards.
    pub no_run: bool,
    /// Changes applied to every generated experiment (epochs, device).
    pub overrides: Overrides,
}

/// How a tuning run ended.
pub enum TuneOutcome {
    /// Cells are written and wait to be run (`--no-run`, or cells another process holds):
    /// trials, or the final runs.
    TrialsPending {
        /// The experiment file of those cells.
        trials: PathBuf,
    },
    /// Every trial ran and the final runs were made.
    Done {
        /// The final experiment file.
        final_file: PathBuf,
        /// Each tuned entry's summary, by grid index.
        summaries: BTreeMap<usize, TuningSummary>,
        /// Whether every final cell completed.
        all_completed: bool,
    },
}

/// A parsed tuning file: its text, search spaces and settings.
struct Tuning {
    text: String,
    tunables: Vec<Tunable>,
    spec: ExperimentSpec,
    settings: TuningSpec,
    metric: MetricId,
    /// The grid entries tuned, each with the indices of its tunables (its own and the
    /// optimiser's).
    entries: BTreeMap<usize, Vec<usize>>,
}

/// `text` with every search space at its middle ([`space::Space::representative`]): the file
/// as checked before any trial.
fn middle_text(text: &str, tunables: &[Tunable]) -> String {
    let middles: Vec<f64> = tunables.iter().map(|t| t.space.representative()).collect();
    substitute(text, tunables, &middles)
}

impl Tuning {
    /// The tuning file `file`, whose `text` has been read.
    fn parse(file: &Path, text: String) -> anyhow::Result<Tuning> {
        let tunables =
            find_tunables(&text).map_err(|errors| anyhow::anyhow!("{}: {}", file.display(), errors.join("\n  ")))?;
        if tunables.is_empty() {
            bail!("{} has no search space (Tune(...)); `dmlbench run` runs it as it is", file.display());
        }
        let spec = parse_spec(&middle_text(&text, &tunables))
            .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message))?;
        let Some(settings) = spec.tuning.clone() else {
            bail!("{}: tuning is missing; add e.g. `tuning: (trials: 20, metric: \"map_at_r\")`", file.display());
        };
        anyhow::ensure!(settings.trials >= 1, "{}: tuning.trials must be at least 1", file.display());
        anyhow::ensure!(settings.batch >= 1, "{}: tuning.batch must be at least 1", file.display());
        anyhow::ensure!(
            spec.dataset.has_validation(),
            "{}: tuning scores trials on validation data only; set dataset.validation: KFold(folds: 4) or \
             dataset.validation_classes",
            file.display()
        );
        let metric: MetricId = settings
            .metric
            .parse()
            .map_err(|_| anyhow::anyhow!("{}: tuning.metric '{}' is not a metric", file.display(), settings.metric))?;
        let shared: Vec<usize> = (0..tunables.len()).filter(|&i| tunables[i].entry.is_none()).collect();
        let mut entries = BTreeMap::new();
        for index in 0..spec.grid.len() {
            let mut own: Vec<usize> = (0..tunables.len()).filter(|&i| tunables[i].entry == Some(index)).collect();
            own.extend(&shared);
            own.sort_unstable();
            if !own.is_empty() {
                entries.insert(index, own);
            }
        }
        Ok(Tuning { text, tunables, spec, settings, metric, entries })
    }

    /// The spec with entry `index` at `values` (one per tunable of that entry): its grid entry
    /// and its optimiser (when tuned). Other tunables take their representative values.
    fn entry_at(&self, index: usize, values: &[f64]) -> anyhow::Result<GridEntry> {
        let own = &self.entries[&index];
        let mut all: Vec<f64> = self.tunables.iter().map(|t| t.space.representative()).collect();
        for (&i, &v) in own.iter().zip(values) {
            all[i] = v;
        }
        let spec = parse_spec(&substitute(&self.text, &self.tunables, &all))
            .map_err(|e| anyhow::anyhow!("grid[{index}] with its trial values: {}", e.message))?;
        let mut entry = spec.grid[index].clone();
        if own.iter().any(|&i| self.tunables[i].entry.is_none()) {
            entry.optimizer = Some(spec.training.optimizer);
        }
        Ok(entry)
    }

    /// The chosen values of entry `index` by field path, as RON text.
    fn chosen(&self, index: usize, values: &[f64]) -> BTreeMap<String, String> {
        self.entries[&index]
            .iter()
            .zip(values)
            .map(|(&i, &v)| (self.tunables[i].path.clone(), self.tunables[i].space.value_text(v)))
            .collect()
    }
}

/// Writes `spec` as an experiment file at `path`, atomically.
fn write_experiment(spec: &ExperimentSpec, path: &Path, header: &str) -> anyhow::Result<()> {
    let body = ron::ser::to_string_pretty(spec, ron::ser::PrettyConfig::new())?;
    write_atomic(path, format!("{header}\n{body}\n").as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Runs the cells `only` of the experiment `file`, or every cell when it is empty (those
/// complete are skipped).
fn run_file(file: &Path, only: Vec<String>, registry: &Registry, options: &TuneOptions) -> anyhow::Result<RunSummary> {
    let plan = experiment::load(file, &options.root, registry, &options.overrides)?;
    let run = RunOptions { results: options.results.clone(), only, root: options.root.clone() };
    run_plan(&plan, &run)
}

/// The plan of a tuning file with every search space at its middle, whose cells are those its
/// final runs will have (`dmlbench run FILE --list-cells` on a tuning file); `None` for a
/// file without search spaces.
pub fn template_plan(
    file: &Path,
    root: &Path,
    registry: &Registry,
    overrides: &Overrides,
) -> anyhow::Result<Option<experiment::Plan>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if !text.contains("Tune(") {
        return Ok(None);
    }
    let tuning = Tuning::parse(file, text)?;
    // Relative paths in a file are taken from the project root, so the copy may be anywhere.
    let template = std::env::temp_dir().join(format!("dmlbench-template-{}.ron", std::process::id()));
    std::fs::write(&template, middle_text(&tuning.text, &tuning.tunables))?;
    let plan = experiment::load(&template, root, registry, overrides);
    let _ = std::fs::remove_file(&template);
    Ok(Some(plan?))
}

/// Tunes the experiment `file` (see the module docs).
pub fn tune(file: &Path, registry: &Registry, options: &TuneOptions) -> anyhow::Result<TuneOutcome> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let tuning = Tuning::parse(file, text)?;
    let name = format!("{}-tuning", tuning.spec.name);
    let experiments = options.results.join(&name).join(GENERATED_EXPERIMENTS);
    std::fs::create_dir_all(&experiments).with_context(|| format!("creating {}", experiments.display()))?;
    // The file as a whole must be valid before any trial: every plugin, every field.
    let template = experiments.join("template.ron");
    write_atomic(&template, middle_text(&tuning.text, &tuning.tunables).as_bytes())
        .with_context(|| format!("writing {}", template.display()))?;
    experiment::load(&template, &options.root, registry, &options.overrides)
        .map_err(|e| anyhow::anyhow!("{e}\n(with every Tune(...) at the middle of its space)"))?;

    let mut proposals = Proposals::load(&experiments.join("proposals.json"), fingerprint(tuning.text.as_bytes()))?;
    let trials_file = experiments.join("trials.ron");
    let header = format!("// The trials of `dmlbench tune {}`, written by it: do not edit.", file.display());
    // Run what has been proposed, score it, propose more; until every entry has its trials.
    let scores = loop {
        let mut scores = proposals.scores(&options.results, &name, &tuning.spec, tuning.metric)?;
        if !proposals.list.is_empty() {
            let spec = trials_spec(&tuning, &name, &proposals.list)?;
            write_experiment(&spec, &trials_file, &header)?;
            // Only trials without an outcome run: a failed trial stays failed, so a trial that
            // cannot train costs its cells once, not once per round (`dmlbench run` on the
            // trials file retries it on purpose). With --no-run someone else runs the cells.
            let pending: Vec<String> = (proposals.list.iter().zip(&scores))
                .filter(|(_, score)| score.is_none())
                .flat_map(|(p, _)| Proposals::cells(p, &tuning.spec, &name))
                .map(|key| key.id())
                .collect();
            if !options.no_run && !pending.is_empty() {
                if !run_file(&trials_file, pending, registry, options)?.busy.is_empty() {
                    return Ok(TuneOutcome::TrialsPending { trials: trials_file });
                }
                scores = proposals.scores(&options.results, &name, &tuning.spec, tuning.metric)?;
            }
        }
        // Cells run elsewhere: every trial needs an outcome before the next are proposed.
        if options.no_run && scores.iter().any(Option::is_none) {
            return Ok(TuneOutcome::TrialsPending { trials: trials_file });
        }
        let mut proposed = false;
        for (&index, own) in &tuning.entries {
            let made: Vec<usize> = (0..proposals.list.len()).filter(|&i| proposals.list[i].entry == index).collect();
            if made.len() >= tuning.settings.trials {
                continue;
            }
            let history: Vec<(Vec<f64>, f64)> = made
                .iter()
                .filter_map(|&i| scores[i].flatten().map(|score| (proposals.list[i].values.clone(), score)))
                .collect();
            let count = tuning.settings.batch.min(tuning.settings.trials - made.len());
            let spaces: Vec<_> = own.iter().map(|&i| tuning.tunables[i].space.clone()).collect();
            // The seed of a proposal: the tuning seed, the entry and how many came before.
            let seed = tuning.settings.seed ^ (index as u64).rotate_left(32) ^ made.len() as u64;
            let proposed_now = sampler::propose(tuning.settings.sampler, &spaces, &history, count, seed)?;
            for (offset, values) in proposed_now.into_iter().enumerate() {
                proposals.list.push(Proposal { entry: index, trial: made.len() + offset, values });
            }
            proposed = true;
        }
        if !proposed {
            break scores;
        }
        proposals.save()?;
    };

    // The best trial of every tuned entry, then the final runs.
    let mut spec = tuning.spec.clone();
    spec.tuning = None;
    if let Some(seeds) = &options.final_seeds {
        spec.seeds = seeds.clone();
    }
    let mut summaries = BTreeMap::new();
    for &index in tuning.entries.keys() {
        let trials: Vec<usize> = (0..proposals.list.len()).filter(|&i| proposals.list[i].entry == index).collect();
        let best = trials
            .iter()
            .copied()
            .filter(|&i| scores[i].flatten().is_some())
            .fold(None, |best: Option<usize>, i| match best {
                Some(b) if scores[b].flatten() >= scores[i].flatten() => Some(b),
                _ => Some(i),
            })
            .with_context(|| format!("every trial of grid[{index}] failed; see the records in {name}"))?;
        let summary = TuningSummary {
            experiment: name.clone(),
            metric: tuning.settings.metric.clone(),
            trials: trials.iter().map(|&i| (trial_label(proposals.list[i].trial), scores[i].flatten())).collect(),
            best: trial_label(proposals.list[best].trial),
            chosen: tuning.chosen(index, &proposals.list[best].values),
        };
        let mut entry = tuning.entry_at(index, &proposals.list[best].values)?;
        entry.tuned = Some(summary.clone());
        spec.grid[index] = entry;
        summaries.insert(index, summary);
    }
    // Entries without a search space are in `spec` as written.
    let final_file = experiments.join("final.ron");
    let header =
        format!("// The values `dmlbench tune {}` chose, run with the test split: written by it.", file.display());
    write_experiment(&spec, &final_file, &header)?;
    if options.no_run {
        return Ok(TuneOutcome::TrialsPending { trials: final_file });
    }
    let summary = run_file(&final_file, Vec::new(), registry, options)?;
    // Final cells that another process holds (a second `tune` of the same file) are its to
    // finish, as `dmlbench run` leaves them.
    if !summary.busy.is_empty() {
        return Ok(TuneOutcome::TrialsPending { trials: final_file });
    }
    Ok(TuneOutcome::Done { final_file, summaries, all_completed: summary.all_completed() })
}

/// The experiment of every proposal so far: `<name>-tuning`, one grid entry per trial, the
/// first seed, validation only.
fn trials_spec(tuning: &Tuning, name: &str, list: &[Proposal]) -> anyhow::Result<ExperimentSpec> {
    let mut spec = tuning.spec.clone();
    spec.name = name.to_string();
    spec.tuning = None;
    spec.seeds = vec![tuning.spec.seeds[0]];
    spec.evaluation.test = false;
    spec.grid = list
        .iter()
        .map(|p| {
            let mut entry = tuning.entry_at(p.entry, &p.values)?;
            entry.variant = trials::trial_variant(&entry.variant, p.trial);
            Ok(entry)
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(spec)
}
