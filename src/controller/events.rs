//! Kubernetes Events about Channels.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::debug;

use crate::crd::Channel;
use crate::ownership::MANAGER;
use crate::reason::Reason;

/// Severity of an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something went as desired.
    Normal,
    /// Something failed.
    Warning,
}

/// Publishes events.k8s.io/v1 Events about Channels.
///
/// kube's `Recorder` keeps every Event it sent for minutes to aggregate repeats into series; this
/// controller emits an Event only when something changes, so it creates them directly and keeps
/// nothing (at 10,000 Channels that cache was megabytes).
pub struct EventPublisher {
    client: Client,
    instance: String,
}

impl EventPublisher {
    /// Events are reported by `channel-operator` from `instance` (the replica's identity).
    pub fn new(client: Client, instance: String) -> Self {
        EventPublisher { client, instance }
    }

    /// Creates one Event regarding `ch`. Failures are logged, never fatal.
    pub async fn publish(
        &self,
        ch: &Channel,
        type_: EventType,
        why: Reason,
        action: &str,
        note: String,
    ) {
        self.publish_as(ch, type_, why.as_str(), action, note).await
    }

    /// Like [`EventPublisher::publish`], with a reason that is not a `Ready` reason (the
    /// `CredentialsHealthy` ones).
    pub async fn publish_as(
        &self,
        ch: &Channel,
        type_: EventType,
        why: &str,
        action: &str,
        note: String,
    ) {
        let ns = ch.namespace().unwrap_or_default();
        let mut ev = Event {
            action: Some(action.into()),
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            note: Some(note.chars().take(1024).collect()),
            reason: Some(why.into()),
            regarding: Some(ch.object_ref(&())),
            reporting_controller: Some(MANAGER.into()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(format!("{type_:?}")),
            ..Default::default()
        };
        ev.metadata.name = Some(format!("{}.{:016x}", ch.name_any(), rand::random::<u64>()));
        ev.metadata.namespace = Some(ns.clone());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            debug!("cannot publish event {why}: {e}");
        }
    }
}
