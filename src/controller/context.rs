//! What every reconcile shares: clients, providers, the Channel store, and per-Channel memory
//! (failures for the backoff, re-check times, the last status this process wrote).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use super::error::Error;
use super::events::EventPublisher;
use super::index::ChannelStore;
use super::provider_configs::ProviderConfigs;
use super::secrets::Credentials;
use super::watch::SecretAccess;
use crate::crd::Channel;
use crate::metrics::Metrics;
use crate::providers::{ProviderError, Providers};
use crate::secret::SecretString;

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
    pub secret_access: SecretAccess,
    /// The chat plugin's name in channel ids (`--chatplugin-naming`).
    pub naming: crate::naming::ChatPluginNaming,
    /// The operator's state namespace (`--state-namespace`): the claims of channel ids
    /// (`crate::claims`), the Channels' records (`record`) and the entries of shared provider
    /// effects (`entries`).
    pub state_namespace: String,
    /// How long before its token expires a Channel reports `CredentialsHealthy=False,
    /// ExpiringSoon` (`--credentials-warning-days`).
    pub credentials_warning: Duration,
}

/// What every reconcile shares.
pub struct Context {
    pub(super) client: Client,
    pub(super) providers: Providers,
    pub(super) events: EventPublisher,
    pub(super) metrics: Arc<Metrics>,
    pub(super) store: ChannelStore,
    pub(super) config: Config,
    pub(super) provider_configs: Arc<ProviderConfigs>,
    failures: Mutex<HashMap<String, u32>>,
    last_checked: Mutex<HashMap<String, Instant>>,
    /// Per Channel uid, the credentials Secret version a connect of this process used and a
    /// digest of the token, keyed per process (never written anywhere): a later version of the
    /// Secret with the same token is not a reason to connect again.
    credentials: Mutex<HashMap<String, (String, u64)>>,
    digests: std::collections::hash_map::RandomState,
    /// The last status this process wrote, per Channel uid: a cached object that does not show
    /// it yet is stale, and deciding from its status could connect a channel twice.
    last_write: Mutex<LastWrites>,
    /// Per Channel uid, the credentials version whose token a connect found not to work, and
    /// that token (in memory only, never written): no connect with those credentials until a
    /// re-check finds the token working again (`credentials`).
    refused: Mutex<HashMap<String, (String, SecretString)>>,
}

impl Context {
    /// Builds the context. `store` is the Channel store (used to find duplicates);
    /// `provider_configs` decide with which accounts each Channel's provider is called.
    pub(crate) fn new(
        client: Client,
        providers: Providers,
        events: EventPublisher,
        metrics: Arc<Metrics>,
        store: ChannelStore,
        config: Config,
        provider_configs: Arc<ProviderConfigs>,
    ) -> Self {
        Context {
            client,
            providers,
            events,
            metrics,
            store,
            config,
            provider_configs,
            failures: Mutex::new(HashMap::new()),
            last_checked: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            digests: Default::default(),
            last_write: Mutex::new(LastWrites::default()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn channels(&self, ch: &Channel) -> Api<Channel> {
        Api::namespaced(self.client.clone(), &ch.namespace().unwrap_or_default())
    }

    /// The claims of channel ids and the entries of shared provider effects (Leases in the state
    /// namespace).
    pub(super) fn leases(&self) -> Api<k8s_openapi::api::coordination::v1::Lease> {
        Api::namespaced(self.client.clone(), &self.config.state_namespace)
    }

    /// The Channels' records (Secrets in the state namespace).
    pub(super) fn records(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.config.state_namespace)
    }

    /// The Secrets of the Channel's namespace; `CredentialsMissing` where `--secret-namespaces`
    /// does not include it (the operator neither reads nor writes Secrets there).
    pub(super) fn secrets(&self, ch: &Channel) -> Result<Api<Secret>, Error> {
        let ns = ch.namespace().unwrap_or_default();
        if !self.config.secret_access.allows(&ns) {
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

    /// Remembers the credentials a connect of the Channel `uid` used.
    pub(super) fn connected_with(&self, uid: &str, c: &Credentials) {
        let digest = self.digests.hash_one(c.token.expose());
        self.credentials
            .lock()
            .expect("not poisoned")
            .insert(uid.to_owned(), (c.version.clone(), digest));
    }

    /// The version of the credentials this process connected the Channel `uid` with, when `c`
    /// holds the same token under another version.
    pub(super) fn same_credentials(&self, uid: &str, c: &Credentials) -> Option<String> {
        let map = self.credentials.lock().expect("not poisoned");
        let (version, digest) = map.get(uid)?;
        (*digest == self.digests.hash_one(c.token.expose())).then(|| version.clone())
    }

    /// Whether the cached Channel predates the last status this process wrote for it.
    pub(super) fn is_stale(&self, ch: &Channel) -> bool {
        self.last_write
            .lock()
            .expect("not poisoned")
            .is_stale(ch, Instant::now())
    }

    /// Remembers a status this process wrote (the object the write returned).
    pub(super) fn wrote(&self, written: &Channel) {
        self.last_write
            .lock()
            .expect("not poisoned")
            .wrote(written, Instant::now());
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
        self.last_write.lock().expect("not poisoned").forget(uid);
        self.last_checked.lock().expect("not poisoned").remove(uid);
        self.credentials.lock().expect("not poisoned").remove(uid);
        self.failures.lock().expect("not poisoned").remove(uid);
        self.refused.lock().expect("not poisoned").remove(uid);
    }

    /// Remembers that the token a connect of Channel `uid` obtained with credentials `version`
    /// does not work; `None` forgets it.
    pub(super) fn refuse(&self, uid: &str, refused: Option<(String, SecretString)>) {
        let mut map = self.refused.lock().expect("not poisoned");
        match refused {
            Some(r) => map.insert(uid.to_owned(), r),
            None => map.remove(uid),
        };
    }

    /// The token a connect of Channel `uid` found not to work, while its credentials are still
    /// at `version`.
    pub(super) fn refused(&self, uid: &str, version: &str) -> Option<SecretString> {
        let map = self.refused.lock().expect("not poisoned");
        map.get(uid)
            .filter(|(v, _)| v == version)
            .map(|(_, t)| t.clone())
    }
}

/// How long a status write may stay unseen before it counts as overtaken: by then a writer other
/// than this process (a previous leader, a user editing the status) has changed the status, or
/// the watch is broken and reconciles fail on the API anyway.
const UNSEEN_LIMIT: Duration = Duration::from_secs(30);

/// The status writes of this process not seen in the cache yet. A resourceVersion is opaque:
/// it is only compared for equality. A cached Channel shows the write when it is the written
/// object (same resourceVersion) or a later one still carrying the written status (only the
/// controller writes the status; later spec or metadata changes keep it).
#[derive(Default)]
struct LastWrites(HashMap<String, Written>, usize);

struct Written {
    resource_version: Option<String>,
    status: u64,
    at: Instant,
}

fn status_digest(ch: &Channel) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&ch.status)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// Every this many writes, the writes overtaken (older than [`UNSEEN_LIMIT`]) are dropped: a
/// write is otherwise forgotten only by the next reconcile of its Channel, which for a Channel
/// that stays as it is may never come.
const PRUNE_EVERY: usize = 1024;

impl LastWrites {
    fn wrote(&mut self, written: &Channel, now: Instant) {
        self.1 += 1;
        if self.1.is_multiple_of(PRUNE_EVERY) {
            self.0
                .retain(|_, w| now.duration_since(w.at) <= UNSEEN_LIMIT);
        }
        if let Some(uid) = written.uid() {
            let w = Written {
                resource_version: written.metadata.resource_version.clone(),
                status: status_digest(written),
                at: now,
            };
            self.0.insert(uid, w);
        }
    }

    /// Whether `cached` does not show the last write yet; forgets the write once it does.
    fn is_stale(&mut self, cached: &Channel, now: Instant) -> bool {
        let Some(uid) = cached.uid() else {
            return false;
        };
        let Some(w) = self.0.get(&uid) else {
            return false;
        };
        let seen = (w.resource_version.is_some()
            && w.resource_version == cached.metadata.resource_version)
            || w.status == status_digest(cached);
        if seen || now.duration_since(w.at) > UNSEEN_LIMIT {
            self.0.remove(&uid);
            return false;
        }
        true
    }

    fn forget(&mut self, uid: &str) {
        self.0.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChannelSpec, ChannelStatus, Source};

    fn channel(rv: &str, connected: bool) -> Channel {
        let mut ch = Channel::new("c", ChannelSpec::new(Source::Google, "gbm"));
        ch.metadata.uid = Some("uid-1".into());
        ch.metadata.resource_version = Some(rv.into());
        ch.status = Some(ChannelStatus {
            connected,
            ..Default::default()
        });
        ch
    }

    #[test]
    fn a_cache_without_the_write_is_stale_whatever_the_resource_versions_look_like() {
        let now = Instant::now();
        // Opaque versions that do not sort as numbers (nor as strings) the way they were written.
        let before = channel("etcd-b7", false);
        let written = channel("etcd-a3", true);
        let mut w = LastWrites::default();
        w.wrote(&written, now);
        assert!(w.is_stale(&before, now));
        assert!(
            w.is_stale(&before, now),
            "stays stale until the write shows"
        );
        assert!(!w.is_stale(&written, now));
        // Seen once, forgotten: an object of any version is fresh again.
        assert!(!w.is_stale(&before, now));
    }

    #[test]
    fn a_later_change_carrying_the_written_status_is_fresh() {
        let now = Instant::now();
        let mut w = LastWrites::default();
        w.wrote(&channel("x1", true), now);
        // A spec change after the write: another version, the written status.
        assert!(!w.is_stale(&channel("zz9", true), now));
    }

    #[test]
    fn writes_of_channels_never_reconciled_again_are_dropped_once_overtaken() {
        let now = Instant::now();
        let mut w = LastWrites::default();
        for i in 0..PRUNE_EVERY - 1 {
            let mut c = channel("1", true);
            c.metadata.uid = Some(format!("uid-{i}"));
            w.wrote(&c, now);
        }
        assert_eq!(w.0.len(), PRUNE_EVERY - 1);
        w.wrote(
            &channel("2", true),
            now + UNSEEN_LIMIT + Duration::from_secs(1),
        );
        assert_eq!(w.0.len(), 1, "only the last write is kept");
    }

    #[test]
    fn a_write_overtaken_by_another_writer_is_forgotten_after_the_limit() {
        let now = Instant::now();
        let mut w = LastWrites::default();
        w.wrote(&channel("x1", true), now);
        let other = channel("x2", false);
        assert!(w.is_stale(&other, now + Duration::from_secs(1)));
        assert!(!w.is_stale(&other, now + UNSEEN_LIMIT + Duration::from_secs(1)));
        w.wrote(&channel("x3", true), now);
        w.forget("uid-1");
        assert!(!w.is_stale(&other, now));
    }
}
