//! What the operator does at a provider, as it records it: an *effect* (a Facebook app's
//! subscription to a page, a WhatsApp Business Account's, a Twilio number's messaging webhook, a
//! Viber bot's webhook) at a provider resource, with an account (the Facebook app id, the Twilio
//! account SID, the Viber bot), made through a provider configuration.
//!
//! Each provider says which effects a connect of a Channel makes ([`crate::providers::Provider`]);
//! the controller writes them down in the Channel's record before the provider call, and counts
//! the Channels holding each one in an entry named by [`EffectKey::entry_name`] (README,
//! "What the operator records of its provider effects"). Two Channels whose effects have the same
//! key share it: a page subscribed for a Facebook and an Instagram Channel with the same app, a
//! number whose SMS and WhatsApp Channels use one Twilio account.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::provider_config::ProviderConfigKind;

/// What an effect is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum EffectKind {
    /// A Facebook app subscribed to a page's messaging webhooks (facebook, and instagram on its
    /// linked page).
    PageSubscription,
    /// A Facebook app subscribed to a WhatsApp Business Account's webhooks (whatsapp with a
    /// businessAccountId).
    BusinessAccountSubscription,
    /// A Twilio number's messaging webhook pointed at the platform (twilio.sms, twilio.whatsapp).
    NumberWebhook,
    /// A Viber bot's webhook pointed at the platform (viber).
    BotWebhook,
}

impl EffectKind {
    /// The name of the kind, as written in records and entries.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectKind::PageSubscription => "PageSubscription",
            EffectKind::BusinessAccountSubscription => "BusinessAccountSubscription",
            EffectKind::NumberWebhook => "NumberWebhook",
            EffectKind::BotWebhook => "BotWebhook",
        }
    }
}

/// One effect at a provider: what, at which provider resource, with which account. The
/// identity of a shared provider resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct EffectKey {
    /// What.
    pub kind: EffectKind,
    /// The provider resource: the page id, the WhatsApp Business Account id, the number (E.164,
    /// without `whatsapp:`), the Viber account id.
    pub resource: String,
    /// The account: the Facebook app id, the Twilio account SID, the Viber bot's account id.
    pub account: String,
}

impl EffectKey {
    /// The effect `kind` at `resource` with `account`.
    pub fn new(kind: EffectKind, resource: impl Into<String>, account: impl Into<String>) -> Self {
        EffectKey {
            kind,
            resource: resource.into(),
            account: account.into(),
        }
    }

    /// The name of the entry counting the Channels that hold this effect: `effect-` and 40 hex
    /// digits of the SHA-256 of `kind/resource/account` (ids may hold characters a name may
    /// not).
    pub fn entry_name(&self) -> String {
        let text = format!("{}/{}/{}", self.kind.as_str(), self.resource, self.account);
        format!("effect-{}", crate::ownership::hex_digest(&text, 20))
    }

    /// The effect in words, e.g. "the Facebook app 123 is subscribed to the page 456".
    pub fn describe(&self) -> String {
        let (r, a) = (&self.resource, &self.account);
        match self.kind {
            EffectKind::PageSubscription => {
                format!("the Facebook app {a} is subscribed to the page {r}")
            }
            EffectKind::BusinessAccountSubscription => {
                format!("the Facebook app {a} is subscribed to the WhatsApp Business Account {r}")
            }
            EffectKind::NumberWebhook => format!(
                "the messaging webhook of the number {r} in the Twilio account {a} points at the platform"
            ),
            EffectKind::BotWebhook => {
                format!("the webhook of the Viber bot {r} points at the platform")
            }
        }
    }
}

/// The provider configuration an effect was made through: a `ProviderConfig` or
/// `ClusterProviderConfig` (by kind, namespace, name and uid), or the operator's own accounts
/// of the flags (no kind).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfigRef {
    /// The configuration's kind; absent for the flags' accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProviderConfigKind>,
    /// Its namespace (a `ProviderConfig`'s).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its uid: another object of the same name is another configuration.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ConfigRef {
    /// The operator's own accounts (the flags').
    pub fn flags() -> Self {
        ConfigRef::default()
    }

    /// Whether it is a configuration object (which a finalizer can protect).
    pub fn is_object(&self) -> bool {
        self.kind.is_some()
    }

    /// `ProviderConfig/ns/name` or `ClusterProviderConfig/name` (part of a Channel's connection
    /// inputs, `status.connectedWith`); `None` for the flags'.
    pub fn key(&self) -> Option<String> {
        match self.kind? {
            ProviderConfigKind::ProviderConfig => {
                Some(format!("ProviderConfig/{}/{}", self.namespace, self.name))
            }
            ProviderConfigKind::ClusterProviderConfig => {
                Some(format!("ClusterProviderConfig/{}", self.name))
            }
        }
    }

    /// In words: `ProviderConfig ns/name`, `ClusterProviderConfig name` or `flags` (the
    /// operator's own accounts).
    pub fn describe(&self) -> String {
        match self.kind {
            Some(ProviderConfigKind::ProviderConfig) => {
                format!("ProviderConfig {}/{}", self.namespace, self.name)
            }
            Some(ProviderConfigKind::ClusterProviderConfig) => {
                format!("ClusterProviderConfig {}", self.name)
            }
            None => "flags".into(),
        }
    }
}

/// How an effect came to be.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Origin {
    /// The operator made it at the provider.
    Made,
    /// It was there already when the operator came to hold it (Graph's `is_webhooks_subscribed`,
    /// a connection made by an earlier version of the operator): adopted, and undone like one
    /// it made.
    Found,
    /// Airy Core made it, and an admin vouched for it when moving the channel with `migrate`
    /// (an adoption record, [`crate::adoption`]): held without a provider call, undone like one
    /// the operator made.
    Adopted,
}

/// An effect as a Channel's record holds it: the effect and the configuration it was made
/// through.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    /// What, where, with which account.
    #[serde(flatten)]
    pub key: EffectKey,
    /// Through which configuration.
    pub config: ConfigRef,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_named_by_the_effect_and_its_account_only() {
        let a = EffectKey::new(EffectKind::PageSubscription, "1001", "app-a");
        let name = a.entry_name();
        assert!(name.starts_with("effect-") && name.len() == "effect-".len() + 40);
        assert_eq!(
            name,
            EffectKey::new(EffectKind::PageSubscription, "1001", "app-a").entry_name()
        );
        // Another app, another resource, another kind: another entry.
        for other in [
            EffectKey::new(EffectKind::PageSubscription, "1001", "app-b"),
            EffectKey::new(EffectKind::PageSubscription, "1002", "app-a"),
            EffectKey::new(EffectKind::BusinessAccountSubscription, "1001", "app-a"),
        ] {
            assert_ne!(other.entry_name(), name);
        }
    }

    #[test]
    fn a_record_effect_reads_back_as_written() {
        let e = Effect {
            key: EffectKey::new(EffectKind::NumberWebhook, "+4915100000001", "AC2"),
            config: ConfigRef {
                kind: Some(ProviderConfigKind::ProviderConfig),
                namespace: "team-a".into(),
                name: "one".into(),
                uid: "u-1".into(),
            },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Effect>(&json).unwrap(), e);
        assert_eq!(e.config.key().as_deref(), Some("ProviderConfig/team-a/one"));
        assert_eq!(ConfigRef::flags().key(), None);
        assert_eq!(ConfigRef::flags().describe(), "flags");
    }
}
