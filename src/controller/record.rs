//! A Channel's record in the operator's state namespace (`--state-namespace`), which neither
//! tenants nor the API identity can read: one Secret per Channel, `channel-<channel uid>`, of
//! type [`RECORD_TYPE`], written before every provider call that makes an effect and read by
//! every undo.
//!
//! - annotation [`EFFECTS_ANNOTATION`]: the effects the Channel holds or is about to make (JSON:
//!   kind, provider resource, account, the configuration's kind/namespace/name/uid) — an effect
//!   written here may or may not have been made yet, and an undo treats both alike;
//! - annotation [`CHANNEL_ANNOTATION`]: the Channel's `namespace/name`, for people;
//! - labels: managed-by, [`CHANNEL_UID_LABEL`] and, while effects made through a configuration
//!   object are recorded, [`CONFIG_UID_LABEL`] (what keeps the configuration's `airy.co/in-use`
//!   finalizer);
//! - data: `token`, the token the controller derived and re-checks with (the page access token,
//!   the long-lived WhatsApp token, a copy of the Viber bot token), and `undo`, the credential the
//!   undo of the effects needs (the same token, or a copy of the Twilio account's auth token), so
//!   that an undo never depends on a Secret a tenant or an admin can delete.
//!
//! The record goes once nothing is left to undo: after a disconnect, and before the Channel's
//! finalizer goes at its deletion. The Channel's reconciles are its only writer; every write
//! carries the resourceVersion read (`guarded`; a create where there was none), every delete
//! the uid and resourceVersion.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::error::Error;
use crate::crd::Channel;
use crate::effects::{ConfigRef, Effect};
use crate::ownership::{managed_labels, CHANNEL_UID_LABEL, MANAGER};
use crate::secret::SecretString;

/// The type of a record Secret.
pub const RECORD_TYPE: &str = "airy.co/channel-record";
/// Label of a record: the uid of the configuration object its effects were made through.
pub const CONFIG_UID_LABEL: &str = "airy.co/provider-config-uid";
/// Annotation of a record: the Channel's `namespace/name`.
pub const CHANNEL_ANNOTATION: &str = "airy.co/channel";
/// Annotation of a record: its effects, as JSON.
pub const EFFECTS_ANNOTATION: &str = "airy.co/effects";
const TOKEN_KEY: &str = "token";
const UNDO_KEY: &str = "undo";

/// What the record of a Channel holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// The effects the Channel holds, or is about to make.
    pub effects: Vec<Effect>,
    /// The token re-checks use.
    pub token: Option<SecretString>,
    /// The credential the effects' undo uses.
    pub undo: Option<SecretString>,
    /// The Secret as stored (read or written); `None` before it is written.
    stored: Option<Box<Secret>>,
}

/// The name of the record of `ch`.
pub fn name(ch: &Channel) -> String {
    format!("channel-{}", ch.uid().unwrap_or_default())
}

impl Record {
    /// A record holding `effects` and these tokens, to be written over `previous` (if any).
    pub fn next(
        previous: Option<&Record>,
        effects: Vec<Effect>,
        token: Option<SecretString>,
        undo: Option<SecretString>,
    ) -> Record {
        Record {
            effects,
            token,
            undo,
            stored: previous.and_then(|p| p.stored.clone()),
        }
    }

    /// The same record holding only `effects`.
    pub fn with_effects(&self, effects: Vec<Effect>) -> Record {
        Record {
            effects,
            ..self.clone()
        }
    }

    /// The configuration object its effects were made through, if any.
    pub fn config(&self) -> Option<&ConfigRef> {
        self.effects
            .iter()
            .map(|e| &e.config)
            .find(|c| c.is_object())
    }

    fn to_secret(&self, ch: &Channel, namespace: &str) -> Secret {
        let mut labels = managed_labels();
        labels.insert(CHANNEL_UID_LABEL.into(), ch.uid().unwrap_or_default());
        if let Some(c) = self.config() {
            labels.insert(CONFIG_UID_LABEL.into(), c.uid.clone());
        }
        let annotations = BTreeMap::from([
            (
                CHANNEL_ANNOTATION.to_owned(),
                format!("{}/{}", ch.namespace().unwrap_or_default(), ch.name_any()),
            ),
            (
                EFFECTS_ANNOTATION.to_owned(),
                serde_json::to_string(&self.effects).expect("effects serialize"),
            ),
        ]);
        let data: BTreeMap<String, ByteString> = [(TOKEN_KEY, &self.token), (UNDO_KEY, &self.undo)]
            .into_iter()
            .filter_map(|(k, v)| {
                v.as_ref()
                    .map(|v| (k.to_owned(), ByteString(v.expose().as_bytes().to_vec())))
            })
            .collect();
        let mut secret = Secret::default();
        secret.metadata.name = Some(name(ch));
        secret.metadata.namespace = Some(namespace.to_owned());
        secret.metadata.labels = Some(labels);
        secret.metadata.annotations = Some(annotations);
        secret.type_ = Some(RECORD_TYPE.into());
        secret.data = Some(data);
        secret
    }

    fn from_secret(secret: &Secret) -> Result<Record, String> {
        let effects = secret
            .annotations()
            .get(EFFECTS_ANNOTATION)
            .map(|e| serde_json::from_str(e).map_err(|e| format!("unreadable effects: {e}")))
            .transpose()?
            .unwrap_or_default();
        Ok(Record {
            effects,
            token: super::secrets::secret_value(secret, TOKEN_KEY),
            undo: super::secrets::secret_value(secret, UNDO_KEY),
            stored: Some(Box::new(secret.clone())),
        })
    }
}

fn is_record_of(secret: &Secret, ch: &Channel) -> bool {
    secret.type_.as_deref() == Some(RECORD_TYPE)
        && secret.labels().get(CHANNEL_UID_LABEL) == ch.uid().as_ref()
}

fn conflict(api_ns: &str, ch: &Channel, why: &str) -> Error {
    Error::SecretConflict(format!(
        "the Secret {api_ns}/{} in the operator's state namespace is not this Channel's record ({why}); it is left untouched",
        name(ch)
    ))
}

/// The record of `ch` in the state namespace (`api`), if there is one.
pub async fn read(api: &Api<Secret>, ns: &str, ch: &Channel) -> Result<Option<Record>, Error> {
    let Some(secret) = api.get_opt(&name(ch)).await? else {
        return Ok(None);
    };
    if !is_record_of(&secret, ch) {
        return Err(conflict(ns, ch, "another type or Channel uid"));
    }
    Record::from_secret(&secret)
        .map(Some)
        .map_err(|why| conflict(ns, ch, &why))
}

/// Writes `record` for `ch`: a create when it was never written, else a patch guarded by the
/// resourceVersion read (`guarded`). Returns the record as stored.
pub async fn write(
    api: &Api<Secret>,
    ns: &str,
    ch: &Channel,
    record: &Record,
) -> Result<Record, Error> {
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let secret = record.to_secret(ch, ns);
    let stored = match &record.stored {
        None => api.create(&params, &secret).await?,
        Some(old) => super::guarded::write(api, &name(ch), old, &secret).await?,
    };
    Record::from_secret(&stored).map_err(|why| conflict(ns, ch, &why))
}

/// Deletes the record (guarded by its uid and resourceVersion); one already gone is fine.
pub async fn delete(api: &Api<Secret>, ch: &Channel, record: &Record) -> Result<(), Error> {
    let Some(stored) = &record.stored else {
        return Ok(());
    };
    let (uid, version) = (&stored.metadata.uid, &stored.metadata.resource_version);
    super::guarded::delete(api, &name(ch), uid.clone(), version.clone()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChannelSpec, Source};
    use crate::effects::{EffectKey, EffectKind};
    use crate::provider_config::ProviderConfigKind;

    #[test]
    fn a_record_keeps_its_effects_in_words_and_its_tokens_as_data() {
        let mut ch = Channel::new("shop", ChannelSpec::new(Source::Facebook, "1001"));
        ch.metadata.namespace = Some("team-a".into());
        ch.metadata.uid = Some("uid-1".into());
        let effect = Effect {
            key: EffectKey::new(EffectKind::PageSubscription, "1001", "app-a"),
            config: ConfigRef {
                kind: Some(ProviderConfigKind::ProviderConfig),
                namespace: "team-a".into(),
                name: "one".into(),
                uid: "cfg-uid".into(),
            },
        };
        let token = SecretString::new("EAA-page-access");
        let record = Record::next(None, vec![effect], Some(token.clone()), Some(token));
        let mut secret = record.to_secret(&ch, "ops-state");
        assert_eq!(secret.metadata.name.as_deref(), Some("channel-uid-1"));
        assert_eq!(secret.labels()[CONFIG_UID_LABEL], "cfg-uid");
        assert_eq!(secret.annotations()[CHANNEL_ANNOTATION], "team-a/shop");
        let effects = &secret.annotations()[EFFECTS_ANNOTATION];
        assert!(
            effects.contains("app-a") && !effects.contains("EAA"),
            "{effects}"
        );
        assert!(is_record_of(&secret, &ch));
        secret.metadata.uid = Some("s-uid".into());
        secret.metadata.resource_version = Some("7".into());
        let back = Record::from_secret(&secret).unwrap();
        assert_eq!(back.effects, record.effects);
        assert_eq!(back.token, record.token);
        let stored = back.stored.as_ref().unwrap();
        assert_eq!(stored.metadata.resource_version.as_deref(), Some("7"));
        // No effect made through a configuration object: no configuration label.
        let plain = Record::next(None, vec![], Some(SecretString::new("t")), None);
        assert!(!plain
            .to_secret(&ch, "ops-state")
            .labels()
            .contains_key(CONFIG_UID_LABEL));
    }
}
