//! What every reconcile shares: clients, providers, the Channel store, and per-Channel memory
//! (failures for the backoff, re-check times, the credentials a connect used).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use super::error::Error;
use super::events::EventPublisher;
use super::feed::ChannelStore;
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
    /// Failures in a row, per Channel key (`namespace/name`, all the retry policy knows).
    failures: Mutex<HashMap<String, u32>>,
    last_checked: Mutex<HashMap<String, Instant>>,
    /// Per Channel uid, the credentials Secret version a connect of this process used and a
    /// digest of the token, keyed per process (never written anywhere): a later version of the
    /// Secret with the same token is not a reason to connect again.
    credentials: Mutex<HashMap<String, (String, u64)>>,
    digests: std::collections::hash_map::RandomState,
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

    /// The other Channels with the source and source channel id of `ch`, read from the API
    /// server (the index knows which; nearly always none).
    pub(super) async fn same_id(&self, ch: &Channel) -> Result<Vec<Channel>, Error> {
        let mut found = Vec::new();
        for key in self.store.same_id(ch) {
            let (namespace, name) = super::index::split(&key);
            let api: Api<Channel> = Api::namespaced(self.client.clone(), namespace);
            found.extend(api.get_opt(name).await?);
        }
        Ok(found)
    }

    /// Counts one more failure of the Channel `key`; returns how many in a row.
    pub(super) fn failed(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().expect("not poisoned");
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    pub(super) fn succeeded(&self, key: &str) {
        self.failures.lock().expect("not poisoned").remove(key);
    }

    /// Forgets a Channel that is gone.
    pub(super) fn forget(&self, ch: &Channel) {
        let uid = ch.uid().unwrap_or_default();
        self.last_checked.lock().expect("not poisoned").remove(&uid);
        self.credentials.lock().expect("not poisoned").remove(&uid);
        self.refused.lock().expect("not poisoned").remove(&uid);
        self.failures
            .lock()
            .expect("not poisoned")
            .remove(&super::index::key_of(ch));
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
