//! What a Channel's state means: one definition of each judgement the controller, its metrics and
//! the HTTP API make from a Channel, its status and the objects around it. Nothing else spells
//! these rules out again.
//!
//! - *Reported on a generation* ([`reports_on`], [`verdict_at`], [`Channel::verdict_at`]): the
//!   status observed that generation or a later one; *unreconciled* ([`unreconciled`]): the
//!   controller has yet to act on the current one.
//! - *Connected* ([`Channel::is_connected`]): what the API lists and the metric counts as
//!   connected; the metric's states ([`MetricState`]).
//! - *May be connected* ([`may_be_connected`]): the status says the provider may hold a
//!   connection (what a version before the record of provider effects left to undo).
//! - *An ownerReference to a Channel* ([`points_at_channel`], [`controlled_by`],
//!   [`controlled_by_another_channel`]).
//! - *The owner of a channel id* ([`owner_first`]): the claim decides it for the controller
//!   (`crate::claims`), which marks every other Channel of the id `Duplicate`; the API reads that
//!   verdict.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::{Channel, ChannelStatus};
use crate::reason::Reason;

/// Whether a status that observed generation `observed` reports on `generation` or a later one.
pub fn reports_on(observed: Option<i64>, generation: i64) -> bool {
    observed.unwrap_or(-1) >= generation
}

/// The Ready condition `ready` of a status that observed generation `observed`, if the
/// controller has reported on `generation` or a later one (the status and the condition both
/// observed it): its verdict on that spec.
pub fn verdict_at(
    observed: Option<i64>,
    ready: Option<&Condition>,
    generation: i64,
) -> Option<&Condition> {
    ready.filter(|c| verdict_counts(observed, c.observed_generation, generation))
}

/// Whether a Ready condition that observed generation `condition_observed`, in a status that
/// observed `observed`, is the verdict on `generation` (see [`verdict_at`]).
pub fn verdict_counts(
    observed: Option<i64>,
    condition_observed: Option<i64>,
    generation: i64,
) -> bool {
    reports_on(observed, generation) && condition_observed.is_none_or(|g| g >= generation)
}

/// Whether the controller has yet to act on this Channel's current generation: it has no
/// finalizer yet, or its status does not report on the generation. A paused Channel is left
/// alone, so it never is.
pub fn unreconciled(ch: &Channel) -> bool {
    if ch.is_paused() {
        return false;
    }
    let observed = ch.status.as_ref().and_then(|s| s.observed_generation);
    ch.finalizers().is_empty() || !reports_on(observed, ch.metadata.generation.unwrap_or(0))
}

/// Whether the provider may hold a connection for this status: connected, or a connect was
/// started whose outcome is not known.
pub fn may_be_connected(status: &ChannelStatus) -> bool {
    status.connected || status.connected_with.is_some() || status.connect_attempted.is_some()
}

impl Channel {
    /// The Ready condition, if the controller has reported on `generation` or a later one (the
    /// status and the condition both observed it): its verdict on that spec.
    pub fn verdict_at(&self, generation: i64) -> Option<&Condition> {
        let observed = self.status.as_ref().and_then(|s| s.observed_generation);
        verdict_at(observed, self.ready_condition(), generation)
    }

    /// Whether the channel counts as connected: it is meant to be connected (`spec.connected`)
    /// and the controller reports it connected at its provider (`status.connected`). A channel
    /// whose provider refused it is not connected; one whose re-check failed still is (it stays
    /// connected at its provider). The one definition the controller's metrics and the HTTP API
    /// use.
    pub fn is_connected(&self) -> bool {
        self.spec.connected && self.status.as_ref().is_some_and(|s| s.connected)
    }
}

/// The `state` label of `channel_operator_channels{source,state}`, from the Ready condition and
/// [`Channel::is_connected`]. A Channel the controller has not reported on yet is not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricState {
    /// Ready, and connected as the API counts it.
    Connected,
    /// Ready, and not connected: disconnected as desired.
    Disconnected,
    /// Not Ready: a change in progress, a failure being retried, or a stall (the reason says
    /// which). A channel whose re-check at its provider failed counts here, though it stays
    /// connected and listed by the API.
    Error,
}

impl MetricState {
    /// The state of `ch`; `None` before the controller reported on it.
    pub fn of(ch: &Channel) -> Option<MetricState> {
        let ready = ch.ready_condition()?;
        Some(if ready.status != "True" {
            MetricState::Error
        } else if ch.is_connected() {
            MetricState::Connected
        } else {
            MetricState::Disconnected
        })
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricState::Connected => "connected",
            MetricState::Disconnected => "disconnected",
            MetricState::Error => "error",
        }
    }
}

/// Whether the ownerReference `r` points at a Channel (kind `Channel` of the `airy.co` group, any
/// version).
pub fn points_at_channel(r: &OwnerReference) -> bool {
    r.kind == Channel::kind(&())
        && r.api_version
            .strip_prefix(Channel::group(&()).as_ref())
            .is_some_and(|version| version.starts_with('/'))
}

/// Whether the controller ownerReference of `meta` is the object with uid `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controllers(meta).any(|r| r.uid == uid)
}

/// Whether a Channel other than `ch` (by uid) is the controller of `meta`.
pub fn controlled_by_another_channel(meta: &ObjectMeta, ch: &Channel) -> bool {
    controllers(meta).any(|r| points_at_channel(r) && ch.uid().as_deref() != Some(r.uid.as_str()))
}

fn controllers(meta: &ObjectMeta) -> impl Iterator<Item = &OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|r| r.controller == Some(true))
}

/// Whether the controller marked the Channel whose Ready condition is `ready` a duplicate:
/// another Channel holds the claim of its channel id.
pub fn marked_duplicate(ready: Option<&Condition>) -> bool {
    ready.is_some_and(|c| c.reason == Reason::Duplicate)
}

/// The order in which the Channels of one channel id stand for it, the owner first (the HTTP API
/// answers with the first). The owner is the Channel holding the claim (`crate::claims`); the
/// API may not read claims (Leases in the operator's namespace, which its identity has no need
/// to read), and needs not: the controller marks every other Channel of the id `Duplicate`
/// ([`marked_duplicate`], here `duplicate`). So a Channel not marked comes first; then the
/// oldest (`created`), the likeliest owner while the controller has not reported on them all
/// yet; then namespace and name, so the answer is stable.
pub fn owner_first<'a>(
    duplicate: bool,
    created: Option<k8s_openapi::jiff::Timestamp>,
    namespace: &'a str,
    name: &'a str,
) -> (bool, Option<k8s_openapi::jiff::Timestamp>, &'a str, &'a str) {
    (duplicate, created, namespace, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChannelSpec, Source};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn channel(connected: bool, status: Option<ChannelStatus>) -> Channel {
        let mut ch = Channel::new(
            "c",
            ChannelSpec {
                connected,
                ..ChannelSpec::new(Source::Facebook, "1")
            },
        );
        ch.metadata.generation = Some(2);
        ch.status = status;
        ch
    }

    fn ready(status: &str, reason: Reason) -> Condition {
        Condition {
            type_: crate::crd::READY.into(),
            status: status.into(),
            reason: reason.as_str().into(),
            message: String::new(),
            observed_generation: Some(2),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        }
    }

    #[test]
    fn a_verdict_counts_only_for_the_generation_it_observed_or_a_later_one() {
        let c = ready("True", Reason::Connected);
        assert!(verdict_at(Some(2), Some(&c), 2).is_some());
        assert!(verdict_at(Some(3), Some(&c), 2).is_some());
        assert!(verdict_at(Some(1), Some(&c), 2).is_none());
        assert!(verdict_at(None, Some(&c), 2).is_none());
        assert!(
            verdict_at(Some(3), Some(&c), 3).is_none(),
            "the condition is older"
        );
    }

    #[test]
    fn the_metric_counts_as_connected_what_the_api_lists() {
        let status = |connected, c: Condition| ChannelStatus {
            connected,
            observed_generation: Some(2),
            conditions: vec![c],
            ..Default::default()
        };
        let up = channel(true, Some(status(true, ready("True", Reason::Connected))));
        assert_eq!(MetricState::of(&up), Some(MetricState::Connected));
        assert!(up.is_connected());
        // A failed re-check: still connected for the API, an error for the metric.
        let failing = channel(
            true,
            Some(status(true, ready("False", Reason::ProviderError))),
        );
        assert_eq!(MetricState::of(&failing), Some(MetricState::Error));
        assert!(failing.is_connected());
        let off = channel(
            false,
            Some(status(false, ready("True", Reason::Disconnected))),
        );
        assert_eq!(MetricState::of(&off), Some(MetricState::Disconnected));
        assert_eq!(MetricState::of(&channel(true, None)), None);
    }

    #[test]
    fn an_owner_reference_points_at_a_channel_by_kind_and_group() {
        let r = |api_version: &str, kind: &str| OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            ..Default::default()
        };
        assert!(points_at_channel(&r("airy.co/v1alpha1", "Channel")));
        assert!(points_at_channel(&r("airy.co/v1", "Channel")));
        assert!(!points_at_channel(&r("airy.com/v1", "Channel")));
        assert!(!points_at_channel(&r("airy.co/v1alpha1", "ProviderConfig")));
        assert!(!points_at_channel(&r("other.io/v1", "Channel")));
    }
}
