//! The entries of shared provider effects: one coordination.k8s.io Lease per effect and account
//! in the state namespace, named [`EffectKey::entry_name`], listing the Channels that hold the
//! effect (any source, namespace or tenant) and, while an undo is under way, the Channel undoing
//! it. A Lease, not a ConfigMap: the controller already works with Leases (claims, leader
//! election), a Lease carries nothing but metadata, and its writes are guarded the same way.
//!
//! Every change is decided by the API server: the first holder creates the entry
//! (create-if-absent; a second create gets 409 AlreadyExists), every other change is a patch
//! carrying the resourceVersion read (`guarded`; 409 Conflict when someone was faster: read
//! again), and the entry is deleted with uid and resourceVersion preconditions. The first holder of an entry makes
//! the effect at the provider and marks it made (or found); the others hold it without a call. The
//! last holder to leave marks itself as undoing in the same write that leaves the list empty,
//! undoes the effect with what its record holds, then deletes the entry: exactly one undo, none
//! while another holder remains. A Channel that finds an undo under way waits, or takes the entry
//! over when the undoing Channel no longer exists.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::PostParams;
use kube::core::ObjectMeta;
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::crd::Channel;
use crate::effects::{ConfigRef, Effect, EffectKey, Origin};
use crate::ownership::managed_labels;

/// Annotation of an entry: the effect (kind, resource, account), as JSON.
pub const EFFECT: &str = "airy.co/effect";
/// Annotation of an entry: the Channels holding it, as JSON.
pub const HOLDERS: &str = "airy.co/holders";
/// Annotation of an entry: `Made`, `Found` or `Adopted`, once the first holder made, found or
/// adopted it.
pub const ORIGIN: &str = "airy.co/origin";
/// Annotation of an entry: the Channel undoing it, as JSON.
pub const UNDOING: &str = "airy.co/undoing";
/// Annotation of an entry: the configuration the first holder made it through, as JSON.
pub const CONFIG: &str = "airy.co/config";

/// How many times a change is tried again after a conflict before the reconcile looks later.
const ATTEMPTS: usize = 8;

/// A Channel, as an entry names it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChannelRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

impl ChannelRef {
    fn of(ch: &Channel) -> ChannelRef {
        ChannelRef {
            uid: ch.uid().unwrap_or_default(),
            namespace: ch.namespace().unwrap_or_default(),
            name: ch.name_any(),
        }
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What an entry says.
#[derive(Clone, Debug, Default, PartialEq)]
struct Entry {
    holders: Vec<ChannelRef>,
    origin: Option<Origin>,
    undoing: Option<ChannelRef>,
    config: Option<ConfigRef>,
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializes")
}

impl Entry {
    fn of(lease: &Lease) -> Entry {
        let a = lease.annotations();
        let read = |k: &str| a.get(k).map(String::as_str).unwrap_or_default();
        Entry {
            holders: serde_json::from_str(read(HOLDERS)).unwrap_or_default(),
            origin: serde_json::from_str(&format!("\"{}\"", read(ORIGIN))).ok(),
            undoing: serde_json::from_str(read(UNDOING)).ok(),
            config: serde_json::from_str(read(CONFIG)).ok(),
        }
    }

    /// The Lease of this entry for `key`.
    fn lease(&self, key: &EffectKey) -> Lease {
        let mut annotations = std::collections::BTreeMap::from([
            (EFFECT.to_owned(), json(key)),
            (HOLDERS.to_owned(), json(&self.holders)),
        ]);
        if let Some(o) = self.origin {
            annotations.insert(ORIGIN.into(), json(&o).trim_matches('"').to_owned());
        }
        if let Some(u) = &self.undoing {
            annotations.insert(UNDOING.into(), json(u));
        }
        if let Some(c) = &self.config {
            annotations.insert(CONFIG.into(), json(c));
        }
        let mut labels = managed_labels();
        labels.insert("airy.co/effect-kind".into(), key.kind.as_str().into());
        let metadata = ObjectMeta {
            name: Some(key.entry_name()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        };
        Lease {
            metadata,
            spec: Some(LeaseSpec {
                holder_identity: self.holders.first().map(ChannelRef::describe),
                ..Default::default()
            }),
        }
    }
}

/// What holding an effect means for the Channel now.
#[derive(Debug, PartialEq)]
pub enum Acquired {
    /// The Channel is the entry's first holder and the effect is not made yet: it makes it,
    /// then calls [`made`] (with the entry as written).
    Make(Box<Lease>),
    /// The Channel holds it, made or found.
    Held(Origin),
    /// Another Channel is undoing it, or is making it: look again shortly (why, in words).
    Wait(String),
}

/// What leaving an entry meant.
#[derive(Debug, PartialEq)]
pub enum Released {
    /// The Channel did not hold it (never acquired, or the entry was taken over): nothing to do.
    NotHeld,
    /// Others still hold it: nothing to undo.
    Kept,
    /// It was the last holder and is marked as undoing: undo it, then [`finish_undo`] (with the
    /// entry as read or written).
    Last(Box<Lease>),
}

/// The error of a change that met a conflict at every attempt (retried by the reconcile).
fn kept_changing() -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure("the effect entry kept changing", "Conflict").with_code(409),
    ))
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether the Channel `r` still exists (asked of the API server; where the controller may not
/// look, it is taken to exist).
async fn exists(client: &Client, r: &ChannelRef) -> Result<bool, kube::Error> {
    let api: Api<Channel> = Api::namespaced(client.clone(), &r.namespace);
    match api.get_metadata_opt(&r.name).await {
        Ok(Some(m)) => Ok(m.metadata.uid.as_deref() == Some(r.uid.as_str())),
        Ok(None) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(true),
        Err(e) => Err(e),
    }
}

/// Writes `entry` over `lease` (guarded by its resourceVersion read): the Lease as written,
/// `None` on a conflict.
async fn replace(
    api: &Api<Lease>,
    key: &EffectKey,
    lease: &Lease,
    entry: &Entry,
) -> Result<Option<Lease>, kube::Error> {
    let next = entry.lease(key);
    match super::guarded::write(api, &key.entry_name(), lease, &next).await {
        Ok(written) => Ok(Some(written)),
        Err(e) if conflict(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes `ch` a holder of `effect`. With `first` (`Found`: a connection an earlier version
/// made; `Adopted`: one Airy Core made, vouched for by migrate), an effect nobody made yet is
/// recorded so, without a provider call; without, its first holder makes it.
pub async fn acquire(
    api: &Api<Lease>,
    client: &Client,
    ch: &Channel,
    effect: &Effect,
    first: Option<Origin>,
) -> Result<Acquired, kube::Error> {
    let me = ChannelRef::of(ch);
    let key = &effect.key;
    let fresh = |origin| Entry {
        holders: vec![me.clone()],
        origin,
        undoing: None,
        config: Some(effect.config.clone()),
    };
    let first_origin = first;
    let first = |lease: Lease| match first_origin {
        Some(o) => Acquired::Held(o),
        None => Acquired::Make(Box::new(lease)),
    };
    for _ in 0..ATTEMPTS {
        let Some(lease) = api.get_opt(&key.entry_name()).await? else {
            match api
                .create(&PostParams::default(), &fresh(first_origin).lease(key))
                .await
            {
                Ok(created) => return Ok(first(created)),
                Err(kube::Error::Api(s)) if s.is_already_exists() => continue,
                Err(e) => return Err(e),
            }
        };
        let entry = Entry::of(&lease);
        if let Some(undoer) = &entry.undoing {
            if *undoer != me && exists(client, undoer).await? {
                return Ok(Acquired::Wait(format!(
                    "the Channel {} is undoing {} (it held it last); connecting once it is done",
                    undoer.describe(),
                    key.describe()
                )));
            }
            // Its own unfinished undo, or one whose Channel is gone: taken over; whether the
            // effect is there is not known, so it is made again.
            match replace(api, key, &lease, &fresh(first_origin)).await? {
                Some(written) => return Ok(first(written)),
                None => continue,
            }
        }
        let mut next = entry.clone();
        if !next.holders.contains(&me) {
            next.holders.push(me.clone());
        }
        if next.origin.is_none() && next.holders[0] != me {
            // The first holder makes it; unless it no longer exists.
            let maker = next.holders[0].clone();
            if exists(client, &maker).await? {
                if next != entry && replace(api, key, &lease, &next).await?.is_none() {
                    continue;
                }
                return Ok(Acquired::Wait(format!(
                    "the Channel {} is making {}",
                    maker.describe(),
                    key.describe()
                )));
            }
            // Gone without leaving (its record removed by hand): off the list, then look again.
            next.holders.retain(|h| *h != maker);
            replace(api, key, &lease, &next).await?;
            continue;
        }
        if next.origin.is_none() {
            next.origin = first_origin;
        }
        let written = if next == entry {
            lease
        } else {
            match replace(api, key, &lease, &next).await? {
                Some(written) => written,
                None => continue,
            }
        };
        return Ok(match next.origin {
            Some(origin) => Acquired::Held(origin),
            None => Acquired::Make(Box::new(written)),
        });
    }
    Ok(Acquired::Wait(format!(
        "{} is being changed by other Channels",
        key.describe()
    )))
}

/// How `ch` holds `key` as its entry says now (read only): the origin, when it is a holder and
/// the effect was made, found or adopted; `None` otherwise.
pub async fn held(
    api: &Api<Lease>,
    ch: &Channel,
    key: &EffectKey,
) -> Result<Option<Origin>, kube::Error> {
    let Some(lease) = api.get_opt(&key.entry_name()).await? else {
        return Ok(None);
    };
    let entry = Entry::of(&lease);
    let holds = entry.holders.contains(&ChannelRef::of(ch)) && entry.undoing.is_none();
    Ok(entry.origin.filter(|_| holds))
}

/// The entry as `given` (taken, for the first attempt), else as read now (`None`: gone).
async fn given_or_read(
    api: &Api<Lease>,
    key: &EffectKey,
    given: &mut Option<Lease>,
) -> Result<Option<Lease>, kube::Error> {
    match given.take() {
        Some(l) => Ok(Some(l)),
        None => api.get_opt(&key.entry_name()).await,
    }
}

/// Records that the first holder `ch` made (or found) the effect; `lease` is the entry as
/// `acquire` left it.
pub async fn made(
    api: &Api<Lease>,
    ch: &Channel,
    key: &EffectKey,
    origin: Origin,
    lease: Lease,
) -> Result<(), kube::Error> {
    let me = ChannelRef::of(ch);
    let mut lease = Some(lease);
    for _ in 0..ATTEMPTS {
        let Some(current) = given_or_read(api, key, &mut lease).await? else {
            return Ok(());
        };
        let mut entry = Entry::of(&current);
        if entry.origin.is_some() || !entry.holders.contains(&me) {
            return Ok(());
        }
        entry.origin = Some(origin);
        if replace(api, key, &current, &entry).await?.is_some() {
            return Ok(());
        }
    }
    Err(kept_changing())
}

/// Takes `ch` off the holders of `key`; the last one is marked as undoing in the same write.
pub async fn release(
    api: &Api<Lease>,
    ch: &Channel,
    key: &EffectKey,
) -> Result<Released, kube::Error> {
    let me = ChannelRef::of(ch);
    for _ in 0..ATTEMPTS {
        let Some(lease) = api.get_opt(&key.entry_name()).await? else {
            return Ok(Released::NotHeld);
        };
        let mut entry = Entry::of(&lease);
        if entry.undoing.as_ref() == Some(&me) {
            return Ok(Released::Last(Box::new(lease)));
        }
        if !entry.holders.contains(&me) {
            return Ok(Released::NotHeld);
        }
        entry.holders.retain(|h| *h != me);
        let last = entry.holders.is_empty();
        if last {
            entry.undoing = Some(me.clone());
        }
        match replace(api, key, &lease, &entry).await? {
            Some(written) if last => return Ok(Released::Last(Box::new(written))),
            Some(_) => return Ok(Released::Kept),
            None => {}
        }
    }
    Err(kept_changing())
}

/// Deletes the entry `ch` undid (guarded by its uid and resourceVersion), unless it was taken
/// over meanwhile; `lease` is the entry as `release` left it.
pub async fn finish_undo(
    api: &Api<Lease>,
    ch: &Channel,
    key: &EffectKey,
    lease: Lease,
) -> Result<(), kube::Error> {
    let me = ChannelRef::of(ch);
    let mut lease = Some(lease);
    for _ in 0..ATTEMPTS {
        let Some(current) = given_or_read(api, key, &mut lease).await? else {
            return Ok(());
        };
        if Entry::of(&current).undoing.as_ref() != Some(&me) {
            return Ok(());
        }
        let (uid, version) = (current.metadata.uid, current.metadata.resource_version);
        match super::guarded::delete(api, &key.entry_name(), uid, version).await {
            Ok(()) => return Ok(()),
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::EffectKind;

    #[test]
    fn an_entry_reads_back_as_written() {
        let key = EffectKey::new(EffectKind::PageSubscription, "1001", "app-a");
        let a = ChannelRef {
            uid: "u-a".into(),
            namespace: "team-a".into(),
            name: "fb".into(),
        };
        let entry = Entry {
            holders: vec![a.clone()],
            origin: Some(Origin::Found),
            undoing: Some(a),
            config: Some(ConfigRef::flags()),
        };
        let lease = entry.lease(&key);
        assert_eq!(lease.metadata.name, Some(key.entry_name()));
        assert_eq!(lease.annotations()[ORIGIN], "Found");
        assert_eq!(
            lease.spec.as_ref().unwrap().holder_identity.as_deref(),
            Some("team-a/fb")
        );
        assert_eq!(Entry::of(&lease), entry);
        assert_eq!(Entry::of(&Lease::default()), Entry::default());
    }
}
