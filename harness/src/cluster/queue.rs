//! What Slurm holds of an experiment: the array jobs `dmlbench sweep` submitted (a log beside
//! the records, `slurm/submissions.json`) and the state `squeue` reports for their tasks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// One submitted array job: task `i` trains `cells[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Slurm's job id of the array.
    pub job_id: String,
    /// The cell of each array index.
    pub cells: Vec<String>,
    /// The script submitted.
    pub script: PathBuf,
    /// When (Unix seconds).
    pub submitted_unix_s: u64,
}

/// The submissions of one experiment, in `<results>/<experiment>/slurm/submissions.json`.
pub struct SubmissionLog {
    path: PathBuf,
}

impl SubmissionLog {
    /// The log in `slurm_dir`.
    pub fn in_dir(slurm_dir: &Path) -> Self {
        SubmissionLog { path: slurm_dir.join("submissions.json") }
    }

    /// Every submission so far (none when there is no log yet).
    pub fn read(&self) -> anyhow::Result<Vec<Submission>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    /// Adds `submission`; the file is replaced by rename, so a reader never sees half of it.
    pub fn append(&self, submission: Submission) -> anyhow::Result<()> {
        let mut all = self.read()?;
        all.push(submission);
        let staged = crate::train::with_suffix(&self.path, &format!(".{}.tmp", std::process::id()));
        std::fs::write(&staged, serde_json::to_vec_pretty(&all)?)
            .and_then(|()| std::fs::rename(&staged, &self.path))
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// A task's state as squeue names it (`PENDING`, `RUNNING`, `REQUEUED`, `COMPLETING`...).
pub type TaskState = String;

/// The queue state of every cell that has a task in Slurm's queue, from the latest submission
/// that names it; `None` when `squeue` cannot be run (no Slurm here).
pub fn queued_cells(submissions: &[Submission]) -> Option<BTreeMap<String, (String, TaskState)>> {
    let output = Command::new("squeue").args(["--noheader", "--array", "--format=%i|%T"]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(cells_in_queue(&String::from_utf8_lossy(&output.stdout), submissions))
}

/// [`queued_cells`] from squeue's `JOB_TASK|STATE` lines.
fn cells_in_queue(squeue: &str, submissions: &[Submission]) -> BTreeMap<String, (String, TaskState)> {
    let mut cells = BTreeMap::new();
    for line in squeue.lines() {
        let Some((task, state)) = line.trim().split_once('|') else { continue };
        let Some((job, index)) = task.split_once('_') else { continue };
        let Ok(index) = index.parse::<usize>() else { continue };
        // The latest submission of this job id (ids are not reused while a job is known).
        if let Some(cell) = submissions.iter().rev().find(|s| s.job_id == job).and_then(|s| s.cells.get(index)) {
            cells.insert(cell.clone(), (task.to_string(), state.to_string()));
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(job_id: &str, cells: &[&str]) -> Submission {
        Submission {
            job_id: job_id.into(),
            cells: cells.iter().map(|c| c.to_string()).collect(),
            script: "s.sh".into(),
            submitted_unix_s: 0,
        }
    }

    #[test]
    fn squeue_lines_map_to_the_cells_of_their_submission() {
        let log = [submission("12", &["a-seed0", "b-seed0", "c-seed0"]), submission("15", &["c-seed0"])];
        // Job 99 is someone else's; a line without a task index is not an array task of ours.
        let squeue = "12_0|RUNNING\n12_2|PENDING\n15_0|PENDING\n99_0|RUNNING\n16|RUNNING\ngarbage\n";
        let cells = cells_in_queue(squeue, &log);
        assert_eq!(cells.len(), 2, "{cells:?}");
        assert_eq!(cells["a-seed0"], ("12_0".to_string(), "RUNNING".to_string()));
        // c-seed0 has two tasks listed; the later line wins, whichever job it is.
        assert_eq!(cells["c-seed0"], ("15_0".to_string(), "PENDING".to_string()));
    }

    #[test]
    fn the_log_keeps_every_submission() {
        let dir = tempfile::tempdir().unwrap();
        let log = SubmissionLog::in_dir(dir.path());
        assert!(log.read().unwrap().is_empty());
        log.append(submission("1", &["a"])).unwrap();
        log.append(submission("2", &["b", "c"])).unwrap();
        assert_eq!(log.read().unwrap(), vec![submission("1", &["a"]), submission("2", &["b", "c"])]);
        std::fs::write(dir.path().join("submissions.json"), "{ not json").unwrap();
        let e = log.read().unwrap_err();
        assert!(format!("{e:#}").contains("submissions.json"), "{e:#}");
    }
}
