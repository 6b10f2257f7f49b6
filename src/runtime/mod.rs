//! The plumbing the controller and the HTTP API both run on: one shutdown signal for the process
//! ([`Shutdown`]), watches with their own backoff whose errors are logged and counted
//! (`tracked_watch`), tasks that end with their owner ([`AbortOnDrop`]), and the allocator's
//! configuration ([`malloc`]).

pub mod malloc;
mod shutdown;
pub(crate) mod tracked_watch;

pub use shutdown::Shutdown;
pub(crate) use tracked_watch::WatchHealth;

/// A spawned task, aborted when this handle is dropped: a task that serves its owner ends with it.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
