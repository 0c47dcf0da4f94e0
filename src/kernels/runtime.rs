//! Process-wide CPU settings that the training hot path depends on, applied by the program itself (not left to
//! the user's environment): glibc malloc tunables and candle's own CPU thread pool.

use std::sync::Once;

static CONFIGURE: Once = Once::new();

/// Applies the CPU runtime settings once. Call at the start of `main`, before any thread or tensor exists.
///
/// - malloc: activations and gradients are multi-megabyte buffers freed and re-allocated every step. glibc's
///   defaults serve each from a fresh `mmap` (zeroed pages, one page fault per 4 KiB) and trim freed memory back to
///   the OS; raising the mmap and trim thresholds keeps them in the heap for reuse.
/// - candle's CPU backend runs element-wise ops on its own spinning barrier pool with one thread per core, next to
///   rayon's pool (our kernels and gemm): on 2 cores the two pools spin against each other. Element-wise ops are
///   memory-bound, so they run on one thread (`CANDLE_NUM_THREADS=1`) unless the user set that variable.
pub fn configure_cpu_runtime() {
    CONFIGURE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; called once, before other threads allocate.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            // Safe in edition 2021; done before any other thread exists.
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
    });
}
