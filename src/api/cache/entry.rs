//! One cached channel ([`CachedChannel`]): the API's prepared answer and, of the resource, only
//! what the API decides with.

use std::hash::{Hash, Hasher};

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::model::channel_response;
use crate::channel_state::{marked_duplicate, verdict_counts};
use crate::crd::{Channel, ChannelSpec, InstagramSpec, SecretKeyRef, Source};
use crate::naming::ChatPluginNaming;
use crate::reason::Reason;

/// One cached channel: its prepared answer and, of the resource, only what the API decides with:
/// its key, source and channel id, what a connect or disconnect compares (digests), and the
/// controller's verdict. Each string once: the answer holds the spec's values; a write that needs
/// more (an owner for a Secret) reads the Channel from the API server.
#[derive(Debug)]
pub struct CachedChannel {
    /// `namespace/name` of the resource (the cache's key).
    pub(super) key: Box<str>,
    /// The channel id, a UUID (see [`id_number`]).
    pub(super) id: u128,
    /// The API's Channel object (docs/api.md), serialized.
    pub json: Bytes,
    /// The channel's source.
    pub source: Source,
    /// Whether it counts as connected (listed, answered by info).
    pub connected: bool,
    /// Whether the controller marked it a duplicate of its channel id's owner.
    pub(super) duplicate: bool,
    /// `spec.connected`.
    pub spec_connected: bool,
    /// Being deleted.
    pub deleting: bool,
    /// What a connect compares with the request.
    pub inputs: ConnectInputs,
    /// Why its pinned id is not its own ([`crate::pinned_id::check`]), if it is not.
    pub bad_pin: Option<Box<str>>,
    /// The resource's generation.
    pub generation: i64,
    pub(super) created: Option<Timestamp>,
    /// The status's observed generation.
    observed_generation: Option<i64>,
    /// The Ready condition.
    ready: Option<Verdict>,
}

/// The Ready condition as far as the API reads it.
#[derive(Debug)]
pub struct Verdict {
    /// `Some(true)` for `True`, `Some(false)` for `False`, `None` for anything else.
    pub status: Option<bool>,
    /// The reason, when this version knows it.
    pub reason: Option<Reason>,
    /// The message, kept only when not `True` (the API reports failures only).
    message: Option<Box<str>>,
    observed_generation: Option<i64>,
}

/// What a connect compares with the request, as digests of the spec's values: its source channel
/// id, name, image, Instagram page and credentials reference. (Equal digests of different values, a chance of
/// 2^-64, would leave that value as it is.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectInputs {
    source_channel_id: u64,
    name: u64,
    image_url: u64,
    instagram: u64,
    credentials: u64,
}

fn digest(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn credentials_digest(r: Option<&SecretKeyRef>) -> u64 {
    digest(r.map(|r| (&r.name, &r.key)))
}

impl ConnectInputs {
    fn of(spec: &ChannelSpec) -> ConnectInputs {
        ConnectInputs {
            source_channel_id: digest(&spec.source_channel_id),
            name: digest(spec.name.as_deref()),
            image_url: digest(spec.image_url.as_deref()),
            instagram: digest(spec.instagram.as_ref().map(|i| &i.page_id)),
            credentials: credentials_digest(spec.credentials_secret_ref.as_ref()),
        }
    }

    /// Whether the spec's source channel id is `id`.
    pub fn has_source_channel_id(&self, id: &str) -> bool {
        self.source_channel_id == digest(id)
    }

    /// Whether the spec's name is `name`.
    pub fn has_name(&self, name: &str) -> bool {
        self.name == digest(Some(name))
    }

    /// Whether the spec's image is `url`.
    pub fn has_image_url(&self, url: &str) -> bool {
        self.image_url == digest(Some(url))
    }

    /// Whether the spec's Instagram page is `instagram`'s.
    pub fn has_instagram(&self, instagram: &InstagramSpec) -> bool {
        self.instagram == digest(Some(&instagram.page_id))
    }

    /// Whether the spec's credentials reference is `r`.
    pub fn has_credentials(&self, r: Option<&SecretKeyRef>) -> bool {
        self.credentials == credentials_digest(r)
    }
}

impl Verdict {
    /// The condition's message (empty when `True`).
    pub fn message(&self) -> &str {
        self.message.as_deref().unwrap_or_default()
    }
}

/// The number of a channel id: the UUID's 128 bits, for an id in the canonical form (lowercase,
/// hyphenated) every channel id has; ordered as the ids are.
pub(super) fn id_number(id: &str) -> Option<u128> {
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    let mut buf = uuid::Uuid::encode_buffer();
    (uuid.hyphenated().encode_lower(&mut buf) == id).then_some(uuid.as_u128())
}

impl CachedChannel {
    /// The entry of `channel`; `None` for one whose channel id is not a UUID (it is not served).
    pub fn new(channel: &Channel, naming: ChatPluginNaming) -> Option<CachedChannel> {
        let (id, json) = answer(channel, naming);
        let Some(id) = id_number(&id) else {
            tracing::warn!(channel = %channel.name_any(), id, "a channel id that is not a UUID; not served");
            return None;
        };
        let ready = channel.ready_condition();
        Some(CachedChannel {
            key: format!(
                "{}/{}",
                channel.namespace().unwrap_or_default(),
                channel.name_any()
            )
            .into(),
            id,
            source: channel.spec.source,
            connected: channel.is_connected(),
            json,
            duplicate: marked_duplicate(ready),
            spec_connected: channel.spec.connected,
            deleting: channel.metadata.deletion_timestamp.is_some(),
            inputs: ConnectInputs::of(&channel.spec),
            bad_pin: crate::pinned_id::check(&channel.spec)
                .err()
                .map(String::into_boxed_str),
            generation: channel.metadata.generation.unwrap_or(0),
            created: channel.metadata.creation_timestamp.as_ref().map(|t| t.0),
            observed_generation: channel.status.as_ref().and_then(|s| s.observed_generation),
            ready: ready.map(|c| {
                let status = match c.status.as_str() {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                };
                Verdict {
                    status,
                    reason: Reason::parse(&c.reason),
                    message: (status != Some(true)).then(|| c.message.as_str().into()),
                    observed_generation: c.observed_generation,
                }
            }),
        })
    }

    /// Namespace and name of the resource.
    pub fn key(&self) -> (&str, &str) {
        self.key.split_once('/').unwrap_or(("", &self.key))
    }

    /// The controller's verdict on `generation` or a later one (see [`Channel::verdict_at`]).
    pub fn verdict_at(&self, generation: i64) -> Option<&Verdict> {
        self.ready
            .as_ref()
            .filter(|v| verdict_counts(self.observed_generation, v.observed_generation, generation))
    }

    /// Whether the controller reports the channel Ready at `generation` or later.
    pub fn ready_at(&self, generation: i64) -> bool {
        self.verdict_at(generation)
            .is_some_and(|v| v.status == Some(true))
    }
}

/// The channel id and the API's answer for `ch` (docs/api.md), serialized.
pub(crate) fn answer(ch: &Channel, naming: ChatPluginNaming) -> (String, Bytes) {
    let response = channel_response(ch, naming);
    let json = serde_json::to_vec(&response).expect("a Channel response serializes");
    (response.id, Bytes::from(json.into_boxed_slice()))
}

pub(super) fn key_of(ch: &Channel) -> String {
    format!("{}/{}", ch.namespace().unwrap_or_default(), ch.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::cache::tests::channel;

    #[test]
    fn a_connect_compares_the_spec_by_its_digests() {
        let mut ch = channel("a", "x", Source::Facebook, "1001", true);
        ch.spec.name = Some("Shop".into());
        ch.spec.credentials_secret_ref = Some(SecretKeyRef {
            name: "tok".into(),
            key: "page_token".into(),
        });
        let e = CachedChannel::new(&ch, Default::default()).unwrap();
        assert!(e.inputs.has_name("Shop") && !e.inputs.has_name("Shop "));
        assert!(!e.inputs.has_image_url(""), "no image is not an empty one");
        assert!(e.inputs.has_source_channel_id("1001"));
        let mut r = ch.spec.credentials_secret_ref.clone().unwrap();
        assert!(e.inputs.has_credentials(Some(&r)));
        r.key = "token".into();
        assert!(!e.inputs.has_credentials(Some(&r)) && !e.inputs.has_credentials(None));
        assert!(e.spec_connected && !e.deleting && e.bad_pin.is_none());
    }
}
