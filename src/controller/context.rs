//! What every reconcile shares: clients, providers, the Channel cache, and per-Channel memory
//! (failures for the backoff, re-check times, the last status this process wrote).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};

use super::error::Error;
use super::events::EventPublisher;
use super::watch::SecretScope;
use crate::crd::Channel;
use crate::metrics::Metrics;
use crate::providers::{ProviderError, Providers};

/// The controller's settings, independent of how they were given (flags, a test, a benchmark).
#[derive(Clone, Debug)]
pub struct Config {
    /// First retry delay after a failure (doubles per failure).
    pub min_backoff: Duration,
    /// Upper bound of the retry delay.
    pub max_backoff: Duration,
    /// Interval after which a connected channel is re-checked at its provider.
    pub resync: Duration,
    /// Where Secrets may be read and written (`--secret-namespaces`).
    pub secret_scope: SecretScope,
    /// The chat plugin's name in channel ids (`--chatplugin-naming`).
    pub naming: crate::naming::ChatPluginNaming,
}

/// What every reconcile shares.
pub struct Context {
    pub(super) client: Client,
    pub(super) providers: Providers,
    pub(super) events: EventPublisher,
    pub(super) metrics: Arc<Metrics>,
    pub(super) store: Store<Channel>,
    pub(super) config: Config,
    failures: Mutex<HashMap<String, u32>>,
    last_checked: Mutex<HashMap<String, Instant>>,
    /// resourceVersion of the last status this process wrote, per Channel uid: a cached object
    /// older than that is stale, and deciding from its status could connect a channel twice.
    last_write: Mutex<HashMap<String, u64>>,
}

impl Context {
    /// Builds the context. `store` is the Channel cache (used to find duplicates).
    pub fn new(
        client: Client,
        providers: Providers,
        events: EventPublisher,
        metrics: Arc<Metrics>,
        store: Store<Channel>,
        config: Config,
    ) -> Self {
        Context {
            client,
            providers,
            events,
            metrics,
            store,
            config,
            failures: Mutex::new(HashMap::new()),
            last_checked: Mutex::new(HashMap::new()),
            last_write: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn channels(&self, ch: &Channel) -> Api<Channel> {
        Api::namespaced(self.client.clone(), &ch.namespace().unwrap_or_default())
    }

    /// The Secrets of the Channel's namespace; `CredentialsMissing` where `--secret-namespaces`
    /// does not include it (the operator neither reads nor writes Secrets there).
    pub(super) fn secrets(&self, ch: &Channel) -> Result<Api<KubeSecret>, Error> {
        let ns = ch.namespace().unwrap_or_default();
        if !self.config.secret_scope.allows(&ns) {
            return Err(ProviderError::CredentialsMissing(format!(
                "the operator is not configured to read Secrets in namespace {ns} (--secret-namespaces)"
            ))
            .into());
        }
        Ok(Api::namespaced(self.client.clone(), &ns))
    }

    /// Whether a connected channel is due for a provider re-check. A channel this process has not
    /// seen yet counts as just checked: a restart is not a reason to call every provider.
    pub(super) fn recheck_due(&self, uid: &str) -> bool {
        let mut map = self.last_checked.lock().expect("not poisoned");
        match map.get(uid) {
            Some(t) if t.elapsed() >= self.config.resync => true,
            Some(_) => false,
            None => {
                map.insert(uid.to_owned(), Instant::now());
                false
            }
        }
    }

    pub(super) fn mark_checked(&self, uid: &str) {
        self.last_checked
            .lock()
            .expect("not poisoned")
            .insert(uid.to_owned(), Instant::now());
    }

    /// Whether the cached Channel predates the last status this process wrote for it.
    pub(super) fn is_stale(&self, ch: &Channel) -> bool {
        let (Some(uid), Some(rv)) = (ch.uid(), parse_rv(ch)) else {
            return false;
        };
        self.last_write
            .lock()
            .expect("not poisoned")
            .get(&uid)
            .is_some_and(|written| rv < *written)
    }

    /// Remembers the resourceVersion of a status this process wrote.
    pub(super) fn wrote(&self, written: &Channel) {
        if let (Some(uid), Some(rv)) = (written.uid(), parse_rv(written)) {
            self.last_write
                .lock()
                .expect("not poisoned")
                .insert(uid, rv);
        }
    }

    /// Counts one more failure of the Channel; returns how many in a row.
    pub(super) fn failed(&self, uid: &str) -> u32 {
        let mut failures = self.failures.lock().expect("not poisoned");
        let n = failures.entry(uid.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    pub(super) fn succeeded(&self, uid: &str) {
        self.failures.lock().expect("not poisoned").remove(uid);
    }

    /// Forgets a Channel that is gone.
    pub(super) fn forget(&self, uid: &str) {
        self.last_write.lock().expect("not poisoned").remove(uid);
        self.last_checked.lock().expect("not poisoned").remove(uid);
        self.failures.lock().expect("not poisoned").remove(uid);
    }
}

fn parse_rv(ch: &Channel) -> Option<u64> {
    ch.metadata.resource_version.as_deref()?.parse().ok()
}
