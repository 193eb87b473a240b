//! A plugin's state as `plugins show` lists it and `loss --state` loads it: the safetensors
//! bytes of `save_state` / `load_state` (see `dmlbench_sdk::state`).

use std::path::Path;

use anyhow::Context as _;
use dmlbench_host::{CreateOptions, LossHandle, MinerHandle, PluginInfo, PluginKind};
use safetensors::SafeTensors;

/// One tensor of a state: its name, shape and element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateTensor {
    /// Name, as the plugin saves it (`proxies`, `classifier.weight`, ...).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Element type (`F32`).
    pub dtype: String,
}

/// The tensors of state bytes, sorted by name.
pub fn tensors(bytes: &[u8]) -> anyhow::Result<Vec<StateTensor>> {
    let state = SafeTensors::deserialize(bytes).context("the state is not in safetensors layout")?;
    let mut out: Vec<StateTensor> = state
        .tensors()
        .into_iter()
        .map(|(name, view)| StateTensor { name, shape: view.shape().to_vec(), dtype: format!("{:?}", view.dtype()) })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The state of a fresh instance of `info` created with `options`.
pub fn initial_state(info: &PluginInfo, options: &CreateOptions) -> anyhow::Result<Vec<u8>> {
    Ok(match info.kind {
        PluginKind::Loss => LossHandle::create(info, options)?.save_state()?,
        PluginKind::Miner => MinerHandle::create(info, options)?.save_state()?,
    })
}

/// The bytes of a state file, refusing a file that is not one before any plugin sees it.
pub fn read_state_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the state {}", path.display()))?;
    tensors(&bytes).with_context(|| path.display().to_string())?;
    Ok(bytes)
}
