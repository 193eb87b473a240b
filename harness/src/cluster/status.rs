//! Where each cell of an experiment stands, from its record, its lock and (where Slurm is
//! present) the queue: what `dmlbench status` prints and `sweep` decides with.

use std::collections::BTreeMap;
use std::path::Path;

use dmlbench_record::{CellRecord, CellStatus};

use super::queue::{SubmissionLog, TaskState, queued_cells};
use crate::experiment::Plan;
use crate::train::cell::CellPaths;
use crate::train::lock;
use crate::train::runner::{Existing, existing};

/// One cell's state.
#[derive(Clone, Debug, PartialEq)]
pub enum CellState {
    /// Complete and current: nothing to do.
    Completed {
        /// Final Recall@1.
        recall_at_1: Option<f64>,
    },
    /// The last attempt failed.
    Failed {
        /// Why, from the record.
        reason: String,
    },
    /// A process holds the cell's lock.
    Running {
        /// Epochs recorded so far.
        epochs_done: usize,
        /// Recall@1 of the last evaluated epoch.
        last_recall_at_1: Option<f64>,
        /// Who trains it.
        owner: String,
    },
    /// A Slurm task for the cell waits or runs, and no process holds its lock yet.
    Queued {
        /// `JOB_TASK`.
        task: String,
        /// squeue's state.
        state: TaskState,
    },
    /// Not started, interrupted, stale, or from another configuration: the next run trains it.
    Pending {
        /// What the record says, if there is one.
        note: String,
    },
}

impl CellState {
    /// Whether a sweep should submit the cell: it is neither done nor in anyone's hands.
    pub fn needs_submitting(&self) -> bool {
        matches!(self, CellState::Failed { .. } | CellState::Pending { .. })
    }

    /// Whether it is still under way (running or queued).
    pub fn in_progress(&self) -> bool {
        matches!(self, CellState::Running { .. } | CellState::Queued { .. })
    }

    /// The state's name: `completed`, `failed`, `running`, `queued` or `pending`.
    pub fn kind(&self) -> &'static str {
        match self {
            CellState::Completed { .. } => "completed",
            CellState::Failed { .. } => "failed",
            CellState::Running { .. } => "running",
            CellState::Queued { .. } => "queued",
            CellState::Pending { .. } => "pending",
        }
    }

    /// One line for the terminal.
    pub fn describe(&self, epochs: usize) -> String {
        match self {
            CellState::Completed { recall_at_1 } => format!("completed, R@1 {}", percent(*recall_at_1)),
            CellState::Failed { reason } => format!("failed: {}", dmlbench_abi::escape_terminal(reason)),
            CellState::Running { epochs_done, last_recall_at_1, owner } => format!(
                "running, epoch {epochs_done}/{epochs} done, last R@1 {} ({})",
                percent(*last_recall_at_1),
                dmlbench_abi::escape_terminal(owner)
            ),
            CellState::Queued { task, state } => format!("queued as Slurm task {task} ({})", state.to_lowercase()),
            CellState::Pending { note } if note.is_empty() => "pending".to_string(),
            CellState::Pending { note } => format!("pending ({note})"),
        }
    }
}

/// Where an experiment stands.
pub struct ExperimentStatus {
    /// Every cell with its state, in plan order.
    pub cells: Vec<(String, CellState)>,
    /// Cells were submitted to Slurm, but squeue cannot be run here: queued tasks are unknown.
    pub queue_unreadable: bool,
}

/// The state of every cell of `plan`, for the results in `experiment_dir`.
pub fn cell_states(plan: &Plan, experiment_dir: &Path) -> anyhow::Result<ExperimentStatus> {
    let submissions = SubmissionLog::in_dir(&experiment_dir.join("slurm")).read()?;
    let queue = if submissions.is_empty() { None } else { queued_cells(&submissions) };
    let queue_unreadable = !submissions.is_empty() && queue.is_none();
    let queue = queue.unwrap_or_default();
    let states = plan
        .cells
        .iter()
        .map(|cell| {
            let paths = CellPaths::new(experiment_dir, cell);
            let state = state_of(plan, cell, &paths, &queue);
            (cell.key.id(), state)
        })
        .collect();
    Ok(ExperimentStatus { cells: states, queue_unreadable })
}

fn state_of(
    plan: &Plan,
    cell: &crate::experiment::Cell,
    paths: &CellPaths,
    queue: &BTreeMap<String, (String, TaskState)>,
) -> CellState {
    let (record, stale) = match existing(plan, cell, &paths.record) {
        Existing::Done(record) => {
            return CellState::Completed { recall_at_1: record.final_metrics.as_ref().and_then(recall_at_1) };
        }
        // A stale record is a finished run of older code: a process that holds the lock is
        // training the cell again from the start.
        Existing::Stale(reason) => (None, Some(reason)),
        Existing::ToRun(record) => (record, None),
    };
    if let Some(owner) = lock::live_owner(&paths.lock) {
        let epochs = record.as_ref().map(|r| r.epochs.as_slice()).unwrap_or_default();
        return CellState::Running {
            epochs_done: epochs.len(),
            last_recall_at_1: epochs.iter().rev().find_map(|e| e.test.as_ref().and_then(recall_at_1)),
            owner: owner.to_string(),
        };
    }
    if let Some((task, state)) = queue.get(&cell.key.id()) {
        return CellState::Queued { task: task.clone(), state: state.clone() };
    }
    if let Some(reason) = stale {
        return CellState::Pending { note: reason };
    }
    match record {
        Some(record) => match record.status {
            CellStatus::Failed { reason } => CellState::Failed { reason },
            _ if record.config_fingerprint != cell.fingerprint => {
                CellState::Pending { note: "its record is of another configuration".into() }
            }
            _ => CellState::Pending { note: format!("interrupted after epoch {}", record.epochs.len()) },
        },
        None => CellState::Pending { note: String::new() },
    }
}

fn recall_at_1(metrics: &dmlbench_eval::Metrics) -> Option<f64> {
    metrics.recall_at_k.get(&1).copied()
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".to_string(), |r| format!("{:.2}%", 100.0 * r))
}

/// What `dmlbench status` prints, a (cell id, state) line each: the fold runs of a
/// cross-validated cell share one line, under the cell's own id, saying how many of its folds
/// stand where (a tuning of 50 trials on 4 folds is 50 lines per method, not 200);
/// `every_fold` lists them one by one instead. `states` are [`cell_states`]'s for `plan`.
pub fn status_lines(
    plan: &Plan,
    experiment_dir: &Path,
    states: &[(String, CellState)],
    every_fold: bool,
) -> Vec<(String, String)> {
    let epochs = plan.spec.training.epochs;
    // In plan order; a cross-validated cell where its first fold is.
    let mut lines: Vec<(String, Vec<(u32, &CellState)>)> = Vec::new();
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for (cell, (id, state)) in plan.cells.iter().zip(states) {
        match cell.key.fold {
            Some(fold) if !every_fold => {
                let group = cell.key.without_fold().id();
                let at = *groups.entry(group.clone()).or_insert_with(|| {
                    lines.push((group, Vec::new()));
                    lines.len() - 1
                });
                lines[at].1.push((fold, state));
            }
            _ => lines.push((id.clone(), vec![(0, state)])),
        }
    }
    lines
        .into_iter()
        .map(|(id, members)| {
            let text = match members.as_slice() {
                [(_, state)] if !groups.contains_key(&id) => state.describe(epochs),
                folds => describe_folds(&experiment_dir.join(format!("{id}.ron")), folds, epochs),
            };
            (id, text)
        })
        .collect()
}

/// `3 folds: 1 completed, 1 running (fold 1: running, epoch 2/10 done, …), 1 pending`, with
/// the first failed fold's reason; once all completed, the Recall@1 of the combined record at
/// `combined` when it is written.
fn describe_folds(combined: &Path, folds: &[(u32, &CellState)], epochs: usize) -> String {
    let count = folds.len();
    if folds.iter().all(|(_, s)| matches!(s, CellState::Completed { .. })) {
        let r1 = CellRecord::load(combined)
            .ok()
            .filter(|r| r.folds.is_some())
            .and_then(|r| r.final_metrics.as_ref().and_then(recall_at_1));
        return match r1 {
            Some(_) => format!("completed, {count} folds, R@1 {} (concatenated)", percent(r1)),
            None => format!("completed, {count} folds"),
        };
    }
    let parts: Vec<String> = ["completed", "running", "queued", "failed", "pending"]
        .into_iter()
        .filter_map(|kind| {
            let of_kind: Vec<&(u32, &CellState)> = folds.iter().filter(|(_, s)| s.kind() == kind).collect();
            let (fold, state) = of_kind.first()?;
            // The first running or failed fold says how far it is, or why.
            let detail = match state {
                CellState::Failed { reason } => format!(" (fold {fold}: {})", dmlbench_abi::escape_terminal(reason)),
                CellState::Running { .. } => format!(" (fold {fold}: {})", state.describe(epochs)),
                _ => String::new(),
            };
            Some(format!("{} {kind}{detail}", of_kind.len()))
        })
        .collect();
    format!("{count} folds: {}", parts.join(", "))
}
