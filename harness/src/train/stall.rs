//! Stopping a cell that makes no progress.
//!
//! A loss or miner plugin that loops forever, or a data source that never answers, would
//! otherwise hold its cell (and with it the run) at full CPU indefinitely. The training loop
//! and the evaluation report every finished batch to a [`StallWatch`]; when none arrives for
//! `training.stall_timeout` seconds, the watch thread marks the cell's record failed with that
//! reason and ends the process with [`STALLED_EXIT_CODE`]. The stuck call cannot be unwound
//! from another thread, so ending the process is the only way out, and the cell's process is
//! its own precisely so that this costs one cell.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::periodic::Periodic;
use dmlbench_record::{CellRecord, CellStatus};

/// The exit code of a cell process stopped for making no progress.
pub const STALLED_EXIT_CODE: i32 = 3;

/// Watches a cell's progress from a thread of its own; stops watching when dropped.
#[derive(Debug)]
pub struct StallWatch {
    /// Milliseconds after `start` of the last progress.
    last: Arc<AtomicU64>,
    start: Instant,
    _watch: Periodic,
}

impl StallWatch {
    /// Starts watching: after `timeout` without [`StallWatch::progress`], the record at
    /// `record_path` (or `fallback`, when the file holds none yet) is saved as failed and the
    /// process exits.
    pub fn start(timeout: Duration, record_path: PathBuf, fallback: CellRecord) -> Self {
        Self::start_with(timeout, move |reason| {
            eprintln!("error: {reason}");
            let mut record = CellRecord::load(&record_path).unwrap_or(fallback);
            record.status = CellStatus::Failed { reason };
            if let Err(e) = record.save(&record_path) {
                eprintln!("error: cannot record the failure: {}", dmlbench_host::errors::describe(&e));
            }
            std::process::exit(STALLED_EXIT_CODE);
        })
    }

    /// Starts watching, calling `on_stall` with the reason once `timeout` passes without
    /// progress (then the watch ends).
    fn start_with(timeout: Duration, on_stall: impl FnOnce(String) + Send + 'static) -> Self {
        let start = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let shared = last.clone();
        let mut on_stall = Some(on_stall);
        // Checked often enough that a stall is caught within a tenth of the timeout.
        let tick = (timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(10));
        let watch = Periodic::start("stall-watch", tick, move || {
            let since = start.elapsed().saturating_sub(Duration::from_millis(shared.load(Ordering::SeqCst)));
            if since < timeout {
                return ControlFlow::Continue(());
            }
            if let Some(on_stall) = on_stall.take() {
                on_stall(format!(
                    "the cell made no progress (no finished batch) for {:.0} s, the limit set by \
                     training.stall_timeout; a plugin or the data loading may hang",
                    since.as_secs_f64()
                ));
            }
            ControlFlow::Break(())
        });
        StallWatch { last, start, _watch: watch }
    }

    /// Notes progress: a batch finished.
    pub fn progress(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn steady_progress_never_stalls_and_silence_does() {
        let (sender, stalls) = mpsc::channel();
        let watch = StallWatch::start_with(Duration::from_millis(300), move |reason| sender.send(reason).unwrap());
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(60));
            watch.progress();
        }
        assert!(stalls.try_recv().is_err(), "progress every 60 ms is not a stall");
        let reason = stalls.recv_timeout(Duration::from_secs(10)).expect("silence is a stall");
        assert!(reason.contains("no progress") && reason.contains("training.stall_timeout"), "{reason}");
    }

    #[test]
    fn a_dropped_watch_never_fires() {
        let (sender, stalls) = mpsc::channel();
        let watch = StallWatch::start_with(Duration::from_millis(100), move |reason| sender.send(reason).unwrap());
        drop(watch);
        std::thread::sleep(Duration::from_millis(300));
        assert!(stalls.try_recv().is_err());
    }
}
