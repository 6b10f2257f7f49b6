//! Builders for the objects tests declare: Channels (as objects or as kubectl YAML) and Secrets.
//! The one place a test suite spells out a `ChannelSpec`.

use std::collections::BTreeMap;

use channel_operator::crd::{Channel, ChannelSpec, ChannelStatus, SecretKeyRef, Source};
use channel_operator::ownership::{CREDENTIALS_CONSENT, CREDENTIALS_LABEL};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::ByteString;

/// A Channel under construction: `channel(Source::Google, "gbm-1").named("agent").build()`.
#[derive(Clone, Debug)]
pub struct ChannelBuilder {
    name: Option<String>,
    namespace: String,
    spec: ChannelSpec,
}

/// A connected Channel of `source` with source channel id `scid`, in namespace `default`, named
/// by its channel id unless [`ChannelBuilder::named`] says otherwise.
pub fn channel(source: Source, scid: &str) -> ChannelBuilder {
    ChannelBuilder {
        name: None,
        namespace: "default".into(),
        spec: ChannelSpec::new(source, scid),
    }
}

impl ChannelBuilder {
    /// The object's name (`metadata.name`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.into();
        self
    }
    /// `spec.name`, the display name.
    pub fn display_name(mut self, name: &str) -> Self {
        self.spec.name = Some(name.into());
        self
    }
    pub fn image_url(mut self, url: &str) -> Self {
        self.spec.image_url = Some(url.into());
        self
    }
    pub fn connected(mut self, connected: bool) -> Self {
        self.spec.connected = connected;
        self
    }
    /// `spec.credentialsSecretRef`.
    pub fn credentials(mut self, secret: &str, key: &str) -> Self {
        self.spec.credentials_secret_ref = Some(SecretKeyRef {
            name: secret.into(),
            key: key.into(),
        });
        self
    }
    /// `spec.instagram.pageId`, the Facebook page linked to an Instagram account.
    pub fn instagram_page(mut self, page_id: &str) -> Self {
        self.spec.instagram = Some(channel_operator::crd::InstagramSpec {
            page_id: page_id.into(),
        });
        self
    }
    /// `spec.channelId`: the pinned id.
    pub fn pinned(mut self, id: &str) -> Self {
        self.spec.channel_id = Some(id.into());
        self
    }
    /// `spec.whatsapp.businessAccountId`.
    pub fn business_account(mut self, waba: &str) -> Self {
        self.spec.whatsapp = Some(channel_operator::crd::WhatsappSpec {
            business_account_id: Some(waba.into()),
        });
        self
    }
    pub fn spec(&self) -> ChannelSpec {
        self.spec.clone()
    }
    /// The channel id Airy Core gives this source and id.
    pub fn id(&self) -> String {
        channel_operator::channel_id::channel_id_string(
            self.spec.source.as_str(),
            &self.spec.source_channel_id,
        )
    }
    pub fn build(&self) -> Channel {
        let name = self.name.clone().unwrap_or_else(|| self.id());
        let mut ch = Channel::new(&name, self.spec.clone());
        ch.metadata.namespace = Some(self.namespace.clone());
        ch
    }
    /// The manifest a user would `kubectl apply`.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.build()).expect("a Channel serializes")
    }
    /// The Channel as the controller reports it: generation 1, Ready with `Connected` or
    /// `Disconnected` (for the in-process router tests, which fill the cache by hand).
    pub fn reported(&self) -> Channel {
        let mut ch = self.build();
        let connected = self.spec.connected;
        ch.metadata.generation = Some(1);
        ch.status = Some(ChannelStatus {
            id: Some(self.id()),
            connected,
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: if connected {
                    "Connected"
                } else {
                    "Disconnected"
                }
                .into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            }],
            ..Default::default()
        });
        ch
    }
}

/// An Opaque Secret `name` in `default` holding `value` under `key`, consenting to be a
/// Channel's credentials (the label `airy.co/credentials: "true"`, as a user labels it).
pub fn secret(name: &str, key: &str, value: &str) -> Secret {
    let mut s = unconsented_secret(name, key, value);
    s.metadata.labels = Some(BTreeMap::from([(
        CREDENTIALS_LABEL.to_owned(),
        CREDENTIALS_CONSENT.to_owned(),
    )]));
    s
}

/// Like [`secret`] without the consent label: a Secret no Channel may use (another user's token,
/// a provider's credentials).
pub fn unconsented_secret(name: &str, key: &str, value: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some("default".into());
    s.data = Some(BTreeMap::from([(
        key.to_owned(),
        ByteString(value.as_bytes().to_vec()),
    )]));
    s
}

/// [`secret`] as a manifest for `kubectl apply`.
pub fn secret_yaml(name: &str, key: &str, value: &str) -> String {
    manifest(&secret(name, key, value))
}

/// [`unconsented_secret`] as a manifest for `kubectl apply`.
pub fn unconsented_secret_yaml(name: &str, key: &str, value: &str) -> String {
    manifest(&unconsented_secret(name, key, value))
}

fn manifest(s: &Secret) -> String {
    serde_yaml::to_string(s)
        .expect("a Secret serializes")
        .replacen("metadata:", "apiVersion: v1\nkind: Secret\nmetadata:", 1)
}

/// The numeric Facebook page id (the CRD accepts only digits) a test's page `name` stands for;
/// a name that is a page id already (digits only, e.g. one of docs/channel-ids.md's vectors)
/// stands for itself.
pub fn page_id(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name.to_owned();
    }
    let n = name.bytes().fold(1_469_598_103_934_665_603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    });
    format!("{}", n % 1_000_000_000_000)
}

/// A Channel manifest named `name` (the older tests' form): for `facebook`, `scid` names a test
/// page and becomes its [`page_id`]; `extra` is more spec YAML, indented by two spaces.
pub fn channel_yaml(name: &str, source: &str, scid: &str, extra: &str) -> String {
    let scid = if source == "facebook" {
        page_id(scid)
    } else {
        scid.to_owned()
    };
    format!(
        "apiVersion: airy.co/v1alpha1\nkind: Channel\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  source: {source}\n  sourceChannelId: \"{scid}\"\n{extra}"
    )
}

/// The spec YAML naming Secret `secret` (key `page_token`) as a Facebook Channel's credentials.
pub fn fb_extra(secret: &str) -> String {
    format!("  credentialsSecretRef:\n    name: {secret}\n    key: page_token\n")
}

/// A field of the Channel's Ready condition (JSON form), `null` when absent.
pub fn cond<'a>(v: &'a serde_json::Value, field: &str) -> &'a serde_json::Value {
    v["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
        .map(|c| &c[field])
        .unwrap_or(&serde_json::Value::Null)
}

/// The Channel's Ready condition as (status, reason).
pub fn ready(ch: &Channel) -> Option<(String, String)> {
    let c = ch.ready_condition()?;
    Some((c.status.clone(), c.reason.clone()))
}
