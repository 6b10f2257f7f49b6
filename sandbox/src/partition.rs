//! Network partitions of single clients, and the record of who wrote when.
//!
//! A partitioned user's requests reach the sandbox but are not acted on: a request waits before
//! it is applied, and the events of the user's open watches wait before they are sent, until the
//! partition heals — like packets delayed by a network partition, while the client process stays
//! alive and other clients are served normally. A request whose client gave up meanwhile (closed
//! its connection) is never applied; one still waiting at the heal is applied then, as delayed
//! packets arrive late.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::watch;

/// The users cut off and the writes applied per user.
pub struct Partitions {
    cut: Mutex<HashSet<String>>,
    changed: watch::Sender<u64>,
    writes: Mutex<HashMap<String, Vec<(Instant, String)>>>,
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions {
            cut: Mutex::default(),
            changed: watch::channel(0).0,
            writes: Mutex::default(),
        }
    }
}

impl Partitions {
    fn is_cut(&self, user: &str) -> bool {
        self.cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(user)
    }

    /// Cuts `user` off until [`Partitions::heal`].
    pub fn cut(&self, user: &str) {
        self.cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_string());
        self.changed.send_modify(|v| *v += 1);
    }

    /// Serves `user` again.
    pub fn heal(&self, user: &str) {
        self.cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Returns once `user` is not cut off.
    pub async fn pass(&self, user: &str) {
        let mut rx = self.changed.subscribe();
        while self.is_cut(user) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Records a write (`verb resource`) applied for `user`.
    pub fn record_write(&self, user: &str, what: String) {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user.to_string())
            .or_default()
            .push((Instant::now(), what));
    }

    /// Every write applied for `user`, oldest first.
    pub fn writes_by(&self, user: &str) -> Vec<(Instant, String)> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .cloned()
            .unwrap_or_default()
    }
}
