//! The resources the HTTP API and the controller share, and who may do what with each: the one
//! contract between the two halves. Both import it; neither keeps its own copy of these rules.
//!
//! Besides a credentials Secret a user declares (never the operator's: only read), a Channel
//! can have these Secrets of the operator's in its namespace:
//!
//! | kind | name, key | written by | deleted by |
//! |---|---|---|---|
//! | [`SecretKind::Credentials`]: the user's page token as the API received it | `<channel>-page-token-<first 10 hex of sha256(token)>`, `page_token` | the API, at connect: created only (the API may create Secrets and nothing else), with the Channel as its controller owner, the Channel's uid ([`CHANNEL_UID_LABEL`]) and the Channel's generation when written ([`WRITTEN_AT_GENERATION`]); never updated: the name follows the token | the controller, once the spec no longer names it at a later generation ([`controller_deletes_unnamed`]: a token a later connect replaced, or one a failed connect wrote), and when the Channel is deleted; the garbage collector with the Channel |
//! | [`SecretKind::DerivedToken`]: the page access token an older version of the controller derived | `<channel>-facebook-token`, `page_access_token` | nobody any more: the controller keeps what it derives in the Channel's record in its state namespace | the controller, once it recorded (or undid) what that version made |
//!
//! **Credentials by consent.** A Channel's spec may name any Secret of its namespace, but the
//! controller uses one as credentials only when the Secret itself says it may
//! ([`usable_as_credentials`]): it carries [`CREDENTIALS_LABEL`]`: "true"`, set by whoever may
//! write Secrets there (the API sets it on the credentials it writes), and, when a Channel
//! controls it, that Channel is the one naming it. Rights to create Channels are no rights to
//! another user's Secrets; the operator's own Secrets (records, provider configuration) never
//! carry the label. A name of the form the API gives a Channel's credentials
//! (`<channel>-page-token-<10 hex>`) is more: a promise that the Secret holds the token whose
//! digest it carries ([`token_fits_name`]). The API cannot read a Secret, so when its create
//! meets one of that name (409) it cannot tell whether it wrote it; one someone else created
//! first with another token is refused by the controller, and one holding the same token is the
//! token the caller handed over anyway.
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
/// Label naming the uid of the Channel a Secret was written for: the controller lists a
/// Channel's credentials Secrets by it, and labels a Channel's record with it.
pub const CHANNEL_UID_LABEL: &str = "airy.co/channel-uid";
/// Annotation of a credentials Secret the API writes: the Channel's `metadata.generation` when it
/// was written (the API writes it, then changes the spec to name it).
pub const WRITTEN_AT_GENERATION: &str = "airy.co/written-at-generation";
/// Annotation the API sets on a Channel when it writes a credentials Secret for it (in the patch
/// that names the Secret): the controller looks for credentials Secrets to delete only on the
/// Channels the API has written for ([`api_has_written_credentials`]), even when an undo has put
/// back a spec naming a Secret of the user's.
pub const API_CREDENTIALS_ANNOTATION: &str = "airy.co/api-credentials";
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
/// controlled by `owner` when given (without `blockOwnerDeletion`, which would need a right on
/// the Channel's finalizers).
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

/// The credentials Secret the API writes for `owner` as it is read now: [`credentials_secret`]
/// controlled by it, labelled with its uid ([`CHANNEL_UID_LABEL`]) and annotated with its
/// generation ([`WRITTEN_AT_GENERATION`]), so that the controller deletes it once the spec
/// moved on without it ([`controller_deletes_unnamed`]).
pub fn api_credentials_secret(
    namespace: &str,
    name: &str,
    token: &crate::secret::SecretString,
    owner: &Channel,
) -> k8s_openapi::api::core::v1::Secret {
    let mut s = credentials_secret(namespace, name, token, Some(owner));
    let labels = s.metadata.labels.get_or_insert_with(Default::default);
    labels.extend(owner.uid().map(|uid| (CHANNEL_UID_LABEL.to_owned(), uid)));
    s.metadata.annotations = Some(BTreeMap::from([(
        WRITTEN_AT_GENERATION.to_owned(),
        owner.metadata.generation.unwrap_or(0).to_string(),
    )]));
    s
}

/// Whether `token`, read from the Secret `name` that `ch` names, fits the name: a name of the
/// form the API gives the credentials of this Channel ([`credentials_secret_name`]) must be the
/// one derived from the token; any other name is the user's choice and says nothing.
pub fn token_fits_name(name: &str, ch: &Channel, token: &str) -> bool {
    !of_the_apis_form(name, ch) || credentials_secret_name(&ch.name_any(), token) == name
}

/// Whether the API may have written credentials Secrets for `ch`: its spec names one of the API's
/// form, or the API marked it ([`API_CREDENTIALS_ANNOTATION`]) when it wrote one.
pub fn api_has_written_credentials(ch: &Channel) -> bool {
    let names_one = ch
        .spec
        .credentials_secret_ref
        .as_ref()
        .is_some_and(|r| of_the_apis_form(&r.name, ch));
    names_one || ch.annotations().contains_key(API_CREDENTIALS_ANNOTATION)
}

/// Whether `name` has the form of the credentials Secrets the API writes for `ch`:
/// `<channel>-page-token-<10 lowercase hex>`.
pub fn of_the_apis_form(name: &str, ch: &Channel) -> bool {
    let prefix = format!("{}-page-token-", ch.name_any());
    name.strip_prefix(&prefix).is_some_and(|digest| {
        digest.len() == 10
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
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
/// (another user's credentials the API stored stay that Channel's). The credentials an earlier
/// version of the API wrote for this very Channel consent too without the label (ours, under
/// the API's name form: the API labelled them when it could still patch them). Decided on the
/// metadata alone: the data of a Secret that fails this is never read.
pub fn usable_as_credentials(meta: &ObjectMeta, ch: &Channel) -> bool {
    let consents = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(CREDENTIALS_LABEL))
        .is_some_and(|v| v == CREDENTIALS_CONSENT);
    let written_for_it =
        is_ours(meta, ch) && of_the_apis_form(meta.name.as_deref().unwrap_or_default(), ch);
    (consents || written_for_it) && !controlled_by_another_channel(meta, ch)
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

/// Whether the Secret `meta` is a credentials Secret the operator wrote for `ch` (ours, and not
/// the derived token).
pub fn credentials_of(meta: &ObjectMeta, ch: &Channel) -> bool {
    is_ours(meta, ch)
        && kind_of(meta.name.as_deref().unwrap_or_default(), ch) == SecretKind::Credentials
}

/// The label selector of the credentials Secrets the API wrote for `ch` (by its uid).
pub fn credentials_selector(ch: &Channel) -> String {
    format!(
        "{},{CHANNEL_UID_LABEL}={}",
        managed_selector(),
        ch.uid().unwrap_or_default()
    )
}

/// Whether the controller deletes the credentials Secret `meta` that the spec of `ch` (as
/// observed, at its generation) does not name: one the operator wrote for this Channel at an
/// earlier generation — a token a later connect replaced, or one written by a connect whose
/// change of the spec failed or was undone. One written at the Channel's current generation is
/// kept: the API writes a new token's Secret first, then changes the spec to name it, on the
/// condition that the Channel did not change since it was read (so that generation is the last
/// before the one naming it). Generations only grow, and a cache only lags, so a Secret is never
/// deleted before the spec names it.
pub fn controller_deletes_unnamed(meta: &ObjectMeta, ch: &Channel) -> bool {
    let named = ch
        .spec
        .credentials_secret_ref
        .as_ref()
        .is_some_and(|r| Some(&r.name) == meta.name.as_ref());
    let written_at = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(WRITTEN_AT_GENERATION))
        .and_then(|g| g.parse::<i64>().ok())
        .unwrap_or(0);
    credentials_of(meta, ch) && !named && written_at < ch.metadata.generation.unwrap_or(0)
}

/// Whether the controller deletes the Secret `meta` of `ch` at `moment`.
pub fn controller_deletes(meta: &ObjectMeta, ch: &Channel, moment: Moment) -> bool {
    is_ours(meta, ch)
        && kind_of(meta.name.as_deref().unwrap_or_default(), ch).deleted_by_controller_at(moment)
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
        // Written by an earlier API for this very Channel (its name form, its ownerReference).
        let mut legacy = with(managed_labels(), Some(("Channel", "u1")));
        legacy.name = Some(credentials_secret_name("shop", "token-1"));
        assert!(usable_as_credentials(&legacy, &ch));
        legacy.name = Some("declared-token".into());
        assert!(!usable_as_credentials(&legacy, &ch));
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
    fn the_controller_deletes_credentials_the_spec_stopped_naming_at_a_later_generation() {
        let mut ch = channel("u1");
        ch.metadata.generation = Some(4);
        ch.spec.credentials_secret_ref = Some(crate::crd::SecretKeyRef {
            name: "shop-page-token-2222222222".into(),
            key: PAGE_TOKEN_KEY.into(),
        });
        let written_at = |name: &str, generation: Option<i64>, labels: bool, owner: &str| {
            let mut meta = secret(name, labels, Some((owner, true)));
            meta.annotations =
                generation.map(|g| BTreeMap::from([(WRITTEN_AT_GENERATION.into(), g.to_string())]));
            meta
        };
        // Replaced by a later connect (written at 2, the spec names another since 3 or 4).
        let replaced = written_at("shop-page-token-1111111111", Some(2), true, "u1");
        assert!(controller_deletes_unnamed(&replaced, &ch));
        // Written for the connect now under way: the spec names it at the next generation.
        let pending = written_at("shop-page-token-3333333333", Some(4), true, "u1");
        assert!(!controller_deletes_unnamed(&pending, &ch));
        // Written before this version (no annotation): a leftover once unnamed.
        let legacy = written_at("shop-page-token-4444444444", None, true, "u1");
        assert!(controller_deletes_unnamed(&legacy, &ch));
        // The one the spec names, another Channel's, a user's, the derived token: kept.
        let named = written_at("shop-page-token-2222222222", Some(1), true, "u1");
        assert!(!controller_deletes_unnamed(&named, &ch));
        let others = written_at("shop-page-token-1111111111", Some(2), true, "u2");
        assert!(!controller_deletes_unnamed(&others, &ch));
        let users = written_at("shop-page-token-1111111111", Some(2), false, "u1");
        assert!(!controller_deletes_unnamed(&users, &ch));
        let token = written_at("shop-facebook-token", Some(2), true, "u1");
        assert!(!controller_deletes_unnamed(&token, &ch));
    }

    #[test]
    fn the_controller_looks_for_the_apis_credentials_where_the_api_wrote_some() {
        let mut ch = channel("u1");
        ch.spec.credentials_secret_ref = Some(crate::crd::SecretKeyRef {
            name: "declared-token".into(),
            key: "page_token".into(),
        });
        // A user's Secret named, never touched by the API: nothing to look for.
        assert!(!api_has_written_credentials(&ch));
        // A connect the API undid put the user's Secret back; its mark stays.
        ch.annotations_mut()
            .insert(API_CREDENTIALS_ANNOTATION.into(), "true".into());
        assert!(api_has_written_credentials(&ch));
        ch.annotations_mut().clear();
        ch.spec.credentials_secret_ref.as_mut().unwrap().name =
            credentials_secret_name("shop", "token-1");
        assert!(api_has_written_credentials(&ch));
    }

    #[test]
    fn a_name_of_the_apis_form_must_be_the_one_its_token_gives() {
        let ch = channel("u1");
        let name = credentials_secret_name("shop", "token-1");
        assert!(token_fits_name(&name, &ch, "token-1"));
        // A squatter's Secret under the name the API was about to create, with another token.
        assert!(!token_fits_name(&name, &ch, "squatters-token"));
        // Names of other forms are the user's choice, whatever they hold.
        for other in [
            "declared-token",
            "shop-page-token",
            "shop-page-token-3F08AACE12",
            "shop-page-token-3f08aace1",
            "other-page-token-3f08aace12",
        ] {
            assert!(token_fits_name(other, &ch, "token-1"), "{other}");
        }
    }

    #[test]
    fn the_apis_credentials_carry_their_channel_and_no_block_on_its_deletion() {
        let mut ch = channel("u1");
        ch.metadata.generation = Some(3);
        let token = crate::secret::SecretString::new("token-1");
        let s = api_credentials_secret("ns", "shop-page-token-3f08aace12", &token, &ch);
        let meta = &s.metadata;
        assert!(usable_as_credentials(meta, &ch) && credentials_of(meta, &ch));
        assert_eq!(meta.labels.as_ref().unwrap()[CHANNEL_UID_LABEL], "u1");
        assert_eq!(
            meta.annotations.as_ref().unwrap()[WRITTEN_AT_GENERATION],
            "3"
        );
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.block_owner_deletion, None);
        assert_eq!(
            credentials_selector(&ch),
            "app.kubernetes.io/managed-by=channel-operator,airy.co/channel-uid=u1"
        );
    }
}
