//! The watches and timers that mark Channels due for a reconcile (`feed`).
//!
//! - One Channel watch, applied to the index (`index`). A re-list (after `410 Gone`, a restart
//!   of the apiserver, a watch that fell behind) makes due every Channel that changed while the
//!   watch was down or that has no status for its generation — once the list is complete, never
//!   before.
//! - Secrets, metadata only, in `--secret-namespaces`: a change makes due the Channels owning
//!   the Secret (the Facebook token) or naming it in `credentialsSecretRef`. The reconcile GETs
//!   the data it needs.
//! - A periodic sweep of the index makes due the Channels that never got a status for their
//!   generation, whatever happened to their trigger.
//!
//! Every watch is tracked (`crate::runtime::tracked_watch`): it has its own short backoff, and
//! errors and re-lists are logged at warn and counted (`channel_operator_watch_restarts_total`).

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::{predicates, PredicateConfig, WatchStreamExt};
use kube::{Api, ResourceExt};
use tracing::warn;

use super::feed::{ChannelStore, StoreWriter};
use super::index;
use crate::channel_state::points_at_channel;
use crate::crd::Channel;
use crate::metrics::{Metrics, CHANNELS};
use crate::runtime::tracked_watch::{tracked, tracked_watch, WatchBackoff};

/// Runs the Channel watch: applies its events to the index (`writer`) and marks due the
/// Channels they concern (see [`super::index::ChannelIndex::apply`]).
pub(crate) async fn channel_triggers(
    api: Api<Channel>,
    mut writer: StoreWriter,
    store: ChannelStore,
    metrics: Arc<Metrics>,
) {
    let events = watcher(api, watcher::Config::default().any_semantic())
        .backoff(WatchBackoff::default())
        .modify(Channel::strip_for_cache);
    tracked(events, CHANNELS, metrics)
        .for_each(|event| {
            let due = writer.apply(&event);
            store.mark_due(due.iter().map(|k| &**k));
            std::future::ready(())
        })
        .await
}

/// Every `period`, marks due the Channels of the index that never got a status for their
/// generation (and are not due already).
pub(crate) async fn sweep(store: ChannelStore, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let due = store.mark_due_where(|_, e| e.unreconciled);
        if due > 0 {
            warn!(
                channels = due,
                "sweep: Channels without a status for their generation; reconciling them"
            );
        }
    }
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

/// Runs the Secret watches ([`secret_changes`]) and marks due the Channels each change concerns:
/// the Secret's owner (the token Secret) and the Channels naming it in `credentialsSecretRef`.
pub(crate) async fn secret_triggers(
    secrets: impl Stream<Item = watcher::Result<PartialObjectMeta<Secret>>>,
    store: ChannelStore,
) {
    secrets
        .for_each(|secret| {
            if let Ok(secret) = secret {
                let ns = secret.namespace().unwrap_or_default();
                let owners = secret
                    .owner_references()
                    .iter()
                    .filter(|o| points_at_channel(o))
                    .map(|o| index::key(&ns, &o.name))
                    .collect::<Vec<_>>();
                let naming = store.naming_secret(&ns, &secret.name_any());
                store.mark_due(
                    owners
                        .iter()
                        .map(String::as_str)
                        .chain(naming.iter().map(|k| &**k)),
                );
            }
            std::future::ready(())
        })
        .await
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
