//! A watch with its own short backoff whose errors never reach the caller: logged at warn,
//! reported to a [`WatchHealth`] (the controller's metrics, the API's cache and metrics) and
//! retried. Used by the controller's watches and by the API's channel cache alike.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tracing::{debug, warn};

/// Watch retry delays: 100 ms doubling to 4 s with jitter, back to 100 ms after any success. A
/// routine re-list (410) is retried almost at once; an apiserver that is down is polled often
/// enough to resume within seconds of its return.
pub(crate) struct WatchBackoff {
    next: Duration,
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(4);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: FIRST_RETRY }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = (current * 2).min(MAX_RETRY);
        Some(current.mul_f64(0.5 + rand::random::<f64>() * 0.5))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

/// Where a tracked watch reports its health: the controller's metrics, or the API's cache.
pub(crate) trait WatchHealth: Send + 'static {
    /// A watch error or a re-list: counted, and the watch is failing until [`Self::watch_ok`].
    fn watch_failed(&self, resource: &str);
    /// The watch is established (its list is complete, events flow).
    fn watch_ok(&self, resource: &str);
}

/// A watch of `api` with the short retry backoff ([`WatchBackoff`]), its errors taken out (see
/// [`tracked`]).
pub(crate) fn tracked_watch<K>(
    api: Api<K>,
    resource: &'static str,
    health: impl WatchHealth,
) -> impl Stream<Item = Event<K>> + Send + 'static
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let events =
        watcher(api, watcher::Config::default().any_semantic()).backoff(WatchBackoff::default());
    tracked(events, resource, health)
}

/// The watcher events of one resource with its errors taken out: logged at warn, counted, and
/// retried by the watch's own backoff. Re-lists after the first list are counted too.
pub(crate) fn tracked<K: Send + 'static>(
    events: impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
    resource: &'static str,
    metrics: impl WatchHealth,
) -> impl Stream<Item = Event<K>> + Send + 'static {
    let mut listed = false;
    events.filter_map(move |event| {
        let out = match event {
            Err(e) => {
                warn!(resource, error = %e, "watch failed; retrying");
                metrics.watch_failed(resource);
                None
            }
            Ok(Event::Init) => {
                if listed {
                    warn!(resource, "re-listing after the watch was interrupted");
                    metrics.watch_failed(resource);
                }
                Some(Event::Init)
            }
            Ok(Event::InitDone) => {
                listed = true;
                debug!(resource, "list complete; watching");
                metrics.watch_ok(resource);
                Some(Event::InitDone)
            }
            Ok(other) => {
                if listed {
                    metrics.watch_ok(resource);
                }
                Some(other)
            }
        };
        std::future::ready(out)
    })
}
