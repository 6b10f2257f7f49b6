//! The controller's decisions as pure functions: duplicate ownership, connection fingerprints
//! and retry delays (spec validation is the shared rule set in `crate::rules`). Unit-tested without a cluster.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{Channel, ChannelSpec, FINALIZER};

/// Whether a Channel is gone for ownership purposes: being deleted with our finalizer removed.
fn is_released(ch: &Channel) -> bool {
    ch.metadata.deletion_timestamp.is_some() && !ch.finalizers().iter().any(|f| f == FINALIZER)
}

fn age_key(ch: &Channel) -> (Option<Time>, String, String) {
    (
        ch.metadata.creation_timestamp.clone(),
        ch.namespace().unwrap_or_default(),
        ch.name_any(),
    )
}

/// Among the Channels with the same source and source channel id as `me`, the oldest (ties:
/// namespace/name) keeps the channel. Returns `namespace/name` of that owner when it is not `me`.
pub fn duplicate_owner<'a>(
    me: &Channel,
    all: impl IntoIterator<Item = &'a Channel>,
) -> Option<String> {
    let my_key = age_key(me);
    let owner = all
        .into_iter()
        .filter(|c| {
            c.spec.source == me.spec.source
                && c.spec.source_channel_id == me.spec.source_channel_id
                && c.metadata.uid != me.metadata.uid
                && !is_released(c)
        })
        .map(|c| (age_key(c), c))
        .filter(|(k, _)| older(k, &my_key))
        .min_by(|(a, _), (b, _)| cmp_age(a, b))?;
    Some(format!("{}/{}", owner.0 .1, owner.0 .2))
}

fn cmp_age(
    a: &(Option<Time>, String, String),
    b: &(Option<Time>, String, String),
) -> std::cmp::Ordering {
    // A missing creationTimestamp (never from a real API server) sorts last.
    let ta = a.0.as_ref().map(|t| t.0);
    let tb = b.0.as_ref().map(|t| t.0);
    match (ta, tb) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
    .then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2)))
}

fn older(a: &(Option<Time>, String, String), b: &(Option<Time>, String, String)) -> bool {
    cmp_age(a, b) == std::cmp::Ordering::Less
}

/// The connection inputs: what, when changed, means the channel must be connected again.
/// `secret_version` is the credentials Secret's resourceVersion where one is used.
pub fn fingerprint(spec: &ChannelSpec, secret_version: Option<&str>) -> String {
    let mut fp = format!("{}/{}", spec.source, spec.source_channel_id);
    if let (Some(r), Some(v)) = (&spec.credentials_secret_ref, secret_version) {
        fp.push_str(&format!(";secret={}/{}@{}", r.name, r.key, v));
    }
    fp
}

/// Exponential backoff: `min * 2^(attempt-1)`, capped at `max`, then jittered to 50–100 %.
/// `jitter` is a number in [0, 1).
pub fn backoff(attempt: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = min.saturating_mul(1u32 << exp).min(max);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{SecretKeyRef, Source};
    use k8s_openapi::jiff::Timestamp;

    fn spec(source: Source, scid: &str) -> ChannelSpec {
        ChannelSpec::new(source, scid)
    }

    fn channel(ns: &str, name: &str, created: i64, scid: &str) -> Channel {
        let mut ch = Channel::new(name, spec(Source::Google, scid));
        ch.metadata.namespace = Some(ns.into());
        ch.metadata.uid = Some(format!("uid-{ns}-{name}"));
        ch.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        ch
    }

    #[test]
    fn oldest_channel_owns_the_source_id() {
        let a = channel("ns", "a", 100, "gbm");
        let b = channel("ns", "b", 200, "gbm");
        let other = channel("ns", "c", 50, "other-agent");
        let all = [a.clone(), b.clone(), other.clone()];
        assert_eq!(duplicate_owner(&a, &all), None);
        assert_eq!(duplicate_owner(&b, &all).as_deref(), Some("ns/a"));
        assert_eq!(duplicate_owner(&other, &all), None);
        // Same timestamp: namespace/name order decides.
        let c = channel("aaa", "z", 100, "gbm");
        let all = [a.clone(), b.clone(), c.clone()];
        assert_eq!(duplicate_owner(&a, &all).as_deref(), Some("aaa/z"));
        assert_eq!(duplicate_owner(&c, &all), None);
    }

    #[test]
    fn a_deleted_owner_hands_over_to_the_next_oldest() {
        let mut a = channel("ns", "a", 100, "gbm");
        let b = channel("ns", "b", 200, "gbm");
        let d = channel("ns", "d", 300, "gbm");
        a.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(400).unwrap()));
        a.metadata.finalizers = Some(vec![FINALIZER.into()]);
        // Still disconnecting: keeps the channel.
        assert_eq!(
            duplicate_owner(&b, &[a.clone(), b.clone(), d.clone()]).as_deref(),
            Some("ns/a")
        );
        a.metadata.finalizers = None;
        assert_eq!(
            duplicate_owner(&b, &[a.clone(), b.clone(), d.clone()]),
            None
        );
        assert_eq!(
            duplicate_owner(&d, &[a, b.clone(), d.clone()]).as_deref(),
            Some("ns/b")
        );
    }

    #[test]
    fn fingerprint_changes_with_the_credentials_version_only() {
        let mut s = spec(Source::Facebook, "p1");
        s.credentials_secret_ref = Some(SecretKeyRef {
            name: "tok".into(),
            key: "page_token".into(),
        });
        let a = fingerprint(&s, Some("10"));
        s.name = Some("renamed".into());
        assert_eq!(fingerprint(&s, Some("10")), a);
        assert_ne!(fingerprint(&s, Some("11")), a);
        assert_eq!(
            fingerprint(&spec(Source::Google, "g"), None),
            "google/g".to_string()
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff(1, min, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(3, min, max, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(30, min, max, 1.0), max);
        assert_eq!(backoff(3, min, max, 0.0), Duration::from_millis(200));
        assert!(backoff(100, min, max, 0.99) <= max);
    }
}
