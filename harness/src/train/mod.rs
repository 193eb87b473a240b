//! Training cells: samplers, schedules, the optimiser, the loop, checkpoints, and the runner
//! that gives each cell its own process.

pub mod allocator;
pub mod cell;
pub mod checkpoint;
pub mod data;
pub mod device_memory;
pub mod embed;
pub mod environment;
pub mod folds;
pub mod lock;
pub mod memory;
pub mod optimizer;
pub mod periodic;
pub mod runner;
pub mod sampler;
pub mod schedule;
pub mod stall;

use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name (`cell.ron` → `cell.ron.lock`): the
/// neighbours a cell's files are staged, locked and set aside under.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Seconds since the Unix epoch, the clock of records and locks.
pub(crate) fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
