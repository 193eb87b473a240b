//! A cell's checkpoint: everything needed to continue training exactly where an epoch ended.
//!
//! One directory per cell (`results/<experiment>/checkpoints/<cell-id>/`) holding
//! - `model.safetensors` (PyTorch-style names) and `model.ron` (its `ModelConfig`), which
//!   `dmlbench embed --checkpoint` reads;
//! - `optimizer.bin` (burn's optimiser record, keyed by the deterministic parameter ids);
//! - `loss.state` / `miner.state` (the plugins' own state bytes, safetensors layout);
//! - `best.safetensors` when model selection is `Best`;
//! - `progress.ron`: epochs done, iterations done, the best validation value so far and the
//!   fingerprint of the cell configuration it belongs to.
//!
//! A checkpoint is written to `<dir>.new` (its `progress.ron` last), then swapped in with
//! two renames; [`CheckpointDir::repair`] finishes a swap that a crash cut short (taking the
//! complete `<dir>.new`, else `<dir>.old`). So a kill at any moment leaves one complete
//! checkpoint. [`restore`] loads one into a freshly built model, optimiser and plugins.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use dmlbench_host::{LossHandle, MinerHandle};
use dmlbench_models::burn::optim::{ModuleOptimizer, OptimizerRecord};
use dmlbench_models::{EmbeddingModel, load_checkpoint};
use dmlbench_record::CellRecord;
use serde::{Deserialize, Serialize};

use super::optimizer::number_parameters;

/// Where training stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Fingerprint of the cell configuration.
    pub fingerprint: String,
    /// Finished epochs.
    pub epochs_done: usize,
    /// Finished iterations (batches), for the schedule.
    pub iterations_done: usize,
    /// Best validation value so far and its epoch (1-based), for `Best` selection.
    pub best: Option<(usize, f64)>,
}

/// The files of a checkpoint directory.
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    dir: PathBuf,
}

impl CheckpointDir {
    /// The checkpoint of a cell.
    pub fn new(dir: PathBuf) -> Self {
        CheckpointDir { dir }
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        super::with_suffix(&self.dir, suffix)
    }

    /// Finishes a swap that a crash cut short, so that `dir` is the newest complete
    /// checkpoint (if any) and no staged or old directory is left: a complete `dir.new` (it
    /// has its `progress.ron`, written last) is newer than `dir`, which is newer than
    /// `dir.old`.
    pub fn repair(&self) -> anyhow::Result<()> {
        let complete = |d: &Path| d.join("progress.ron").is_file();
        let (staged, old) = (self.with_suffix(".new"), self.with_suffix(".old"));
        let newest = if complete(&staged) {
            Some(staged.clone())
        } else if !complete(&self.dir) && complete(&old) {
            Some(old.clone())
        } else {
            None
        };
        if let Some(newest) = newest {
            if self.dir.exists() {
                std::fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))?;
            }
            std::fs::rename(&newest, &self.dir).with_context(|| format!("restoring {}", self.dir.display()))?;
        }
        for leftover in [staged, old] {
            if leftover.exists() {
                std::fs::remove_dir_all(&leftover).with_context(|| format!("removing {}", leftover.display()))?;
            }
        }
        Ok(())
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The progress of the checkpoint, if there is one (repairing a cut swap first).
    pub fn progress(&self) -> anyhow::Result<Option<Progress>> {
        self.repair()?;
        let path = self.dir.join("progress.ron");
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let progress = ron::from_str(&text)
            .with_context(|| format!("{} is not a valid checkpoint progress file", path.display()))?;
        Ok(Some(progress))
    }

    /// A fresh directory to write the next checkpoint into; call [`CheckpointDir::commit`]
    /// when every file is written.
    pub fn begin(&self) -> anyhow::Result<PathBuf> {
        let staging = self.with_suffix(".new");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
        }
        std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
        Ok(staging)
    }

    /// Makes the staged checkpoint current: `dir` → `dir.old`, `dir.new` → `dir`, then
    /// removes `dir.old`.
    pub fn commit(&self, progress: &Progress) -> anyhow::Result<()> {
        let staging = self.with_suffix(".new");
        let text = ron::ser::to_string_pretty(progress, ron::ser::PrettyConfig::new()).expect("progress serialises");
        // progress.ron last: a staged directory without it is never taken for a checkpoint.
        dmlbench_record::write_atomic(&staging.join("progress.ron"), text.as_bytes())?;
        let old = self.with_suffix(".old");
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        if self.dir.exists() {
            std::fs::rename(&self.dir, &old).with_context(|| format!("moving {} aside", self.dir.display()))?;
        }
        std::fs::rename(&staging, &self.dir).with_context(|| format!("installing {}", self.dir.display()))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        Ok(())
    }

    /// Moves a checkpoint that cannot be restored out of the way, to `<dir>.corrupt` (replacing
    /// an older one there), for inspection; returns where it went.
    pub fn set_aside(&self) -> anyhow::Result<PathBuf> {
        let kept = self.with_suffix(".corrupt");
        if kept.exists() {
            std::fs::remove_dir_all(&kept).with_context(|| format!("removing {}", kept.display()))?;
        }
        if self.dir.exists() {
            std::fs::rename(&self.dir, &kept)
                .with_context(|| format!("moving {} to {}", self.dir.display(), kept.display()))?;
        }
        self.clear()?;
        Ok(kept)
    }

    /// Removes every trace of the checkpoint (for a cell that starts over).
    pub fn clear(&self) -> anyhow::Result<()> {
        for d in [self.dir.clone(), self.with_suffix(".old"), self.with_suffix(".new")] {
            if d.exists() {
                std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
            }
        }
        Ok(())
    }
}

/// Carries a file that did not change (the best model) from the current checkpoint into the
/// staged one: a hard link where possible, a copy otherwise.
pub fn carry_over(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.is_file() {
        return Ok(());
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// A checkpoint that exists but cannot be restored: the cell starts over, saying so.
#[derive(Debug)]
pub struct CorruptCheckpoint(pub anyhow::Error);

impl std::fmt::Display for CorruptCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for CorruptCheckpoint {}

/// The checkpoint's copy of the record: the finished epochs and the untrained baseline it was
/// written with.
pub const RECORD_IN_CHECKPOINT: &str = "record.ron";

/// The cross-batch memory's file in a checkpoint of a cell that has one.
pub const MEMORY_IN_CHECKPOINT: &str = "memory.safetensors";

/// What a checkpoint restores besides the model and optimiser.
pub struct Plugins<'a> {
    /// The loss, whose state (if it has any) is restored.
    pub loss: &'a mut LossHandle,
    /// The miner, likewise.
    pub miner: Option<&'a mut MinerHandle>,
    /// The cross-batch memory, which must be in the checkpoint.
    pub memory: Option<&'a mut super::memory::CrossBatchMemory>,
}

/// Loads the checkpoint in `dir` (described by `saved`) into the model, optimiser, plugins and
/// `record`.
pub fn restore(
    dir: &Path,
    saved: &Progress,
    model: EmbeddingModel,
    optimizer: ModuleOptimizer,
    plugins: Plugins<'_>,
    record: &mut CellRecord,
) -> anyhow::Result<(EmbeddingModel, ModuleOptimizer)> {
    let Plugins { loss, miner, memory } = plugins;
    let record_file = dir.join(RECORD_IN_CHECKPOINT);
    let previous =
        CellRecord::load(&record_file).with_context(|| format!("the checkpoint's record {}", record_file.display()))?;
    let numbers: Vec<usize> = previous.epochs.iter().map(|e| e.epoch).collect();
    if previous.config_fingerprint != saved.fingerprint
        || numbers != (1..=saved.epochs_done).collect::<Vec<_>>()
        || previous.initial_test.is_none()
    {
        bail!("{} does not match the checkpoint's progress ({} epochs done)", record_file.display(), saved.epochs_done);
    }
    let model = number_parameters(load_checkpoint(model, &dir.join("model.safetensors"))?);
    let optimizer_file = dir.join("optimizer.bin");
    let optimizer = if optimizer_file.is_file() {
        let state = OptimizerRecord::load(&optimizer_file)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", optimizer_file.display()))?;
        optimizer.load_record(state)
    } else {
        optimizer
    };
    restore_state(dir, "loss.state", |bytes| loss.load_state(bytes).map_err(Into::into))?;
    if let Some(m) = miner {
        restore_state(dir, "miner.state", |bytes| m.load_state(bytes).map_err(Into::into))?;
    }
    if let Some(memory) = memory {
        let path = dir.join(MEMORY_IN_CHECKPOINT);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        memory.load_bytes(&bytes).with_context(|| format!("restoring {}", path.display()))?;
    }
    record.epochs = previous.epochs;
    record.initial_test = previous.initial_test;
    record.started_unix_s = previous.started_unix_s;
    record.resumed = previous.resumed + 1;
    record.peak_rss_bytes = previous.peak_rss_bytes;
    record.peak_device_bytes = previous.peak_device_bytes;
    Ok((model, optimizer))
}

fn restore_state(dir: &Path, file: &str, load: impl FnOnce(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let path = dir.join(file);
    if path.is_file() {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        load(&bytes).with_context(|| format!("restoring {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(epochs: usize) -> Progress {
        Progress { fingerprint: "f".into(), epochs_done: epochs, iterations_done: 10 * epochs, best: Some((1, 0.5)) }
    }

    #[test]
    fn commits_replace_the_checkpoint_and_cut_swaps_are_repaired() {
        let root = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::new(root.path().join("cell"));
        assert!(ck.progress().unwrap().is_none());
        let staged = ck.begin().unwrap();
        std::fs::write(staged.join("model.safetensors"), b"one").unwrap();
        ck.commit(&progress(1)).unwrap();
        assert_eq!(ck.progress().unwrap(), Some(progress(1)));

        let staged = ck.begin().unwrap();
        carry_over(&root.path().join("cell/model.safetensors"), &staged.join("model.safetensors")).unwrap();
        ck.commit(&progress(2)).unwrap();
        assert_eq!(std::fs::read(root.path().join("cell/model.safetensors")).unwrap(), b"one");
        assert_eq!(ck.progress().unwrap(), Some(progress(2)));

        // A crash after `dir` → `dir.old` but before `dir.new` → `dir`, with an incomplete
        // staged directory: the old one is restored.
        std::fs::rename(root.path().join("cell"), root.path().join("cell.old")).unwrap();
        std::fs::create_dir(root.path().join("cell.new")).unwrap();
        assert_eq!(ck.progress().unwrap(), Some(progress(2)));
        assert!(!root.path().join("cell.new").exists() && !root.path().join("cell.old").exists());

        // A crash after the staged directory was complete: it is the newest and is installed.
        let staged = ck.begin().unwrap();
        std::fs::write(staged.join("progress.ron"), ron::to_string(&progress(3)).unwrap()).unwrap();
        assert_eq!(ck.progress().unwrap(), Some(progress(3)));

        ck.clear().unwrap();
        assert!(ck.progress().unwrap().is_none());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
