//! The `Channel` custom resource (group `airy.co`, version `v1alpha1`).
//!
//! The CRD YAML in `crds/` is generated from these types by `channel-operator crd`; a test fails
//! when the checked-in file differs from what this module generates.

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;

/// API group of the Channel resource.
pub const GROUP: &str = "airy.co";
/// API version of the Channel resource.
pub const VERSION: &str = "v1alpha1";
/// Finalizer that makes deleting a Channel disconnect it at its provider first.
pub const FINALIZER: &str = "channels.airy.co/disconnect";
/// Annotation that stops reconciling a Channel while it is `"true"`.
pub const PAUSED_ANNOTATION: &str = "airy.co/paused";
/// The condition type every Channel reports.
pub const READY: &str = "Ready";
/// Condition present (`True`) while a change is in progress or retried after a transient failure.
pub const RECONCILING: &str = "Reconciling";
/// Condition present (`True`) while a failure that retrying cannot fix stops the Channel.
pub const STALLED: &str = "Stalled";

/// The messaging source of a channel; the strings are the ones Airy Core uses.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum Source {
    /// A website chat plugin; the source channel id is the website identifier.
    #[serde(rename = "chat_plugin")]
    ChatPlugin,
    /// A Facebook page; the source channel id is the page id.
    #[serde(rename = "facebook")]
    Facebook,
    /// A Google Business Messages agent; the source channel id is the agent id (`gbm_id`).
    #[serde(rename = "google")]
    Google,
    /// A Twilio SMS number in E.164 form, e.g. `+491234567`.
    #[serde(rename = "twilio.sms")]
    TwilioSms,
    /// A Twilio WhatsApp number, `whatsapp:` + E.164, e.g. `whatsapp:+491234567`.
    #[serde(rename = "twilio.whatsapp")]
    TwilioWhatsapp,
    /// An Instagram account, messaged through its linked Facebook page (`spec.instagram.pageId`);
    /// the source channel id is the numeric Instagram account id.
    #[serde(rename = "instagram")]
    Instagram,
    /// A WhatsApp Cloud API number; the source channel id is the numeric phone number id.
    #[serde(rename = "whatsapp")]
    Whatsapp,
    /// A Viber bot account; the source channel id is the account id Viber reports.
    #[serde(rename = "viber")]
    Viber,
}

impl Source {
    /// Every source, in a stable order.
    pub const ALL: [Source; 8] = [
        Source::ChatPlugin,
        Source::Facebook,
        Source::Google,
        Source::TwilioSms,
        Source::TwilioWhatsapp,
        Source::Instagram,
        Source::Whatsapp,
        Source::Viber,
    ];

    /// The exact source string (docs/channel-ids.md).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::ChatPlugin => "chat_plugin",
            Source::Facebook => "facebook",
            Source::Google => "google",
            Source::TwilioSms => "twilio.sms",
            Source::TwilioWhatsapp => "twilio.whatsapp",
            Source::Instagram => "instagram",
            Source::Whatsapp => "whatsapp",
            Source::Viber => "viber",
        }
    }

    /// Parses the exact source string.
    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|src| src.as_str() == s)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What deleting the Channel does at the provider.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Disconnect the channel at its provider before the Channel goes away.
    #[default]
    Disconnect,
    /// Delete the Channel without calling the provider.
    Orphan,
}

/// A key of a Secret in the Channel's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret (a DNS-1123 subdomain, as every Secret name).
    #[schemars(length(min = 1, max = rules::MAX_SECRET_NAME_LEN), pattern(rules::SECRET_NAME_PATTERN))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1))]
    pub key: String,
}

pub use crate::rules::{E164_PATTERN, HTTP_URL_PATTERN, WHATSAPP_PATTERN};

/// What an Instagram channel needs besides its account id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstagramSpec {
    /// The numeric id of the Facebook page linked to the Instagram account; the app is
    /// subscribed to this page's messaging webhooks.
    #[schemars(pattern(rules::NUMERIC_ID_PATTERN))]
    pub page_id: String,
}

/// Optional settings of a WhatsApp Cloud API channel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhatsappSpec {
    /// The numeric id of the WhatsApp Business Account of the number. When given, the app is
    /// subscribed to the account's webhooks at connect, and unsubscribed when the last Channel of
    /// the account is disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(rules::NUMERIC_ID_PATTERN))]
    pub business_account_id: Option<String>,
}

/// A messaging channel: its source, its id at that source, and how it is presented.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "airy.co",
    version = "v1alpha1",
    kind = "Channel",
    namespaced,
    shortname = "ch",
    category = "airy",
    status = "ChannelStatus",
    doc = "A messaging channel (Facebook page, Instagram account, WhatsApp Cloud API or Twilio number, Viber bot, Google Business Messages agent, website chat plugin) connected by channel-operator",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source"),
    printcolumn(
        name = "Source ID",
        type_ = "string",
        json_path = ".spec.sourceChannelId"
    ),
    printcolumn(name = "Name", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Connected", type_ = "boolean", json_path = ".status.connected"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        description = "Why the channel is or is not Ready",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Stalled",
        type_ = "string",
        description = "True when retrying cannot help: the Channel or its credentials need a change",
        json_path = ".status.conditions[?(@.type==\"Stalled\")].status"
    ),
    printcolumn(name = "Channel ID", type_ = "string", json_path = ".status.id"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Provider Name",
        type_ = "string",
        description = "The name the provider reports: the page or the Viber account",
        json_path = ".status.pageName",
        priority = 1
    ),
    printcolumn(
        name = "Number",
        type_ = "string",
        description = "The WhatsApp number as Meta displays it",
        json_path = ".status.displayPhoneNumber",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(rules::cel_credentials_required())
        .message(rules::CREDENTIALS_MESSAGE)
        .field_path(".credentialsSecretRef"),
    validation = Rule::new("self.source != 'instagram' || has(self.instagram)")
        .message(rules::INSTAGRAM_PAGE_MESSAGE)
        .field_path(".instagram"),
    validation = Rule::new(rules::cel_source_channel_id(Source::TwilioSms))
        .message(rules::SMS_MESSAGE)
        .field_path(".sourceChannelId"),
    validation = Rule::new(rules::cel_source_channel_id(Source::TwilioWhatsapp))
        .message(rules::WHATSAPP_MESSAGE)
        .field_path(".sourceChannelId"),
    validation = Rule::new(rules::cel_source_channel_id(Source::Facebook))
        .message(rules::FACEBOOK_MESSAGE)
        .field_path(".sourceChannelId"),
    validation = Rule::new(rules::cel_source_channel_id(Source::Instagram))
        .message(rules::INSTAGRAM_MESSAGE)
        .field_path(".sourceChannelId"),
    validation = Rule::new(rules::cel_source_channel_id(Source::Whatsapp))
        .message(rules::WHATSAPP_CLOUD_MESSAGE)
        .field_path(".sourceChannelId"),
    validation = Rule::new(rules::CEL_CHANNEL_ID_IMMUTABLE)
        .message(rules::CHANNEL_ID_IMMUTABLE_MESSAGE)
        .field_path(".channelId"),
)]
pub struct ChannelSpec {
    /// The messaging source: chat_plugin, facebook, google, twilio.sms, twilio.whatsapp, instagram,
    /// whatsapp or viber. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("source is immutable"))]
    pub source: Source,

    /// The channel's id at its source: the website identifier, numeric Facebook page id, Google agent id,
    /// E.164 number (twilio.sms), whatsapp:+number (twilio.whatsapp), numeric Instagram account id,
    /// numeric WhatsApp phone number id or the Viber account id. Immutable.
    #[schemars(length(min = 1, max = rules::MAX_NAME_LEN), pattern(&*rules::NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("sourceChannelId is immutable"))]
    pub source_channel_id: String,

    /// The channel's id where it is not the deterministic one: the id Airy Core gave it, kept
    /// when the channel moved here (`channel-operator migrate`). A chat plugin may pin any UUID
    /// (Airy Core draws chat plugin ids at random); another source only an id Airy Core derives
    /// from its source and source channel id (docs/channel-ids.md). The API and the status
    /// answer it as the channel's id. Set when the Channel is created, or never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 36, max = 36), pattern(rules::CHANNEL_ID_PATTERN))]
    pub channel_id: Option<String>,

    /// Display name. When absent: the name the provider reports (Facebook or Instagram page, Viber
    /// account, WhatsApp verified name), else "<source> <last five characters of the id>".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::MAX_NAME_LEN), pattern(&*rules::NAME_PATTERN))]
    pub name: Option<String>,

    /// Absolute http(s) URL of the channel's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = rules::MAX_URL_LEN), pattern(&*rules::HTTP_URL_PATTERN))]
    pub image_url: Option<String>,

    /// Desired state: true connects the channel with its provider, false disconnects it.
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub connected: bool,

    /// Secret key holding the channel's token: the page token (facebook, instagram), the user
    /// token (whatsapp) or the bot's auth token (viber). Required for those sources. The Secret
    /// must carry the label airy.co/credentials: "true" (its consent to be used by Channels);
    /// without it the Channel is Stalled and the Secret is not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,

    /// Instagram only: the Facebook page linked to the account. Required for instagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instagram: Option<InstagramSpec>,

    /// WhatsApp Cloud API only: the number's business account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<WhatsappSpec>,

    /// Disconnect (default): deleting the Channel disconnects it at the provider first.
    /// Orphan: delete without calling the provider.
    #[serde(default)]
    #[schemars(default = "default_deletion_policy")]
    pub deletion_policy: DeletionPolicy,

    /// The provider configuration the channel's provider calls use: a ProviderConfig of this
    /// namespace or a ClusterProviderConfig admitting it. Default: the ProviderConfig named
    /// default in this namespace, else the ClusterProviderConfig named default if it admits the
    /// namespace. Not needed by chat_plugin and google.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_config_ref: Option<crate::provider_config::ProviderConfigRef>,
}

impl ChannelSpec {
    /// The spec of `source`'s channel `source_channel_id` with nothing else said: connected,
    /// no name, image or credentials, disconnected at the provider when deleted.
    pub fn new(source: Source, source_channel_id: impl Into<String>) -> Self {
        ChannelSpec {
            source,
            source_channel_id: source_channel_id.into(),
            channel_id: None,
            name: None,
            image_url: None,
            connected: true,
            credentials_secret_ref: None,
            instagram: None,
            whatsapp: None,
            deletion_policy: DeletionPolicy::Disconnect,
            provider_config_ref: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Disconnect
}

/// What the operator observed of the channel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    /// The channel id: spec.channelId when set, else the deterministic id (the same id Airy Core
    /// gives this source and source channel id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whether the channel is connected with its provider.
    #[serde(default)]
    pub connected: bool,
    /// The name the provider reports (the Facebook or Instagram channel's page, the Viber account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_name: Option<String>,
    /// The picture the provider reports (the page's, the Viber account's icon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_image_url: Option<String>,
    /// The WhatsApp number as Meta displays it (whatsapp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_phone_number: Option<String>,
    /// The business name Meta verified for the WhatsApp number (whatsapp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_name: Option<String>,
    /// The WhatsApp number's quality rating, e.g. GREEN (whatsapp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_rating: Option<String>,
    /// The connection inputs the channel was connected with (source, source channel id and, where
    /// used, the credentials Secret's name/key/resourceVersion and the provider configuration
    /// resource) — never a token. While they are
    /// unchanged the controller does not connect the channel again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_with: Option<String>,
    /// Written by versions before the record of provider effects: the connection inputs of a
    /// connect whose outcome was not known. Read only, so that such a connect is undone at
    /// disconnect or deletion; this version records its effects in the state namespace
    /// (`effects`) instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_attempted: Option<String>,
    /// What the operator did at the provider for this Channel, as its record holds it: each
    /// effect, where, with which account, through which configuration, and whether the
    /// operator made it or found it there. Never a secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<EffectStatus>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: Ready always; Reconciling and Stalled only while True (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One effect of a Channel at its provider, as the operator's record holds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectStatus {
    /// What: PageSubscription, BusinessAccountSubscription, NumberWebhook or BotWebhook.
    pub kind: crate::effects::EffectKind,
    /// Where: the page id, the WhatsApp Business Account id, the number (E.164) or the Viber
    /// account id.
    pub resource: String,
    /// With which account: the Facebook app id, the Twilio account SID or the Viber bot's
    /// account id.
    pub account: String,
    /// Through which provider configuration: "ProviderConfig <namespace>/<name>",
    /// "ClusterProviderConfig <name>" or "flags" (the operator's own accounts).
    pub provider_config: String,
    /// Made (by the operator), Found (there already) or Adopted (made by Airy Core, vouched for
    /// when migrated); absent while being made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::effects::Origin>,
    /// The effect in words.
    pub description: String,
}

impl EffectStatus {
    /// The status of a recorded effect.
    pub fn of(effect: &crate::effects::Effect, origin: Option<crate::effects::Origin>) -> Self {
        EffectStatus {
            kind: effect.key.kind,
            resource: effect.key.resource.clone(),
            account: effect.key.account.clone(),
            provider_config: effect.config.describe(),
            origin,
            description: effect.key.describe(),
        }
    }
}

/// What the Channel's state means (reported on a generation, connected, …) is defined in
/// [`crate::channel_state`].
impl Channel {
    /// The channel id: `spec.channelId` when set, else the deterministic id of the source and
    /// source channel id under the installation's chat plugin naming (`crate::pinned_id`).
    pub fn channel_id(&self, naming: crate::naming::ChatPluginNaming) -> String {
        crate::pinned_id::effective_id(self, naming)
    }

    /// The Ready condition, if reported.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
    }

    /// The reason of the Ready condition, if reported and known to this version.
    pub fn ready_reason(&self) -> Option<crate::reason::Reason> {
        self.ready_condition()
            .and_then(|c| crate::reason::Reason::parse(&c.reason))
    }

    /// Whether reconciling is paused by the `airy.co/paused: "true"` annotation.
    pub fn is_paused(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true")
    }

    /// Drops what no cache of this operator reads and what can be most of an object's size:
    /// managedFields, the labels, and every annotation but the operator's own (`airy.co/…`;
    /// among the others, the copy of the whole object `kubectl apply` keeps).
    pub fn strip_for_cache(&mut self) {
        self.metadata.managed_fields = None;
        self.metadata.labels = None;
        if let Some(a) = self.metadata.annotations.as_mut() {
            a.retain(|k, _| k.starts_with(OWN_ANNOTATIONS));
            if a.is_empty() {
                self.metadata.annotations = None;
            }
        }
    }
}

/// The prefix of the annotations this operator reads.
const OWN_ANNOTATIONS: &str = "airy.co/";

/// The CRD as YAML, exactly as `channel-operator crd` prints it and `crds/` holds it.
pub fn crd_yaml() -> String {
    let crd = Channel::crd();
    let mut out = String::from(
        "# Generated by `channel-operator crd` from src/crd.rs. Do not edit by hand.\n",
    );
    out.push_str(&serde_yaml::to_string(&crd).expect("CRD serializes to YAML"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_copy_keeps_the_pause_annotation_and_drops_the_applied_copy() {
        const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
        let mut ch = Channel::new("c", ChannelSpec::new(Source::Google, "gbm"));
        ch.metadata.managed_fields = Some(vec![Default::default()]);
        ch.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
        ch.metadata.annotations = Some(
            [
                (LAST_APPLIED_ANNOTATION.to_owned(), "{...}".to_owned()),
                (PAUSED_ANNOTATION.to_owned(), "true".to_owned()),
            ]
            .into(),
        );
        ch.strip_for_cache();
        assert!(ch.metadata.managed_fields.is_none() && ch.metadata.labels.is_none());
        assert!(ch.is_paused());
        assert_eq!(ch.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
        ch.metadata.annotations = Some([(LAST_APPLIED_ANNOTATION.into(), "{}".into())].into());
        ch.strip_for_cache();
        assert!(ch.metadata.annotations.is_none());
    }
}
