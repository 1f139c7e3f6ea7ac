//! The one CPU hint the search uses: start loading a cache line that is about to be read.

/// Asks the CPU to start loading the cache line holding `p` into all cache levels. Only a hint:
/// it reads nothing into the program, and any address is allowed. A no-op off x86-64.
#[inline]
pub(crate) fn prefetch_read<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache: it reads nothing into the program and
    // cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
