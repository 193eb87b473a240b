//! Where each cell of an experiment stands, from its record, its lock and (where Slurm is
//! present) the queue: what `dmlbench status` prints and `sweep` decides with.

use std::collections::BTreeMap;
use std::path::Path;

use dmlbench_record::CellStatus;

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

    /// One line for the terminal.
    pub fn describe(&self, epochs: usize) -> String {
        let percent = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.2}%", 100.0 * r));
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
