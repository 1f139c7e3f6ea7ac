//! How the probing process keeps its memory: libtorch's CPU tensors come from `malloc`, and a
//! forward pass frees and reallocates activation buffers of tens of MiB every batch. With glibc's
//! defaults, buffers over its mmap threshold (at most 32 MiB) are mapped for each allocation and
//! unmapped when freed, and the top of the heap is given back to the system once 128 KiB are
//! free, so every batch faults its activations in again, page by page. Probing keeps freed memory
//! instead: allocations come from the heap and stay there for the next batch, and the process's
//! resident memory stays at the peak of one batch. The benchmark's raw forward loop, which keeps
//! glibc's defaults, runs at 0.6x to 0.8x the tool's rate (docs/benchmarks.md, "Probing
//! throughput").

/// Serves allocations of up to 1 GiB from the heap and keeps up to 2 GiB of freed memory (glibc;
/// elsewhere nothing). Called once before the first model runs.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt changes two numeric settings of glibc's allocator, which it reads under its
    // own lock; no memory is touched. A refused setting (returns 0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
