//! Connects and disconnects of one channel in this process, one after another: a lock per
//! channel id ([`IdLocks`]). Across API replicas the Channel itself serializes them (see
//! `AppState::patch_after_verdict`).

use std::collections::HashMap;
use std::sync::Arc;

/// One lock per channel id: connects and disconnects of one channel run one after another in
/// this process, so each answer reflects its own token.
#[derive(Clone, Default)]
pub struct IdLocks(Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

/// Holds a channel id's lock; forgets the lock when nobody else waits for it.
pub struct IdGuard {
    locks: IdLocks,
    id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl IdLocks {
    /// Waits for the id's lock.
    pub async fn lock(&self, id: &str) -> IdGuard {
        let lock = self
            .0
            .lock()
            .expect("id locks")
            .entry(id.to_owned())
            .or_default()
            .clone();
        IdGuard {
            locks: self.clone(),
            id: id.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for IdGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.0.lock().expect("id locks");
        // Only the map holds it: nobody waits.
        if map.get(&self.id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.id);
        }
    }
}
