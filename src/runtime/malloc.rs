//! The allocator's configuration: one heap, as in the production build.
//!
//! The image's binary is static (musl), whose allocator keeps one heap for all threads. A glibc
//! build (development, tests, the benchmark) gives each thread that allocates its own arena;
//! with tokio's workers reading responses and the controller's task decoding and freeing them,
//! each arena keeps its own free memory, and the resident size was about twice what the process
//! holds (10,000 Channels: the controller's peak RSS 45 MiB with the arenas, 31 MiB with one).

/// Limits glibc's allocator to one arena. Call before any thread is started; nothing elsewhere.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
