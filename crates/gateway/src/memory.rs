//! Config flow, after a load or reload: memory the parse freed goes back to the system.
//!
//! Loading 10,000 routes allocates tens of MB that are freed when it ends (the manifests as read,
//! each YAML tree on the way, all of them when the config has an error). An allocator keeps freed
//! memory for reuse, so without a release the idle process would stay at the load's peak and
//! every reload could add another. Which call releases it depends on the allocator, and the allocator is
//! the binary's choice: the binary registers its release with [`set_release`]; a library user
//! (the tests) gets glibc's `malloc_trim`.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers how the process's allocator hands free memory back (once, at start-up).
pub fn set_release(release: fn()) {
    // A second registration keeps the first: there is one allocator per process.
    let _ = RELEASE.set(release);
}

/// Hands memory freed by a config load back to the system, on the calling thread (allocators with
/// per-thread heaps release what that thread freed).
pub(crate) fn release_freed() {
    if let Some(release) = RELEASE.get() {
        release();
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free pages of glibc's arenas; it takes no pointers
    // and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
