//! The watches feeding the Controller, and what they trigger.
//!
//! - One Channel watch: its reflector is the Controller's store. A re-list (after `410 Gone`, a
//!   restart of the apiserver, a watch that fell behind) reconciles every Channel that changed
//!   while the watch was down or that has no status for its generation — once the store holds the
//!   re-listed objects, never before (a reconcile of an object missing from the store would be
//!   dropped).
//! - Secrets, metadata only, in `--secret-namespaces`: a change re-triggers the Channels owning
//!   the Secret (the Facebook token) or naming it in `credentialsSecretRef`. The reconcile GETs
//!   the data it needs.
//! - A periodic sweep of the store re-triggers Channels that never got a status for their
//!   generation, whatever happened to their trigger.
//!
//! Every watch is tracked (`crate::runtime::tracked_watch`): it has its own short backoff and
//! no watch error reaches the Controller, whose single trigger backoff would otherwise pause
//! every watch when one fails. Errors and re-lists are logged at warn and counted
//! (`channel_operator_watch_restarts_total`).

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::{predicates, PredicateConfig, WatchStreamExt};
use kube::{Api, ResourceExt};
use tracing::{debug, warn};

use super::index::{ChannelStore, StoreWriter};
use crate::channel_state::{points_at_channel, unreconciled};
use crate::crd::Channel;
use crate::metrics::{Metrics, CHANNELS};
use crate::runtime::tracked_watch::{tracked, tracked_watch, WatchBackoff};

/// The Channel watch, written into the store (`writer`), as the Channels to reconcile (see
/// [`super::index::ChannelIndex::apply`]).
pub(crate) fn channel_triggers(
    api: Api<Channel>,
    mut writer: StoreWriter,
    store: Store<Channel>,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = Channel> + Send + 'static {
    let events = watcher(api, watcher::Config::default().any_semantic())
        .backoff(WatchBackoff::default())
        .modify(Channel::strip_for_cache);
    tracked(events, CHANNELS, metrics).flat_map(move |event| {
        let due = writer.apply(&event);
        let store = store.clone();
        // Cloned one at a time as the Controller takes them (a first list triggers them all).
        futures::stream::iter(
            due.into_iter()
                .filter_map(move |r| store.get(&r).map(|c| c.as_ref().clone())),
        )
    })
}

/// Every `period`, the Channels in the store that never got a status for their generation.
pub(crate) fn sweep(
    store: Store<Channel>,
    period: Duration,
) -> impl Stream<Item = Channel> + Send + 'static {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold(ticks, |mut ticks| async move {
        ticks.tick().await;
        Some(((), ticks))
    })
    .flat_map(move |()| {
        let due: Vec<Channel> = store
            .state()
            .iter()
            .filter(|c| unreconciled(c))
            .map(|c| c.as_ref().clone())
            .collect();
        if !due.is_empty() {
            warn!(
                channels = due.len(),
                "sweep: Channels without a status for their generation; reconciling them"
            );
        }
        futures::stream::iter(due)
    })
}

/// Where the controller watches Secrets: every namespace, or these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretAccess {
    /// Cluster-wide (`*`).
    All,
    /// Only these namespaces.
    Namespaces(Vec<String>),
}

impl SecretAccess {
    /// From `--secret-namespaces`; empty means the watch namespace (`*` when that is empty too).
    pub fn from_flags(secret_namespaces: &[String], watch_namespace: &str) -> SecretAccess {
        let listed: Vec<String> = secret_namespaces
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if listed.iter().any(|s| s == "*") {
            SecretAccess::All
        } else if !listed.is_empty() {
            SecretAccess::Namespaces(listed)
        } else if watch_namespace.is_empty() {
            SecretAccess::All
        } else {
            SecretAccess::Namespaces(vec![watch_namespace.to_owned()])
        }
    }

    /// Whether the controller may read and write Secrets in `namespace`.
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            SecretAccess::All => true,
            SecretAccess::Namespaces(n) => n.iter().any(|s| s == namespace),
        }
    }
}

/// Secret metadata where the controller may access Secrets (one watch per namespace, or one
/// cluster-wide), each Secret once
/// per change of its resourceVersion. Never yields an error (see [`tracked`]).
pub(crate) fn secret_changes(
    client: kube::Client,
    secret_access: &SecretAccess,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = watcher::Result<PartialObjectMeta<Secret>>> + Send + 'static {
    let apis: Vec<Api<PartialObjectMeta<Secret>>> = match secret_access {
        SecretAccess::All => vec![Api::all(client)],
        SecretAccess::Namespaces(ns) => ns
            .iter()
            .map(|n| Api::namespaced(client.clone(), n))
            .collect(),
    };
    let watches = apis.into_iter().map(move |api| {
        tracked_watch(api, "secrets", metrics.clone())
            .filter_map(|event| {
                std::future::ready(match event {
                    Event::Apply(s) | Event::InitApply(s) | Event::Delete(s) => Some(s),
                    Event::Init | Event::InitDone => None,
                })
            })
            .boxed()
    });
    futures::stream::select_all(watches)
        .map(Ok)
        .predicate_filter(predicates::resource_version, PredicateConfig::default())
}

/// The Channels a Secret change concerns: its owner (the token Secret) and the Channels naming it
/// in `credentialsSecretRef`.
pub(crate) fn channels_of_secret(
    store: &ChannelStore,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<Channel>> {
    let ns = secret.namespace().unwrap_or_default();
    let mut refs: Vec<ObjectRef<Channel>> = secret
        .owner_references()
        .iter()
        .filter(|o| points_at_channel(o))
        .map(|o| ObjectRef::new(&o.name).within(&ns))
        .collect();
    refs.extend(store.naming_secret(&ns, &secret.name_any()));
    refs
}

/// How long a reconcile for an object not yet in the cache waits before it is tried again, and
/// how often (then the object is gone: deleted before it was cached).
const NOT_FOUND_RETRY: Duration = Duration::from_millis(200);
const NOT_FOUND_ATTEMPTS: u32 = 50;

/// Reconcile requests for objects not in the cache yet, re-issued once the cache holds them.
pub(crate) fn requeue_missing(
    rx: futures::channel::mpsc::UnboundedReceiver<(ObjectRef<Channel>, u32)>,
    tx: futures::channel::mpsc::UnboundedSender<(ObjectRef<Channel>, u32)>,
    store: Store<Channel>,
) -> impl Stream<Item = Channel> + Send + 'static {
    rx.map(move |(r, attempt)| {
        let (store, tx) = (store.clone(), tx.clone());
        async move {
            tokio::time::sleep(NOT_FOUND_RETRY).await;
            match store.get(&r) {
                Some(ch) => Some(ch.as_ref().clone()),
                None if attempt < NOT_FOUND_ATTEMPTS => {
                    let _ = tx.unbounded_send((r, attempt + 1));
                    None
                }
                None => {
                    debug!(object = %r, "never appeared in the cache (deleted); not retrying");
                    None
                }
            }
        }
    })
    .buffer_unordered(1024)
    .filter_map(std::future::ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_access_defaults_to_the_watch_namespace() {
        assert_eq!(
            SecretAccess::from_flags(&[], "team"),
            SecretAccess::Namespaces(vec!["team".into()])
        );
        assert_eq!(SecretAccess::from_flags(&[], ""), SecretAccess::All);
        assert_eq!(
            SecretAccess::from_flags(&["*".into()], "team"),
            SecretAccess::All
        );
        let secret_access = SecretAccess::from_flags(&["a".into(), " b ".into()], "");
        assert!(secret_access.allows("b") && !secret_access.allows("c"));
    }
}
