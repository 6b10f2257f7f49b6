//! Connects of one channel, one after another: in one process through a lock per channel id
//! ([`IdLocks`]), across API replicas through the Channel itself — its spec is changed only once
//! the controller has given its verdict on the current generation, and only if nothing changed
//! since that was read (a resourceVersion precondition).

use std::collections::HashMap;
use std::sync::Arc;

use kube::api::Patch;
use kube::ResourceExt;
use serde_json::json;

use super::error::ApiError;
use super::writes::{kube_error, patch_params, retry};
use super::AppState;
use crate::crd::Channel;
use crate::reason::Reason;

/// One lock per channel id: connects and disconnects of one channel run one after another in
/// this process, so each answer reflects its own token. (Across replicas: see
/// `AppState::patch_settled`.)
#[derive(Clone, Default)]
pub struct IdLocks(Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

/// Holds a channel id's lock; forgets the lock when nobody else waits for it.
pub struct IdGuard {
    locks: IdLocks,
    id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl IdLocks {
    /// Waits for the id's turn.
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

impl AppState {
    /// Patches the spec of a Channel no other connect is waiting on: the Channel as read now must
    /// carry the controller's verdict on its generation, and the patch is conditional on that
    /// read (its resourceVersion). Connects of one channel through several API replicas are
    /// serialized this way, as [`IdLocks`] serializes them in one: a connect whose Channel is
    /// still being connected by another request answers 409 and changes nothing. Returns the
    /// spec the patch was applied to, and the patched Channel.
    pub(super) async fn patch_settled(
        &self,
        ns: &str,
        name: &str,
        spec: serde_json::Value,
    ) -> Result<(crate::crd::ChannelSpec, Channel), ApiError> {
        let api = self.channels(ns);
        let pparams = patch_params();
        for _ in 0..3 {
            let current = retry(false, || api.get(name)).await.map_err(kube_error)?;
            if current.metadata.deletion_timestamp.is_some() || !settled(&current) {
                return Err(in_progress());
            }
            let patch = Patch::Merge(json!({
                "metadata": {"resourceVersion": current.resource_version()},
                "spec": spec,
            }));
            match retry(false, || api.patch(name, &pparams, &patch)).await {
                Ok(p) => return Ok((current.spec, p)),
                // Changed since the read (a status write, or another request): read again.
                Err(kube::Error::Api(s)) if s.is_conflict() => continue,
                Err(e) => return Err(kube_error(e)),
            }
        }
        Err(in_progress())
    }
}

/// Whether the controller has given its verdict on the Channel's current generation (Ready or
/// not, but no longer `Progressing`): no connect is waiting on it.
fn settled(ch: &Channel) -> bool {
    ch.verdict_at(ch.metadata.generation.unwrap_or(0))
        .is_some_and(|c| c.reason.as_str() != Reason::Progressing)
}

/// The answer to a connect of a channel another request is connecting.
fn in_progress() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "the channel is being connected by another request; try again once that is done",
    )
}
