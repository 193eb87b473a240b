//! The C allocator's settings in a process that trains.
//!
//! Every training step allocates and frees the same large buffers (activations, gradients):
//! LibTorch through `posix_memalign`, flex through Rust's allocator, glibc's malloc under both
//! on Linux. By default glibc serves a block above an adaptive threshold with a fresh `mmap`
//! and returns the heap's free top to the kernel, so each step pays page faults to map again the
//! memory the previous one gave back (16% of the default experiment's small-CNN cell on
//! LibTorch). With the thresholds set here, blocks up to 32 MiB come from the heap and up to
//! 256 MiB of free heap is kept: that cell's whole process went from 3.35 s to 2.97 s for 5%
//! more peak RSS. Larger blocks (a ResNet-50's biggest activations) are still mapped and
//! returned. Elsewhere this does nothing.

/// Blocks up to this size come from the heap, not from `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Free memory at the top of the heap is given back beyond this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 << 20;

/// Makes freed memory reusable without page faults for the rest of the process.
pub fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's thresholds; any value is valid for both.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    fn minor_faults() -> i64 {
        // SAFETY: getrusage writes into the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) }, 0);
        usage.ru_minflt
    }

    /// Faults taken to allocate, fill and free an 8 MiB buffer.
    fn faults_of_one_buffer() -> i64 {
        let before = minor_faults();
        let buffer = std::hint::black_box(vec![1u8; 8 << 20]);
        drop(buffer);
        minor_faults() - before
    }

    /// After the settings, a freed 8 MiB buffer (a typical activation) is reused: allocating
    /// it again takes almost none of the 2,048 page faults of mapping it afresh.
    #[test]
    fn a_freed_buffer_is_reused_without_page_faults() {
        keep_freed_memory_for_reuse();
        faults_of_one_buffer();
        let again = faults_of_one_buffer();
        assert!(again < 100, "{again} page faults for a buffer allocated before");
    }
}
