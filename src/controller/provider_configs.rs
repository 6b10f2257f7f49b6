//! The provider configurations of the controller: the caches of `ProviderConfig` and
//! `ClusterProviderConfig` objects, the providers built with a configuration's accounts, and the
//! reconciles a change of a configuration triggers.
//!
//! Which configuration a Channel uses is [`crate::provider_config::choose`]; here it is looked up
//! and its Secrets read: a `ProviderConfig`'s in its own namespace, a `ClusterProviderConfig`'s in
//! the operator's namespace only. The providers built from them share the one HTTP client and are
//! kept per configuration while the configuration and its Secrets keep their resourceVersions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

use super::error::Error;
use super::feed::ChannelStore;
use super::watch::SecretAccess;
use crate::crd::{Channel, SecretKeyRef};
use crate::effects::ConfigRef;
use crate::metrics::Metrics;
use crate::provider_config::{
    choose, needs_provider_config, Accounts, Candidates, Chosen, ClusterProviderConfig,
    FlagsDefault, ProviderConfig, ProviderConfigKind,
};
use crate::providers::Providers;
use crate::runtime::tracked_watch::{tracked, WatchBackoff};
use crate::secret::SecretString;

/// The resource names of the configuration watches (metrics).
pub const PROVIDER_CONFIGS: &str = "providerconfigs";
/// See [`PROVIDER_CONFIGS`].
pub const CLUSTER_PROVIDER_CONFIGS: &str = "clusterproviderconfigs";

/// The configurations known to the controller and the providers built from them.
pub struct ProviderConfigs {
    base: Providers,
    flags: FlagsDefault,
    namespaced: Store<ProviderConfig>,
    cluster: Store<ClusterProviderConfig>,
    synced: Arc<[AtomicBool; 2]>,
    /// Poked when a configuration is listed, changed or deleted.
    changes: Arc<tokio::sync::Notify>,
    /// Per configuration (`kind/namespace/name`): the generation and Secret versions it was built
    /// from, and the providers.
    built: Mutex<HashMap<String, (String, Providers)>>,
}

/// The writers of the configuration caches, fed by [`ProviderConfigs::triggers`].
pub struct Writers {
    namespaced: Writer<ProviderConfig>,
    cluster: Writer<ClusterProviderConfig>,
}

/// The configuration object a Channel's providers are of.
#[derive(Clone, Debug, PartialEq)]
pub struct UsedConfig {
    /// Which (kind, namespace, name, uid).
    pub reference: ConfigRef,
    /// Whether it is being deleted: it admits no new connect (the ones made stay until undone).
    pub deleting: bool,
}

impl UsedConfig {
    fn of(chosen: &Chosen) -> Option<UsedConfig> {
        let (kind, meta) = match chosen {
            Chosen::Flags => return None,
            Chosen::Namespaced(pc) => (ProviderConfigKind::ProviderConfig, &pc.metadata),
            Chosen::Cluster(cpc) => (ProviderConfigKind::ClusterProviderConfig, &cpc.metadata),
        };
        Some(UsedConfig {
            reference: ConfigRef {
                kind: Some(kind),
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
            },
            deleting: meta.deletion_timestamp.is_some(),
        })
    }
}

/// The accounts of a configuration with their secrets read.
pub(super) struct ReadAccounts {
    facebook: Option<(String, SecretString)>,
    twilio: Option<(String, SecretString, String)>,
    /// The resourceVersions of the Secrets read.
    versions: String,
}

impl ReadAccounts {
    /// The resourceVersions of the Secrets read.
    pub(super) fn versions(&self) -> &str {
        &self.versions
    }
}

impl ProviderConfigs {
    /// Configurations over empty caches, to be filled by [`Self::triggers`] with `Writers`.
    /// `base` are the providers of the flags' default.
    pub fn new(base: Providers, flags: FlagsDefault) -> (Self, Writers) {
        let (namespaced, namespaced_writer) = reflector::store();
        let (cluster, cluster_writer) = reflector::store();
        let configs = ProviderConfigs {
            base,
            flags,
            namespaced,
            cluster,
            synced: Arc::new([AtomicBool::new(false), AtomicBool::new(false)]),
            changes: Arc::new(tokio::sync::Notify::new()),
            built: Mutex::new(HashMap::new()),
        };
        let writers = Writers {
            namespaced: namespaced_writer,
            cluster: cluster_writer,
        };
        (configs, writers)
    }

    /// Configurations with no `ProviderConfig` or `ClusterProviderConfig` at all (nothing is
    /// watched): only the flags' default.
    pub fn flags_only(base: Providers, flags: FlagsDefault) -> Self {
        let (configs, _) = ProviderConfigs::new(base, flags);
        for s in configs.synced.iter() {
            s.store(true, Ordering::SeqCst);
        }
        configs
    }

    /// Returns once a configuration was listed, changed or deleted since the last call.
    pub async fn changed(&self) {
        self.changes.notified().await
    }

    /// Configurations holding exactly these objects, listed (for the pinned scenarios).
    #[cfg(test)]
    pub fn with_objects(
        base: Providers,
        flags: FlagsDefault,
        namespaced: Vec<ProviderConfig>,
        cluster: Vec<ClusterProviderConfig>,
    ) -> Self {
        let (configs, mut writers) = ProviderConfigs::new(base, flags);
        for pc in namespaced {
            writers.namespaced.apply_watcher_event(&Event::Apply(pc));
        }
        for cpc in cluster {
            writers.cluster.apply_watcher_event(&Event::Apply(cpc));
        }
        for s in configs.synced.iter() {
            s.store(true, Ordering::SeqCst);
        }
        configs
    }

    /// The operator's namespace, where a `ClusterProviderConfig`'s Secrets are read.
    pub fn operator_namespace(&self) -> &str {
        &self.flags.operator_namespace
    }

    /// The `ProviderConfig` cache.
    pub fn namespaced(&self) -> &Store<ProviderConfig> {
        &self.namespaced
    }

    /// The `ClusterProviderConfig` cache.
    pub fn cluster(&self) -> &Store<ClusterProviderConfig> {
        &self.cluster
    }

    /// The providers for `ch` and which configuration object they are of (`None`: the flags'):
    /// `Ok(Err(why))` when it has no usable configuration (it must call no provider), an error
    /// when the caches are not filled yet or a Secret cannot be read.
    pub async fn providers_for(
        &self,
        client: &Client,
        secret_access: &SecretAccess,
        ch: &Channel,
    ) -> Result<Result<(Providers, Option<UsedConfig>), String>, Error> {
        if !needs_provider_config(ch.spec.source) {
            return Ok(Ok((self.base.clone(), None)));
        }
        if !self.synced.iter().all(|s| s.load(Ordering::SeqCst)) {
            return Err(Error::NotSynced(
                "the provider configurations are not listed yet".into(),
            ));
        }
        let ns = ch.namespace().unwrap_or_default();
        let namespaced = |name: &str| {
            self.namespaced
                .get(&reflector::ObjectRef::new(name).within(&ns))
        };
        let cluster = |name: &str| self.cluster.get(&reflector::ObjectRef::new(name));
        let reference = ch.spec.provider_config_ref.as_ref();
        let mut candidates = Candidates {
            namespaced: &namespaced,
            cluster: &cluster,
            namespace_labels: None,
            flags: &self.flags,
        };
        let mut chosen = choose(&ns, reference, &candidates);
        // The namespace's labels are read only when a ClusterProviderConfig's selector may
        // admit it (one GET; Namespaces are not watched).
        let labels;
        if chosen.is_err()
            && self
                .cluster
                .state()
                .iter()
                .any(|c| c.spec.namespace_selector.is_some())
        {
            labels = Api::<Namespace>::all(client.clone())
                .get_metadata_opt(&ns)
                .await?
                .map(|n| n.metadata.labels.unwrap_or_default())
                .unwrap_or_default();
            candidates.namespace_labels = Some(&labels);
            chosen = choose(&ns, reference, &candidates);
        }
        let chosen = match chosen {
            Ok(c) => c,
            Err(why) => return Ok(Err(why)),
        };
        let used = UsedConfig::of(&chosen);
        match self.build(client, secret_access, &chosen).await? {
            Ok(providers) => Ok(Ok((providers, used))),
            Err(why) => Ok(Err(why)),
        }
    }

    /// The providers of the configuration `r` an effect was made through, while that very
    /// object (by uid) still exists and its Secrets can be read; the flags' for the flags'.
    /// `None` otherwise: an undo then uses the record's copies.
    pub async fn providers_of(
        &self,
        client: &Client,
        secret_access: &SecretAccess,
        r: &ConfigRef,
    ) -> Result<Option<Providers>, Error> {
        let chosen = match r.kind {
            None => Chosen::Flags,
            Some(ProviderConfigKind::ProviderConfig) => match self
                .namespaced
                .get(&reflector::ObjectRef::new(&r.name).within(&r.namespace))
            {
                Some(pc) if pc.uid().as_deref() == Some(r.uid.as_str()) => Chosen::Namespaced(pc),
                _ => return Ok(None),
            },
            Some(ProviderConfigKind::ClusterProviderConfig) => {
                match self.cluster.get(&reflector::ObjectRef::new(&r.name)) {
                    Some(c) if c.uid().as_deref() == Some(r.uid.as_str()) => Chosen::Cluster(c),
                    _ => return Ok(None),
                }
            }
        };
        Ok(self.build(client, secret_access, &chosen).await?.ok())
    }

    /// The providers of `chosen`, with its Secrets read (kept while the configuration and its
    /// Secrets keep their versions), or why they cannot be read.
    async fn build(
        &self,
        client: &Client,
        secret_access: &SecretAccess,
        chosen: &Chosen,
    ) -> Result<Result<Providers, String>, Error> {
        let (key, accounts, rv, secret_ns) = match chosen {
            Chosen::Flags => return Ok(Ok(self.base.clone())),
            Chosen::Namespaced(pc) => {
                let ns = pc.namespace().unwrap_or_default();
                (
                    format!("ProviderConfig/{ns}/{}", pc.name_any()),
                    pc.accounts(),
                    pc.metadata.generation,
                    ns,
                )
            }
            Chosen::Cluster(cpc) => (
                format!("ClusterProviderConfig/{}", cpc.name_any()),
                cpc.accounts(),
                cpc.metadata.generation,
                self.flags.operator_namespace.clone(),
            ),
        };
        if !secret_access.allows(&secret_ns) {
            return Ok(Err(format!(
                "{}: the operator is not configured to read Secrets in namespace {secret_ns} (--secret-namespaces)",
                chosen.describe()
            )));
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &secret_ns);
        let read = match read_accounts(&secrets, &secret_ns, &accounts).await? {
            Ok(r) => r,
            Err(why) => return Ok(Err(format!("{}: {why}", chosen.describe()))),
        };
        // The configuration's generation (its spec; not its status) and its Secrets' versions.
        let version = format!("{}@{}", rv.unwrap_or_default(), read.versions);
        let mut built = self.built.lock().expect("not poisoned");
        if let Some((v, providers)) = built.get(&key) {
            if *v == version {
                return Ok(Ok(providers.clone()));
            }
        }
        let providers = self.with_accounts(read);
        built.insert(key, (version, providers.clone()));
        Ok(Ok(providers))
    }

    /// Has the configurations' readiness reported again soon (a record naming one went).
    pub fn poke(&self) {
        self.changes.notify_one();
    }

    /// The providers with these accounts (the flags' endpoints and HTTP client).
    pub(super) fn with_accounts(&self, read: ReadAccounts) -> Providers {
        self.base.with_accounts(read.facebook, read.twilio)
    }

    /// Runs the configuration watches (`namespace` empty: every namespace), reflected into the
    /// caches, marking due the Channels a change may concern: those of the namespace of a
    /// changed `ProviderConfig`, every one for a changed `ClusterProviderConfig` (only Channels
    /// whose source needs a configuration).
    pub(crate) fn triggers(
        &self,
        client: Client,
        namespace: &str,
        writers: Writers,
        channels: ChannelStore,
        metrics: Arc<Metrics>,
    ) -> futures::future::BoxFuture<'static, ()> {
        let api: Api<ProviderConfig> = if namespace.is_empty() {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), namespace)
        };
        let synced = self.synced.clone();
        let store = channels.clone();
        let changes = self.changes.clone();
        let mut seen = Generations::default();
        let namespaced = tracked(
            watcher(api, watcher::Config::default().any_semantic())
                .backoff(WatchBackoff::default())
                .reflect(writers.namespaced),
            PROVIDER_CONFIGS,
            metrics.clone(),
        )
        .for_each(move |event| {
            let ns = match &event {
                Event::InitDone => {
                    synced[0].store(true, Ordering::SeqCst);
                    changes.notify_one();
                    None
                }
                Event::Apply(pc) if seen.is_new(pc) => {
                    changes.notify_one();
                    Some(pc.namespace().unwrap_or_default())
                }
                Event::Delete(pc) => {
                    seen.forget(pc);
                    Some(pc.namespace().unwrap_or_default())
                }
                _ => None,
            };
            if let Some(ns) = ns {
                concerned(&store, Some(&ns));
            }
            std::future::ready(())
        });
        if !namespace.is_empty() {
            // A namespaced install watches no cluster-scoped object: only the ProviderConfigs
            // of its namespace and the flags' default serve its Channels.
            self.synced[1].store(true, Ordering::SeqCst);
            return namespaced.boxed();
        }
        let channels_store = channels;
        let synced = self.synced.clone();
        let changes = self.changes.clone();
        let mut seen = Generations::default();
        let cluster = tracked(
            watcher(
                Api::<ClusterProviderConfig>::all(client),
                watcher::Config::default().any_semantic(),
            )
            .backoff(WatchBackoff::default())
            .reflect(writers.cluster),
            CLUSTER_PROVIDER_CONFIGS,
            metrics,
        )
        .for_each(move |event| {
            let all = match &event {
                Event::InitDone => {
                    synced[1].store(true, Ordering::SeqCst);
                    changes.notify_one();
                    false
                }
                Event::Apply(cpc) if seen.is_new(cpc) => {
                    changes.notify_one();
                    true
                }
                Event::Delete(cpc) => {
                    seen.forget(cpc);
                    true
                }
                _ => false,
            };
            if all {
                concerned(&channels_store, None);
            }
            std::future::ready(())
        });
        async move {
            futures::join!(namespaced, cluster);
        }
        .boxed()
    }
}

/// The generation last seen of each configuration, and whether it was being deleted: only a new
/// one (a spec change, a new object, its deletion) concerns Channels and its status, not the
/// configuration's own status writes.
#[derive(Default)]
struct Generations(HashMap<String, (Option<i64>, bool)>);

impl Generations {
    fn is_new<K: kube::Resource>(&mut self, object: &K) -> bool {
        let uid = object.meta().uid.clone().unwrap_or_default();
        let seen = (
            object.meta().generation,
            object.meta().deletion_timestamp.is_some(),
        );
        self.0.insert(uid, seen) != Some(seen)
    }

    fn forget<K: kube::Resource>(&mut self, object: &K) {
        self.0
            .remove(&object.meta().uid.clone().unwrap_or_default());
    }
}

/// Marks due the Channels of `namespace` (`None`: of every namespace) whose source needs a
/// configuration.
fn concerned(store: &ChannelStore, namespace: Option<&str>) {
    store.mark_due_where(|key, e| {
        needs_provider_config(e.source)
            && namespace.is_none_or(|ns| super::index::split(key).0 == ns)
    });
}

/// Reads the Secrets of `accounts` in `namespace` (`secrets`): `Ok(Err(why))` when one or a key
/// is missing or empty (the message names them, never a value).
pub(super) async fn read_accounts(
    secrets: &Api<Secret>,
    namespace: &str,
    accounts: &Accounts,
) -> Result<Result<ReadAccounts, String>, kube::Error> {
    let mut versions = Vec::new();
    let mut facebook = None;
    if let Some(app) = &accounts.facebook {
        match read_key(
            secrets,
            namespace,
            &app.app_secret_ref,
            "spec.facebook.appSecretRef",
        )
        .await?
        {
            Ok((value, v)) => {
                versions.push(v);
                facebook = Some((app.app_id.clone(), value));
            }
            Err(why) => return Ok(Err(why)),
        }
    }
    let mut twilio = None;
    if let Some(account) = &accounts.twilio {
        match read_key(
            secrets,
            namespace,
            &account.auth_token_ref,
            "spec.twilio.authTokenRef",
        )
        .await?
        {
            Ok((value, v)) => {
                versions.push(v);
                twilio = Some((
                    account.account_sid.clone(),
                    value,
                    account.webhook_url.clone(),
                ));
            }
            Err(why) => return Ok(Err(why)),
        }
    }
    Ok(Ok(ReadAccounts {
        facebook,
        twilio,
        versions: versions.join(","),
    }))
}

/// The value of one Secret key and the Secret's resourceVersion, or why it is missing.
async fn read_key(
    secrets: &Api<Secret>,
    namespace: &str,
    r: &SecretKeyRef,
    field: &str,
) -> Result<Result<(SecretString, String), String>, kube::Error> {
    let Some(secret) = secrets.get_opt(&r.name).await? else {
        return Ok(Err(format!(
            "the Secret {namespace}/{} named by {field} does not exist",
            r.name
        )));
    };
    match super::secrets::secret_value(&secret, &r.key) {
        Some(value) => Ok(Ok((
            value,
            secret.metadata.resource_version.unwrap_or_default(),
        ))),
        None => Ok(Err(format!(
            "the Secret {namespace}/{} named by {field} has no key {:?} or its value is empty",
            r.name, r.key
        ))),
    }
}
