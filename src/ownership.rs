//! The resources the HTTP API and the controller share, and who may do what with each: the one
//! contract between the two halves. Both import it; neither keeps its own copy of these rules.
//!
//! Besides a credentials Secret a user declares (never the operator's: only read), a Channel
//! can have these Secrets of the operator's in its namespace:
//!
//! | kind | name, key | written by | deleted by |
//! |---|---|---|---|
//! | [`SecretKind::Credentials`]: the user's page token as the API received it | `<channel>-page-token-<first 10 hex of sha256(token)>`, `page_token` | the API, at connect (created, never updated: the name follows the token) | the API when a connect replaces the token or the Channel it created is removed again; the controller when the Channel is deleted |
//! | [`SecretKind::DerivedToken`]: the page access token an older version of the controller derived | `<channel>-facebook-token`, `page_access_token` | nobody any more: the controller keeps what it derives in the Channel's record in its state namespace | the controller, once it recorded (or undid) what that version made |
//!
//! **Credentials by consent.** A Channel's spec may name any Secret of its namespace, but the
//! controller uses one as credentials only when the Secret itself says it may
//! ([`usable_as_credentials`]): it carries [`CREDENTIALS_LABEL`]`: "true"`, set by whoever may
//! write Secrets there (the API sets it on the credentials it writes), and, when a Channel
//! controls it, that Channel is the one naming it. Rights to create Channels are no rights to
//! another user's Secrets; the operator's own Secrets (records, provider configuration) never
//! carry the label.
//!
//! A Secret is *ours* ([`is_ours`]) when it carries the [`MANAGED_BY_LABEL`] label with value
//! [`MANAGER`] and its controller ownerReference is the Channel (by uid); nothing else is ever
//! modified or deleted. The garbage collector removes both with the Channel as well.
//!
//! **A disconnect keeps the credentials.** The Channel's `spec.credentialsSecretRef` names the
//! credentials Secret whatever `spec.connected` says, so it stays as long as the spec names it:
//! connecting again (through the API with the same token, or `kubectl patch` setting
//! `connected: true`) finds what the spec names. What a connect produced — the provider's
//! subscription, the record of it and the token derived — is undone by a disconnect. A user who
//! wants the token gone deletes the Channel (or connects with another token, which replaces the
//! Secret).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::channel_state::{controlled_by, controlled_by_another_channel};
use crate::crd::Channel;

/// The operator's name: the value of [`MANAGED_BY_LABEL`] on what it writes, its field manager
/// and the reporting controller of its Events.
pub const MANAGER: &str = "channel-operator";
/// Label marking what the operator (controller or API) created.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label by which a Secret consents to be used as a Channel's credentials (value
/// [`CREDENTIALS_CONSENT`]); see [`usable_as_credentials`].
pub const CREDENTIALS_LABEL: &str = "airy.co/credentials";
/// The value of [`CREDENTIALS_LABEL`] that gives consent.
pub const CREDENTIALS_CONSENT: &str = "true";
/// Key of the page access token in the derived-token Secret of an older version.
pub const TOKEN_KEY: &str = "page_access_token";
/// Key of the user's page token in the credentials Secret the API writes.
pub const PAGE_TOKEN_KEY: &str = "page_token";

/// The two kinds of Secrets the operator keeps for a Channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// The user's credentials as the API stored them; named by `spec.credentialsSecretRef`.
    Credentials,
    /// The token an older version of the controller derived from the credentials at connect.
    DerivedToken,
}

/// When the controller deletes Secrets of a Channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// `connected: false`: undo what a connect produced.
    Disconnect,
    /// The Channel is being deleted: nothing of it stays.
    Deletion,
}

impl SecretKind {
    /// Whether the controller deletes a Secret of this kind (when it is ours) at `moment`.
    pub fn deleted_by_controller_at(self, moment: Moment) -> bool {
        match (self, moment) {
            (SecretKind::DerivedToken, _) => true,
            (SecretKind::Credentials, Moment::Deletion) => true,
            // The spec still names it: a later connect needs it (see the module docs).
            (SecretKind::Credentials, Moment::Disconnect) => false,
        }
    }
}

/// Name of the Secret in which an older version kept the page access token it derived for a
/// Channel (read for the undo of what that version made; never written any more).
pub fn token_secret_name(channel_name: &str) -> String {
    format!("{channel_name}-facebook-token")
}

/// Name of the Secret the API stores a page token in: it changes with the token, so a new token
/// changes the Channel's spec and the controller connects again.
pub fn credentials_secret_name(channel_name: &str, token: &str) -> String {
    format!("{channel_name}-page-token-{}", hex_digest(token, 5))
}

/// The first `bytes` bytes of the SHA-256 of `text`, in lower-case hex: how the operator names
/// objects after values that may not be names themselves.
pub fn hex_digest(text: &str, bytes: usize) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref()[..bytes.min(32)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The credentials Secret `namespace/name` the operator writes: `token` under [`PAGE_TOKEN_KEY`],
/// the operator's labels and consent to be a Channel's credentials ([`credentials_labels`]),
/// controlled by `owner` when given.
pub fn credentials_secret(
    namespace: &str,
    name: &str,
    token: &crate::secret::SecretString,
    owner: Option<&Channel>,
) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(credentials_labels()),
            owner_references: owner.and_then(owner_reference).map(|r| vec![r]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            PAGE_TOKEN_KEY.to_owned(),
            k8s_openapi::ByteString(token.expose().as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// Which of the Channel's Secrets `name` is, by its name.
pub fn kind_of(name: &str, ch: &Channel) -> SecretKind {
    if name == token_secret_name(&ch.name_any()) {
        SecretKind::DerivedToken
    } else {
        SecretKind::Credentials
    }
}

/// The labels of what the API creates (Channels, credentials Secrets).
pub fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned())])
}

/// The labels of the credentials Secrets the API writes: the operator's, and consent to be used
/// as the credentials of a Channel.
pub fn credentials_labels() -> BTreeMap<String, String> {
    let mut labels = managed_labels();
    labels.insert(CREDENTIALS_LABEL.to_owned(), CREDENTIALS_CONSENT.to_owned());
    labels
}

/// Whether the controller may use the Secret `meta` as the credentials of `ch`: it carries
/// [`CREDENTIALS_LABEL`] with value [`CREDENTIALS_CONSENT`], and no other Channel controls it
/// (another user's credentials the API stored stay that Channel's). Decided on the metadata
/// alone: the data of a Secret that fails this is never read.
pub fn usable_as_credentials(meta: &ObjectMeta, ch: &Channel) -> bool {
    let consents = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(CREDENTIALS_LABEL))
        .is_some_and(|v| v == CREDENTIALS_CONSENT);
    consents && !controlled_by_another_channel(meta, ch)
}

/// The label selector of every Secret the operator may have written.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

fn labelled(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGER)
}

/// Whether the Secret is this Channel's: the operator labelled it and its controller
/// ownerReference is the Channel (by uid).
pub fn is_ours(meta: &ObjectMeta, ch: &Channel) -> bool {
    let Some(uid) = ch.uid() else { return false };
    labelled(meta) && controlled_by(meta, &uid)
}

/// Whether the API may make `ch` the owner of the existing credentials Secret `meta`, or remove
/// it again when the connect that needed it failed: one the operator labelled that is already
/// the Channel's, or that nothing controls yet (written for a Channel not created yet, or by an
/// earlier attempt of the same connect, cut off before it gave the Secret its Channel).
pub fn api_may_take(meta: &ObjectMeta, ch: &Channel) -> bool {
    let controlled = meta
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.controller == Some(true)));
    labelled(meta) && (!controlled || is_ours(meta, ch))
}

/// Whether the controller deletes the Secret `meta` of `ch` at `moment`.
pub fn controller_deletes(meta: &ObjectMeta, ch: &Channel, moment: Moment) -> bool {
    is_ours(meta, ch)
        && kind_of(meta.name.as_deref().unwrap_or_default(), ch).deleted_by_controller_at(moment)
}

/// Whether the API deletes the Secret `meta` that `ch` no longer names (its token was replaced):
/// only credentials of the Channel's, never the controller's derived token or a user's Secret.
pub fn api_deletes_replaced(meta: &ObjectMeta, ch: &Channel) -> bool {
    is_ours(meta, ch)
        && kind_of(meta.name.as_deref().unwrap_or_default(), ch) == SecretKind::Credentials
}

/// The controller ownerReference making `ch` own (and garbage-collect) a Secret.
pub fn owner_reference(
    ch: &Channel,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    ch.controller_owner_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChannelSpec, Source};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn channel(uid: &str) -> Channel {
        let mut ch = Channel::new("shop", ChannelSpec::new(Source::Facebook, "1234"));
        ch.metadata.uid = Some(uid.into());
        ch
    }

    fn secret(name: &str, labels: bool, owner: Option<(&str, bool)>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            labels: labels.then(managed_labels),
            owner_references: owner.map(|(uid, controller)| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(controller),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn credentials_secret_names_follow_the_token_and_never_hold_it() {
        let a = credentials_secret_name("f405cad8-dd03-5275-be27-a660d4d64949", "token-1");
        let b = credentials_secret_name("f405cad8-dd03-5275-be27-a660d4d64949", "token-2");
        assert_ne!(a, b);
        // sha256("token-1") = 3f08aace122ee236...: the first 10 hex digits name the Secret.
        assert_eq!(
            a,
            "f405cad8-dd03-5275-be27-a660d4d64949-page-token-3f08aace12"
        );
        assert!(!a.contains("token-1"));
    }

    #[test]
    fn ours_means_labelled_and_controlled_by_this_channel() {
        let ch = channel("u1");
        assert!(is_ours(&secret("x", true, Some(("u1", true))), &ch));
        assert!(!is_ours(&secret("x", false, Some(("u1", true))), &ch));
        assert!(!is_ours(&secret("x", true, Some(("u1", false))), &ch));
        assert!(!is_ours(&secret("x", true, Some(("u2", true))), &ch));
        assert!(!is_ours(&secret("x", true, None), &ch));
    }

    #[test]
    fn only_consenting_secrets_not_controlled_by_another_channel_are_credentials() {
        let ch = channel("u1");
        let with = |labels: BTreeMap<String, String>, owner: Option<(&str, &str)>| ObjectMeta {
            labels: Some(labels),
            owner_references: owner.map(|(kind, uid)| {
                vec![OwnerReference {
                    api_version: if kind == "Channel" {
                        "airy.co/v1alpha1"
                    } else {
                        "external-secrets.io/v1"
                    }
                    .into(),
                    kind: kind.into(),
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let consent = || BTreeMap::from([(CREDENTIALS_LABEL.into(), "true".into())]);
        assert!(usable_as_credentials(&with(consent(), None), &ch));
        assert!(usable_as_credentials(
            &with(credentials_labels(), Some(("Channel", "u1"))),
            &ch
        ));
        // Made by another controller (external-secrets, sealed-secrets): still the user's call.
        assert!(usable_as_credentials(
            &with(consent(), Some(("ExternalSecret", "x"))),
            &ch
        ));
        // Another Channel's credentials, as the API stored them.
        assert!(!usable_as_credentials(
            &with(credentials_labels(), Some(("Channel", "u2"))),
            &ch
        ));
        // No consent: the operator's own label, another value, no label at all.
        assert!(!usable_as_credentials(&with(managed_labels(), None), &ch));
        let other = BTreeMap::from([(CREDENTIALS_LABEL.into(), "yes".into())]);
        assert!(!usable_as_credentials(&with(other, None), &ch));
        assert!(!usable_as_credentials(&ObjectMeta::default(), &ch));
    }

    #[test]
    fn a_disconnect_deletes_the_derived_token_and_keeps_the_credentials() {
        let ch = channel("u1");
        let token = secret("shop-facebook-token", true, Some(("u1", true)));
        let creds = secret("shop-page-token-3f08aace12", true, Some(("u1", true)));
        assert!(controller_deletes(&token, &ch, Moment::Disconnect));
        assert!(!controller_deletes(&creds, &ch, Moment::Disconnect));
        assert!(controller_deletes(&token, &ch, Moment::Deletion));
        assert!(controller_deletes(&creds, &ch, Moment::Deletion));
        // A user's Secret is never deleted, whatever its name.
        let users = secret("shop-facebook-token", false, None);
        assert!(!controller_deletes(&users, &ch, Moment::Deletion));
    }

    #[test]
    fn the_api_replaces_only_its_credentials_and_adopts_only_unclaimed_ones() {
        let ch = channel("u1");
        let creds = secret("shop-page-token-3f08aace12", true, Some(("u1", true)));
        let token = secret("shop-facebook-token", true, Some(("u1", true)));
        assert!(api_deletes_replaced(&creds, &ch));
        assert!(!api_deletes_replaced(&token, &ch));
        assert!(!api_deletes_replaced(
            &secret("declared-token", false, None),
            &ch
        ));
        assert!(api_may_take(&secret("s", true, None), &ch));
        assert!(api_may_take(&creds, &ch));
        assert!(!api_may_take(&secret("s", true, Some(("u2", true))), &ch));
        assert!(!api_may_take(&secret("s", false, None), &ch));
    }
}
