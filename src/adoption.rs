//! The adoption record: what an admin vouches for when `channel-operator migrate --apply` moves a
//! connected Airy Core channel onto a Channel. Airy Core made the channel's effects at the
//! provider (its Facebook app subscribed to the page); the record says so, so the controller
//! can hold them as *adopted* — `Ready` without any provider call — and undo them later like any
//! effect it recorded.
//!
//! One Secret per Channel in the operator's state namespace (`--state-namespace`), which neither
//! tenants nor the API identity can write: `adopt-<channel uid>`, of type [`ADOPTION_TYPE`],
//! labelled with the Channel's uid ([`CHANNEL_UID_LABEL`]), its annotation [`ADOPTION`] binding
//! it to the Channel (namespace, name, source, source channel id, channel id, the Airy Core it
//! came from) and naming the effects with the account that made them; its data `token` is the
//! token Airy Core listed, which re-checks and the undo use. A label or annotation on the Channel
//! proves nothing: only this record, written with the rights of the state namespace, does.
//!
//! The controller adopts only a Channel whose record matches it in every point and whose effects
//! are the ones its configuration makes now (`controller::adopt`); it then keeps what the record
//! held in the Channel's own record and deletes this one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::effects::EffectKey;
use crate::ownership::{managed_labels, CHANNEL_UID_LABEL};
use crate::secret::SecretString;

/// The type of an adoption record Secret.
pub const ADOPTION_TYPE: &str = "airy.co/adoption";
/// Annotation of an adoption record: what it vouches for, as JSON ([`Adoption`]).
pub const ADOPTION: &str = "airy.co/adoption";
const TOKEN_KEY: &str = "token";

/// The name of the adoption record of the Channel with `uid`.
pub fn name(uid: &str) -> String {
    format!("adopt-{uid}")
}

/// What an adoption record vouches for: the Channel it is bound to, and what Airy Core made for
/// it at the provider, with which account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Adoption {
    /// The Channel's namespace.
    pub namespace: String,
    /// The Channel's name.
    pub name: String,
    /// The source, as the Channel's spec says it.
    pub source: crate::crd::Source,
    /// The source channel id.
    pub source_channel_id: String,
    /// The channel id (Airy Core's; the Channel's effective id).
    pub channel_id: String,
    /// The Airy Core API the channel was read from.
    pub from: String,
    /// The effects Airy Core made (kind, provider resource, account: the Facebook app id).
    pub effects: Vec<EffectKey>,
}

/// An adoption record as stored: what it vouches for and the token Airy Core listed.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The uid of the Channel it is bound to (its name and label).
    pub uid: String,
    /// What it vouches for.
    pub adoption: Adoption,
    /// The token Airy Core listed (the page token its app subscribed the page with).
    pub token: SecretString,
}

impl Record {
    /// The Secret of this record in the state namespace `namespace`.
    pub fn to_secret(&self, namespace: &str) -> Secret {
        let mut labels = managed_labels();
        labels.insert(CHANNEL_UID_LABEL.into(), self.uid.clone());
        let mut secret = Secret::default();
        secret.metadata.name = Some(name(&self.uid));
        secret.metadata.namespace = Some(namespace.to_owned());
        secret.metadata.labels = Some(labels);
        secret.metadata.annotations = Some(BTreeMap::from([(
            ADOPTION.to_owned(),
            serde_json::to_string(&self.adoption).expect("an adoption serializes"),
        )]));
        secret.type_ = Some(ADOPTION_TYPE.into());
        secret.data = Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(self.token.expose().as_bytes().to_vec()),
        )]));
        secret
    }

    /// The record a Secret holds, or why it is none (another type, no uid label, an unreadable
    /// annotation, no token, a name that is not its uid's).
    pub fn from_secret(secret: &Secret) -> Result<Record, String> {
        if secret.type_.as_deref() != Some(ADOPTION_TYPE) {
            return Err(format!("it is not of type {ADOPTION_TYPE}"));
        }
        let uid = secret
            .labels()
            .get(CHANNEL_UID_LABEL)
            .cloned()
            .ok_or_else(|| format!("it has no {CHANNEL_UID_LABEL} label"))?;
        if secret.metadata.name.as_deref() != Some(name(&uid).as_str()) {
            return Err("its name is not its Channel uid's".into());
        }
        let adoption = secret
            .annotations()
            .get(ADOPTION)
            .ok_or_else(|| format!("it has no {ADOPTION} annotation"))
            .and_then(|a| {
                serde_json::from_str(a).map_err(|e| format!("unreadable {ADOPTION}: {e}"))
            })?;
        let token = secret
            .data
            .as_ref()
            .and_then(|d| d.get(TOKEN_KEY))
            .map(|b| SecretString::new(String::from_utf8_lossy(&b.0)))
            .filter(|t| !t.is_empty())
            .ok_or("it holds no token")?;
        Ok(Record {
            uid,
            adoption,
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Source;
    use crate::effects::EffectKind;

    #[test]
    fn a_record_reads_back_as_written_and_keeps_its_token_out_of_its_words() {
        let record = Record {
            uid: "u-1".into(),
            adoption: Adoption {
                namespace: "team-a".into(),
                name: "facebook-1001".into(),
                source: Source::Facebook,
                source_channel_id: "1001".into(),
                channel_id: "c-1".into(),
                from: "https://airy.example.org".into(),
                effects: vec![EffectKey::new(
                    EffectKind::PageSubscription,
                    "1001",
                    "app-a",
                )],
            },
            token: SecretString::new("EAA-airy-page-token"),
        };
        let secret = record.to_secret("ops-state");
        assert_eq!(secret.metadata.name.as_deref(), Some("adopt-u-1"));
        let words = &secret.annotations()[ADOPTION];
        assert!(words.contains("app-a") && !words.contains("EAA"), "{words}");
        assert_eq!(Record::from_secret(&secret).unwrap(), record);
        // Another type, or a name that is not its uid's: not an adoption record.
        let mut other = secret.clone();
        other.type_ = Some("Opaque".into());
        assert!(Record::from_secret(&other).is_err());
        let mut renamed = secret;
        renamed.metadata.name = Some("adopt-u-2".into());
        assert!(Record::from_secret(&renamed).is_err());
    }
}
