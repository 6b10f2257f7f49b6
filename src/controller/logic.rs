//! The controller's decisions as pure functions: connections made before claims, connection fingerprints
//! and retry delays (spec validation is the shared rule set in `crate::rules`). Unit-tested without a cluster.

use std::time::Duration;

use kube::ResourceExt;

use crate::channel_state::may_be_connected;
use crate::crd::{Channel, ChannelSpec, FINALIZER};

/// Whether a Channel is gone for ownership purposes: being deleted with our finalizer removed.
fn is_released(ch: &Channel) -> bool {
    ch.metadata.deletion_timestamp.is_some() && !ch.finalizers().iter().any(|f| f == FINALIZER)
}

/// Another Channel with the source, source channel id and claim of `me` that may hold a connection
/// (connected, or a connect attempted) and is not released: `(namespace, name)`. Under claims
/// only the claim's owner connects; this finds the connections made before claims existed.
pub fn connected_rival<'a>(
    me: &Channel,
    all: impl IntoIterator<Item = &'a Channel>,
) -> Option<(String, String)> {
    all.into_iter()
        .find(|c| {
            c.spec.source == me.spec.source
                && c.spec.source_channel_id == me.spec.source_channel_id
                // Chat plugins sharing a website name with their own pinned ids are not rivals.
                && crate::claims::name(c) == crate::claims::name(me)
                && c.metadata.uid != me.metadata.uid
                && !is_released(c)
                && c.status.as_ref().is_some_and(may_be_connected)
        })
        .map(|c| (c.namespace().unwrap_or_default(), c.name_any()))
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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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
    fn a_rival_is_another_channel_of_the_id_that_may_hold_a_connection() {
        let me = channel("ns", "new", 200, "gbm");
        let mut old = channel("other", "old", 100, "gbm");
        assert_eq!(connected_rival(&me, [&me, &old]), None, "never connected");
        old.status = Some(crate::crd::ChannelStatus {
            connect_attempted: Some("google/gbm".into()),
            ..Default::default()
        });
        assert_eq!(
            connected_rival(&me, [&me, &old]),
            Some(("other".into(), "old".into()))
        );
        assert_eq!(connected_rival(&old, [&me, &old]), None, "not itself");
        let other_id = channel("ns", "x", 1, "other-agent");
        assert_eq!(connected_rival(&other_id, [&old]), None);
        // Released (deleted, finalizer gone): no longer a rival.
        old.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(300).unwrap()));
        old.metadata.finalizers = None;
        assert_eq!(connected_rival(&me, [&old]), None);
        old.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert!(connected_rival(&me, [&old]).is_some());
    }

    #[test]
    fn chat_plugins_sharing_a_website_name_with_their_own_ids_are_not_rivals() {
        let plugin = |name: &str, pin: Option<&str>| {
            let mut ch = Channel::new(
                name,
                ChannelSpec {
                    channel_id: pin.map(str::to_owned),
                    ..spec(Source::ChatPlugin, "shop")
                },
            );
            ch.metadata.uid = Some(format!("uid-{name}"));
            ch.status = Some(crate::crd::ChannelStatus {
                connected: true,
                ..Default::default()
            });
            ch
        };
        let x = plugin("x", Some("3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f809a1b"));
        let y = plugin("y", Some("0a1b2c3d-0000-4000-8000-000000000000"));
        let unpinned = plugin("u", None);
        assert_eq!(connected_rival(&y, [&x]), None);
        assert_eq!(connected_rival(&unpinned, [&x]), None);
        let same = plugin("z", Some("3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f809a1b"));
        assert!(connected_rival(&same, [&x]).is_some(), "one id, one owner");
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
