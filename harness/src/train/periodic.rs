//! A thread that does something at a fixed interval until its handle is dropped.
//!
//! A cell runs three such threads beside its training: the GPU-memory sampler
//! ([`super::device_memory`]), the lock's heartbeat ([`super::lock`]) and the stall watch
//! ([`super::stall`]). Dropping the handle wakes the thread at once and waits for it to end, so
//! nothing it does outlives its owner.

use std::ops::ControlFlow;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The handle of a periodic thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Periodic {
    /// Dropping it wakes the thread and ends it.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Calls `tick` every `interval` on a thread named `name`, until the handle is dropped or
    /// `tick` breaks. Without a thread (the system refused one), nothing runs.
    pub fn start(name: &str, interval: Duration, mut tick: impl FnMut() -> ControlFlow<()> + Send + 'static) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if tick().is_break() {
                        break;
                    }
                }
            })
            .ok();
        Periodic { stop: Some(stop), thread }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn ticks_until_dropped_and_not_after() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let counter = ticks.clone();
        let periodic = Periodic::start("test-ticks", Duration::from_millis(10), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            ControlFlow::Continue(())
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(periodic);
        let at_drop = ticks.load(Ordering::SeqCst);
        assert!(at_drop >= 3, "{at_drop} ticks in 200 ms at a 10 ms interval");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticks.load(Ordering::SeqCst), at_drop, "a dropped thread ticked again");
    }

    #[test]
    fn a_tick_that_breaks_ends_the_thread() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let counter = ticks.clone();
        let _periodic = Periodic::start("test-break", Duration::from_millis(5), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            ControlFlow::Break(())
        });
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticks.load(Ordering::SeqCst), 1);
    }
}
