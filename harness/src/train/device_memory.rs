//! Peak GPU memory of a cell's process: the `peak_device_bytes` of its record.
//!
//! A thread samples the process's device memory every [`SAMPLE_INTERVAL`] and keeps the
//! largest value. The source is NVML, NVIDIA's management library, which `nvml-wrapper` loads
//! at run time: every build works without it, and a machine without an NVIDIA driver simply
//! records no device memory (with one warning).
//!
//! What is measured is what `nvidia-smi` shows for the process: NVML's per-process usage, which
//! includes the CUDA context and the memory a caching allocator (LibTorch's) holds in reserve,
//! so it is larger than PyTorch's `torch.cuda.max_memory_allocated` (live tensors only) and is
//! what decides whether a recipe fits on a card. Where NVML lists the process under a PID this
//! process cannot see (a container with its own PID namespace), the device's used memory above
//! what it was when sampling started is taken instead; that counts other processes on the same
//! GPU too, so it is exact only when the cell has the GPU to itself, as a scheduler's job does.
//!
//! The sampling and the peak are independent of NVML ([`MemorySource`]), and tested with a
//! scripted source.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::periodic::Periodic;

/// How often the device memory is read.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// A reading of this process's device memory.
pub trait MemorySource: Send {
    /// Bytes of device memory the process uses now; `None` when this reading failed.
    fn used_bytes(&mut self) -> Option<u64>;
}

/// Samples a [`MemorySource`] on its own thread and keeps the peak. Stops when dropped.
pub struct PeakSampler {
    peak: Arc<AtomicU64>,
    _sampling: Periodic,
}

/// Marks "no successful reading yet" in the shared peak.
const NONE: u64 = u64::MAX;

fn record(peak: &AtomicU64, source: &mut dyn MemorySource) {
    if let Some(bytes) = source.used_bytes() {
        let _ = peak.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == NONE { bytes } else { old.max(bytes) })
        });
    }
}

impl PeakSampler {
    /// Takes a first reading now, then one every `interval`.
    pub fn start(mut source: Box<dyn MemorySource>, interval: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(NONE));
        record(&peak, source.as_mut());
        let shared = peak.clone();
        let sampling = Periodic::start("device-memory", interval, move || {
            record(&shared, source.as_mut());
            ControlFlow::Continue(())
        });
        PeakSampler { peak, _sampling: sampling }
    }

    /// The largest reading so far, `None` if every reading failed.
    pub fn peak(&self) -> Option<u64> {
        Some(self.peak.load(Ordering::Relaxed)).filter(|&bytes| bytes != NONE)
    }
}

/// The record's peak after a resume: the larger of what earlier runs of the cell recorded and
/// what this run measured.
pub fn combined_peak(previous: Option<u64>, now: Option<u64>) -> Option<u64> {
    match (previous, now) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The NVML device for CUDA device `cuda_index` of this process, honouring
/// `CUDA_VISIBLE_DEVICES` (indices or `GPU-…` UUIDs), with its name for the record.
pub fn nvml_source(cuda_index: usize) -> Result<(Box<dyn MemorySource>, String), String> {
    use nvml_wrapper::Nvml;
    let nvml = Nvml::init().map_err(|e| format!("NVML (libnvidia-ml.so) is not available: {e}"))?;
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let selector = match visible.as_deref().map(|list| list.split(',').map(str::trim).collect::<Vec<_>>()) {
        Some(list) => list.get(cuda_index).map(|s| s.to_string()).ok_or_else(|| {
            format!("CUDA_VISIBLE_DEVICES={} has no device {cuda_index}", visible.clone().unwrap_or_default())
        })?,
        None => cuda_index.to_string(),
    };
    let name = {
        let device = nvml_device(&nvml, &selector)?;
        device.name().map_err(|e| format!("NVML: name of GPU {selector}: {e}"))?
    };
    let mut source = NvmlSource { nvml, selector, pid: std::process::id(), baseline: None };
    source.baseline = source.device_used();
    Ok((Box::new(source), name))
}

fn nvml_device<'n>(nvml: &'n nvml_wrapper::Nvml, selector: &str) -> Result<nvml_wrapper::Device<'n>, String> {
    let device = match selector.parse::<u32>() {
        Ok(index) => nvml.device_by_index(index),
        Err(_) => nvml.device_by_uuid(selector),
    };
    device.map_err(|e| format!("NVML: GPU {selector}: {e}"))
}

struct NvmlSource {
    nvml: nvml_wrapper::Nvml,
    selector: String,
    pid: u32,
    /// The device's used memory when sampling started, for the fallback.
    baseline: Option<u64>,
}

impl NvmlSource {
    fn device_used(&self) -> Option<u64> {
        nvml_device(&self.nvml, &self.selector).ok()?.memory_info().ok().map(|m| m.used)
    }
}

impl MemorySource for NvmlSource {
    fn used_bytes(&mut self) -> Option<u64> {
        use nvml_wrapper::enums::device::UsedGpuMemory;
        let device = nvml_device(&self.nvml, &self.selector).ok()?;
        let processes = device.running_compute_processes().ok()?;
        let own: Vec<u64> = processes
            .iter()
            .filter(|p| p.pid == self.pid)
            .filter_map(|p| match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes),
                UsedGpuMemory::Unavailable => None,
            })
            .collect();
        if !own.is_empty() {
            return Some(own.iter().sum());
        }
        // Not listed under our PID: another PID namespace, or no CUDA context yet.
        let used = device.memory_info().ok()?.used;
        Some(used.saturating_sub(self.baseline?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Plays back readings, then repeats the last one; counts the calls.
    struct Scripted {
        readings: Vec<Option<u64>>,
        calls: Arc<Mutex<usize>>,
    }

    impl MemorySource for Scripted {
        fn used_bytes(&mut self) -> Option<u64> {
            let mut calls = self.calls.lock().unwrap();
            let reading = self.readings.get(*calls).or(self.readings.last()).copied().flatten();
            *calls += 1;
            reading
        }
    }

    fn start(readings: Vec<Option<u64>>, interval: Duration) -> (PeakSampler, Arc<Mutex<usize>>) {
        let calls = Arc::new(Mutex::new(0));
        let sampler = PeakSampler::start(Box::new(Scripted { readings, calls: calls.clone() }), interval);
        (sampler, calls)
    }

    fn wait_for_calls(calls: &Mutex<usize>, at_least: usize) {
        while *calls.lock().unwrap() < at_least {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_peak_is_the_largest_successful_reading() {
        let (sampler, calls) =
            start(vec![Some(10), None, Some(500), Some(20), None, Some(30)], Duration::from_millis(1));
        wait_for_calls(&calls, 6);
        assert_eq!(sampler.peak(), Some(500));
    }

    #[test]
    fn failed_readings_alone_give_no_peak_and_zero_is_a_reading() {
        let (sampler, calls) = start(vec![None], Duration::from_millis(1));
        wait_for_calls(&calls, 3);
        assert_eq!(sampler.peak(), None);
        let (sampler, calls) = start(vec![None, Some(0), None], Duration::from_millis(1));
        wait_for_calls(&calls, 3);
        assert_eq!(sampler.peak(), Some(0));
    }

    /// The first reading is taken before `start` returns, and dropping the sampler ends its
    /// thread at once, even in the middle of a long interval.
    #[test]
    fn the_first_reading_is_immediate_and_drop_does_not_wait_for_the_interval() {
        let (sampler, calls) = start(vec![Some(7)], Duration::from_secs(3600));
        assert_eq!(sampler.peak(), Some(7));
        // Were the thread to sleep out its hour, this drop would hang the test.
        drop(sampler);
        assert_eq!(*calls.lock().unwrap(), 1);
    }

    #[test]
    fn sampling_stops_when_the_sampler_is_dropped() {
        let (sampler, calls) = start(vec![Some(1)], Duration::from_millis(1));
        wait_for_calls(&calls, 3);
        drop(sampler);
        let at_drop = *calls.lock().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(*calls.lock().unwrap(), at_drop);
    }

    #[test]
    fn a_resumed_cell_keeps_the_larger_peak() {
        assert_eq!(combined_peak(None, None), None);
        assert_eq!(combined_peak(Some(5), None), Some(5));
        assert_eq!(combined_peak(None, Some(6)), Some(6));
        assert_eq!(combined_peak(Some(9), Some(6)), Some(9));
        assert_eq!(combined_peak(Some(2), Some(6)), Some(6));
    }
}
