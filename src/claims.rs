//! One owner per channel, decided by the Kubernetes API server: a Channel owns its (source,
//! source channel id) once it has created the claim for it — a coordination.k8s.io Lease in the
//! operator's state namespace (`--state-namespace`) named by the channel id. Creation is atomic
//! (a second create of that name is refused with AlreadyExists), so whoever creates it first owns
//! the channel; no clock and no creation timestamp takes part. A Channel whose source has
//! something to prove creates it only once its credentials worked at the provider (the
//! controller's `Claim` step). The claim records its owner's namespace, name and uid; it is
//! deleted (guarded by its uid and resourceVersion) when its owner is deleted, after the owner
//! undid what it did at the provider, and a claim whose owner no longer exists is taken over the
//! same way: a guarded delete, then a create.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use kube::{Api, ResourceExt};

use crate::crd::Channel;

/// Annotation of a claim: the owner's `namespace/name`.
pub const OWNER: &str = "airy.co/owner";
/// Annotation of a claim: the owner's uid.
pub const OWNER_UID: &str = "airy.co/owner-uid";
/// Annotation of a claim: `source/sourceChannelId`, for people reading it.
pub const CHANNEL: &str = "airy.co/channel";

/// The claim's name for a Channel: `claim-<channel uuid>`, the uuid of
/// [`crate::pinned_id::claim_id`] (a chat plugin's pinned id, else the deterministic id of the
/// source and source channel id, independent of the chat plugin's naming).
pub fn name(ch: &Channel) -> String {
    format!("claim-{}", crate::pinned_id::claim_id(&ch.spec))
}

/// Who a claim names as its owner.
#[derive(Clone, Debug, PartialEq)]
pub struct Holder {
    /// The owner's namespace.
    pub namespace: String,
    /// The owner's name.
    pub name: String,
    /// The owner's uid.
    pub uid: String,
    /// The claim's uid and resourceVersion: the preconditions of its deletion.
    pub claim_uid: String,
    /// See `claim_uid`.
    pub claim_version: String,
}

impl Holder {
    /// The owner a claim records; `None` for an object that is not a claim of this operator.
    pub fn of(lease: &Lease) -> Option<Holder> {
        let a = lease.metadata.annotations.as_ref()?;
        let (namespace, name) = a.get(OWNER)?.split_once('/')?;
        Some(Holder {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: a.get(OWNER_UID).cloned().unwrap_or_default(),
            claim_uid: lease.uid().unwrap_or_default(),
            claim_version: lease.resource_version().unwrap_or_default(),
        })
    }

    /// Whether `ch` is the owner.
    pub fn is(&self, ch: &Channel) -> bool {
        ch.uid().is_some_and(|uid| uid == self.uid)
    }
}

/// The claim of `ch`, naming it as the owner.
pub fn claim_for(ch: &Channel) -> Lease {
    let owner = format!("{}/{}", ch.namespace().unwrap_or_default(), ch.name_any());
    Lease {
        metadata: ObjectMeta {
            name: Some(name(ch)),
            labels: Some(crate::ownership::managed_labels()),
            annotations: Some(
                [
                    (OWNER.to_owned(), owner.clone()),
                    (OWNER_UID.to_owned(), ch.uid().unwrap_or_default()),
                    (
                        CHANNEL.to_owned(),
                        format!("{}/{}", ch.spec.source, ch.spec.source_channel_id),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(owner),
            ..Default::default()
        }),
    }
}

/// Creates the claim of `ch`: its holder when `ch` owns the channel now, `None` when a claim of
/// that name exists (someone else was first).
pub async fn create(api: &Api<Lease>, ch: &Channel) -> Result<Option<Holder>, kube::Error> {
    match api.create(&PostParams::default(), &claim_for(ch)).await {
        Ok(lease) => Ok(Holder::of(&lease)),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes the claim `holder` was read from, unless it changed since (uid and resourceVersion
/// preconditions): `Ok(true)` when deleted or already gone, `Ok(false)` when it changed.
pub async fn delete(api: &Api<Lease>, ch: &Channel, holder: &Holder) -> Result<bool, kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(holder.claim_uid.clone()),
            resource_version: Some(holder.claim_version.clone()),
        }),
        ..Default::default()
    };
    match api.delete(&name(ch), &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
        Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The claim of `ch`'s channel id, if there is one.
pub async fn read(api: &Api<Lease>, ch: &Channel) -> Result<Option<Lease>, kube::Error> {
    api.get_opt(&name(ch)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChannelSpec, Source};

    #[test]
    fn a_claim_is_named_by_the_channel_id_and_records_its_owner() {
        let mut ch = Channel::new("shop", ChannelSpec::new(Source::Facebook, "fb-page-id-1"));
        ch.metadata.namespace = Some("team-a".into());
        ch.metadata.uid = Some("uid-1".into());
        let mut lease = claim_for(&ch);
        // docs/channel-ids.md's vector for facebook/fb-page-id-1.
        assert_eq!(
            lease.metadata.name.as_deref(),
            Some(format!("claim-{}", ch.channel_id(Default::default())).as_str())
        );
        lease.metadata.uid = Some("claim-uid".into());
        lease.metadata.resource_version = Some("7".into());
        let h = Holder::of(&lease).unwrap();
        assert_eq!((h.namespace.as_str(), h.name.as_str()), ("team-a", "shop"));
        assert!(h.is(&ch));
        assert_eq!(
            (h.claim_uid.as_str(), h.claim_version.as_str()),
            ("claim-uid", "7")
        );
        ch.metadata.uid = Some("uid-2".into());
        assert!(!h.is(&ch), "same name, another object");
    }
}
