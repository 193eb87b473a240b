//! The trials proposed so far (`experiments/proposals.json` beside the tuning records) and
//! their objectives, read from the trials' records.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use dmlbench_eval::MetricId;
use dmlbench_record::{CellKey, CellRecord, CellStatus, Selection, write_atomic};
use serde::{Deserialize, Serialize};

use crate::experiment::spec::ExperimentSpec;

/// One trial: a grid entry at some values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The grid entry.
    pub entry: usize,
    /// Its number among the entry's trials, from 0.
    pub trial: usize,
    /// One value per tunable of the entry (see [`super::space::Space::value_text`]).
    pub values: Vec<f64>,
}

/// Every proposal of a tuning run, in the order made.
pub struct Proposals {
    path: PathBuf,
    /// Fingerprint of the tuning file they were proposed for.
    source: String,
    /// The proposals.
    pub list: Vec<Proposal>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    source: String,
    proposals: Vec<Proposal>,
}

/// `t007`: a trial's label.
pub fn trial_label(trial: usize) -> String {
    format!("t{trial:03}")
}

/// The variant of a trial of an entry whose own variant is `variant`.
pub fn trial_variant(variant: &str, trial: usize) -> String {
    if variant.is_empty() { trial_label(trial) } else { format!("{variant}-{}", trial_label(trial)) }
}

impl Proposals {
    /// The proposals at `path`, made for a tuning file of fingerprint `source`; none when the
    /// file does not exist. Refuses proposals made for another version of the file.
    pub fn load(path: &Path, source: String) -> anyhow::Result<Proposals> {
        let list = match std::fs::read_to_string(path) {
            Ok(text) => {
                let saved: Saved =
                    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
                anyhow::ensure!(
                    saved.source == source,
                    "{} holds trials proposed for another version of the tuning file; move {} away to start the \
                     tuning over",
                    path.display(),
                    path.parent().and_then(Path::parent).unwrap_or(path).display()
                );
                saved.proposals
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Proposals { path: path.to_path_buf(), source, list })
    }

    /// Writes them, atomically.
    pub fn save(&self) -> anyhow::Result<()> {
        let saved = Saved { source: self.source.clone(), proposals: self.list.clone() };
        write_atomic(&self.path, serde_json::to_string_pretty(&saved)?.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The cells of proposal `p`, one per fold: `spec` is the tuning experiment, `name` its
    /// trials' experiment.
    pub fn cells(p: &Proposal, spec: &ExperimentSpec, name: &str) -> Vec<CellKey> {
        let entry = &spec.grid[p.entry];
        spec.dataset
            .fold_ids()
            .into_iter()
            .map(|fold| CellKey {
                dataset: spec.dataset.format.name().to_string(),
                recipe: name.to_string(),
                loss: entry.loss.clone(),
                miner: entry.miner.clone(),
                variant: trial_variant(&entry.variant, p.trial),
                seed: spec.seeds[0],
                fold,
            })
            .collect()
    }

    /// Each proposal's objective: `None` while some of its cells has no completed record,
    /// `Some(None)` when one failed, else the mean over its cells of `metric` on validation at
    /// the selected epoch. `spec` is the tuning experiment, `name` its trials' experiment.
    pub fn scores(
        &self,
        results: &Path,
        name: &str,
        spec: &ExperimentSpec,
        metric: MetricId,
    ) -> anyhow::Result<Vec<Option<Option<f64>>>> {
        self.list
            .iter()
            .map(|p| {
                let mut values = Vec::new();
                for key in Proposals::cells(p, spec, name) {
                    let path = results.join(name).join(format!("{}.ron", key.id()));
                    let Ok(record) = CellRecord::load(&path) else { return Ok(None) };
                    match record.status {
                        CellStatus::Failed { .. } => return Ok(Some(None)),
                        CellStatus::Running => return Ok(None),
                        CellStatus::Completed => {
                            values.push(selected_validation(&record, metric).with_context(|| {
                                format!("{}: no validation {metric} at its selected epoch", path.display())
                            })?)
                        }
                    }
                }
                Ok(Some(Some(values.iter().sum::<f64>() / values.len() as f64)))
            })
            .collect()
    }
}

/// `metric` on validation at the record's selected epoch (`Best`'s, or the last evaluated).
pub fn selected_validation(record: &CellRecord, metric: MetricId) -> Option<f64> {
    let epoch = match &record.selection {
        Selection::Best { epoch: Some(e), .. } => record.epochs.iter().find(|r| r.epoch == *e),
        _ => record.epochs.iter().rev().find(|r| r.validation.is_some()),
    }?;
    metric.get(epoch.validation.as_ref()?)
}
