//! Per-source shares of the reconcile slots: a hung or slow provider holds at most
//! `--provider-concurrency` of the Controller's `--concurrency` slots, so other sources keep
//! their latency.
//!
//! A reconcile whose source has no free share does not wait inside its Controller slot: it is
//! requeued shortly, and the slot serves another Channel meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use crate::crd::{Channel, Source};

/// How soon a reconcile that found its source's share taken is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// The per-source semaphores.
#[derive(Clone)]
pub(crate) struct SourceSlots {
    per_source: usize,
    semaphores: Arc<Mutex<HashMap<Source, Arc<Semaphore>>>>,
}

impl SourceSlots {
    /// `per_source` reconciles of one source at once (at least one).
    pub(crate) fn new(per_source: usize) -> Self {
        SourceSlots {
            per_source: per_source.max(1),
            semaphores: Arc::default(),
        }
    }

    fn try_acquire(&self, source: Source) -> Option<OwnedSemaphorePermit> {
        let semaphore = self
            .semaphores
            .lock()
            .expect("not poisoned")
            .entry(source)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_source)))
            .clone();
        semaphore.try_acquire_owned().ok()
    }

    /// Runs `reconcile` within the Channel's source share, or requeues it when the share is taken.
    pub(crate) async fn run<E, F: Future<Output = Result<Action, E>>>(
        &self,
        ch: &Channel,
        reconcile: impl FnOnce() -> F,
    ) -> Result<Action, E> {
        let Some(_permit) = self.try_acquire(ch.spec.source) else {
            debug!(source = %ch.spec.source.as_str(), "every slot of this source is busy; requeued");
            return Ok(Action::requeue(RETRY));
        };
        reconcile().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChannelSpec;

    fn channel(source: Source) -> Channel {
        Channel::new("c", ChannelSpec::new(source, "x"))
    }

    #[tokio::test]
    async fn a_busy_source_is_requeued_while_other_sources_run() {
        let slots = SourceSlots::new(1);
        let (release, hold) = tokio::sync::oneshot::channel::<()>();
        let fb = channel(Source::Facebook);
        let busy = {
            let slots = slots.clone();
            let fb = fb.clone();
            tokio::spawn(async move {
                slots
                    .run(&fb, || async {
                        let _ = hold.await;
                        Ok::<_, ()>(Action::await_change())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        while slots.try_acquire(Source::Facebook).is_some() {
            tokio::task::yield_now().await;
        }
        let ran = std::sync::atomic::AtomicBool::new(false);
        let second = slots
            .run(&fb, || async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, ()>(Action::await_change())
            })
            .await;
        assert_eq!(second, Ok(Action::requeue(RETRY)));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        let other = slots
            .run(&channel(Source::ChatPlugin), || async {
                Ok::<_, ()>(Action::await_change())
            })
            .await;
        assert_eq!(other, Ok(Action::await_change()));
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(Action::await_change()));
    }
}
