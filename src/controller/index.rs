//! The controller's index of the Channels: per Channel only what decides whether a watch event
//! triggers a reconcile and what the controller asks without reading the Channel (digests, the
//! source, a few flags), never the object. A reconcile reads the Channel from the API server
//! (`feed`); the index answers the lookups made per reconcile or per Secret change — the Channels
//! of a channel id, the Channels naming a credentials Secret — from sets, so a burst of N
//! Channels costs O(N), not O(N²), deletions included.
//!
//! It is a pure state machine over the Channel watch's events ([`ChannelIndex::apply`]); what it
//! returns are the Channels to reconcile, by [`Key`].

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kube::runtime::watcher::Event;
use kube::ResourceExt;

use crate::channel_state::{unreconciled, MetricState};
use crate::crd::{Channel, Source};
use crate::credentials_health::{Attention, Health};

/// A Channel's `namespace/name` (neither may contain a `/`), the one copy shared by the index's
/// maps and sets.
pub(crate) type Key = Arc<str>;

/// The key of the Channel `name` in `namespace`.
pub(crate) fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The key of `ch`.
pub(crate) fn key_of(ch: &Channel) -> String {
    key(&ch.namespace().unwrap_or_default(), &ch.name_any())
}

/// The namespace and name of a key.
pub(crate) fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// What the index keeps of one Channel. Digests decide triggering (a collision costs at most a
/// reconcile too many, or one lookup finding an extra Channel that the reconcile then reads).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    /// The resourceVersion.
    version: u64,
    /// What a reconcile reacts to ([`trigger_digest`]).
    trigger: u64,
    /// The source and source channel id.
    id: u64,
    /// The credentials Secret named in the spec (namespace and name).
    secret: Option<u64>,
    /// The source.
    pub(crate) source: Source,
    /// Being deleted.
    pub(crate) deleting: bool,
    /// Whether the controller has yet to act on its generation
    /// ([`crate::channel_state::unreconciled`]).
    pub(crate) unreconciled: bool,
    /// Its state for the `channel_operator_channels` metric.
    pub(crate) metric: Option<MetricState>,
    /// Its credentials' health and expiry, when they need attention (boxed: nearly every entry
    /// has none).
    pub(crate) credentials: Option<Box<(Health, Option<i64>)>>,
}

fn digest(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

fn id_digest(source: Source, source_channel_id: &str) -> u64 {
    digest(&[source.as_str(), source_channel_id])
}

fn secret_digest(namespace: &str, name: &str) -> u64 {
    digest(&[namespace, name])
}

/// What a reconcile reacts to: the spec (generation), deletion, finalizers and annotations
/// (`airy.co/paused`). Status-only updates (our own writes) do not trigger a reconcile.
fn trigger_digest(ch: &Channel) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ch.metadata.generation.hash(&mut h);
    ch.metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    ch.metadata.finalizers.hash(&mut h);
    ch.metadata.annotations.hash(&mut h);
    h.finish()
}

impl Entry {
    fn of(ch: &Channel) -> Entry {
        let ns = ch.namespace().unwrap_or_default();
        Entry {
            version: digest(&[ch.metadata.resource_version.as_deref().unwrap_or_default()]),
            trigger: trigger_digest(ch),
            id: id_digest(ch.spec.source, &ch.spec.source_channel_id),
            secret: ch
                .spec
                .credentials_secret_ref
                .as_ref()
                .map(|r| secret_digest(&ns, &r.name)),
            source: ch.spec.source,
            deleting: ch.metadata.deletion_timestamp.is_some(),
            unreconciled: unreconciled(ch),
            metric: MetricState::of(ch),
            credentials: Attention::of_channel(ch).map(|a| Box::new((a.health, a.expires_at))),
        }
    }
}

/// The Channels of one channel id or one Secret: nearly always one, so that one is kept without
/// a set.
#[derive(Debug)]
// Boxed: a set is 48 bytes, which every entry of the map would carry, most holding one key.
#[allow(clippy::box_collection)]
enum Keys {
    One(Key),
    Many(Box<HashSet<Key>>),
}

impl Keys {
    fn iter(&self) -> impl Iterator<Item = &Key> {
        let (one, many) = match self {
            Keys::One(k) => (Some(k), None),
            Keys::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

fn add(map: &mut HashMap<u64, Keys>, digest: u64, key: &Key) {
    match map.remove(&digest) {
        None => {
            map.insert(digest, Keys::One(key.clone()));
        }
        Some(Keys::One(k)) if k == *key => {
            map.insert(digest, Keys::One(k));
        }
        Some(Keys::One(k)) => {
            map.insert(digest, Keys::Many(Box::new([k, key.clone()].into())));
        }
        Some(Keys::Many(mut set)) => {
            set.insert(key.clone());
            map.insert(digest, Keys::Many(set));
        }
    }
}

fn remove(map: &mut HashMap<u64, Keys>, digest: u64, key: &str) {
    let Some(keys) = map.get_mut(&digest) else {
        return;
    };
    let empty = match keys {
        Keys::One(k) => &**k == key,
        Keys::Many(set) => {
            set.remove(key);
            set.is_empty()
        }
    };
    if empty {
        map.remove(&digest);
    }
}

/// The index of the Channels the watch has shown.
pub(crate) struct ChannelIndex {
    entries: HashMap<Key, Entry>,
    by_id: HashMap<u64, Keys>,
    by_secret: HashMap<u64, Keys>,
    /// A list in progress: its entries, and the Channels it triggers once complete.
    listing: Option<(HashMap<Key, Entry>, Vec<Key>)>,
}

impl ChannelIndex {
    /// An empty index.
    pub(crate) fn new() -> Self {
        ChannelIndex {
            entries: HashMap::new(),
            by_id: HashMap::new(),
            by_secret: HashMap::new(),
            listing: None,
        }
    }

    /// Applies one watch event; returns the Channels to reconcile:
    /// - a list, once complete: every Channel that changed since the last list or has no
    ///   status for its generation (`unreconciled`); none before it is complete;
    /// - a change: the Channel, when something a reconcile reacts to changed;
    /// - a Channel being deleted or gone: the others with its channel id (one may take over).
    pub(crate) fn apply(&mut self, event: &Event<Channel>) -> Vec<Key> {
        match event {
            Event::Init => {
                self.listing = Some(Default::default());
                Vec::new()
            }
            Event::InitApply(ch) => {
                let entry = Entry::of(ch);
                let name = key_of(ch);
                let (key, changed) = match self.entries.get_key_value(name.as_str()) {
                    Some((k, old)) => (k.clone(), old.version != entry.version),
                    None => (Key::from(name), true),
                };
                let (entries, due) = self.listing.get_or_insert_with(Default::default);
                if changed || entry.unreconciled {
                    due.push(key.clone());
                }
                entries.insert(key, entry);
                Vec::new()
            }
            Event::InitDone => {
                let (entries, due) = self.listing.take().unwrap_or_default();
                self.by_id.clear();
                self.by_secret.clear();
                for (key, entry) in &entries {
                    link(&mut self.by_id, &mut self.by_secret, key, entry);
                }
                self.entries = entries;
                due
            }
            Event::Apply(ch) => {
                let entry = Entry::of(ch);
                let name = key_of(ch);
                let (key, old) = match self.entries.get_key_value(name.as_str()) {
                    Some((k, old)) => (k.clone(), Some(old)),
                    None => (Key::from(name), None),
                };
                let triggers = old.is_none_or(|o| o.trigger != entry.trigger);
                // Relinked only when the id or the Secret changed: a list may be long.
                if old.map(|o| (o.id, o.secret)) != Some((entry.id, entry.secret)) {
                    if let Some(o) = old.cloned() {
                        unlink(&mut self.by_id, &mut self.by_secret, &key, &o);
                    }
                    link(&mut self.by_id, &mut self.by_secret, &key, &entry);
                }
                let mut out = if entry.deleting {
                    self.others_of(entry.id, &key)
                } else {
                    Vec::new()
                };
                self.entries.insert(key.clone(), entry);
                if triggers {
                    out.push(key);
                }
                out
            }
            Event::Delete(ch) => {
                let name = key_of(ch);
                if let Some((key, old)) = self.entries.remove_entry(name.as_str()) {
                    unlink(&mut self.by_id, &mut self.by_secret, &key, &old);
                }
                let id = id_digest(ch.spec.source, &ch.spec.source_channel_id);
                self.others_of(id, &name)
            }
        }
    }

    /// The Channels of channel id digest `id` but `key`.
    fn others_of(&self, id: u64, key: &str) -> Vec<Key> {
        self.by_id
            .get(&id)
            .into_iter()
            .flat_map(Keys::iter)
            .filter(|k| &***k != key)
            .cloned()
            .collect()
    }

    /// The entry of `key`, and the key as the index shares it.
    pub(crate) fn get(&self, key: &str) -> Option<(&Key, &Entry)> {
        self.entries.get_key_value(key)
    }

    /// Every Channel.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &Entry)> {
        self.entries.iter()
    }

    /// The other Channels with the source and source channel id of `ch`.
    pub(crate) fn same_id(&self, ch: &Channel) -> Vec<Key> {
        self.others_of(
            id_digest(ch.spec.source, &ch.spec.source_channel_id),
            &key_of(ch),
        )
    }

    /// The Channels of `namespace` naming the Secret `name` in `credentialsSecretRef`.
    pub(crate) fn naming_secret(&self, namespace: &str, name: &str) -> Vec<Key> {
        self.by_secret
            .get(&secret_digest(namespace, name))
            .into_iter()
            .flat_map(Keys::iter)
            .cloned()
            .collect()
    }
}

/// Adds `key` to the lookups of its entry.
fn link(
    by_id: &mut HashMap<u64, Keys>,
    by_secret: &mut HashMap<u64, Keys>,
    key: &Key,
    entry: &Entry,
) {
    add(by_id, entry.id, key);
    if let Some(s) = entry.secret {
        add(by_secret, s, key);
    }
}

/// Removes `key` from the lookups of its entry.
fn unlink(
    by_id: &mut HashMap<u64, Keys>,
    by_secret: &mut HashMap<u64, Keys>,
    key: &str,
    entry: &Entry,
) {
    remove(by_id, entry.id, key);
    if let Some(s) = entry.secret {
        remove(by_secret, s, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChannelSpec, ChannelStatus, SecretKeyRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn ch(name: &str, rv: &str, generation: i64, observed: Option<i64>) -> Channel {
        let mut c = Channel::new(name, ChannelSpec::new(Source::ChatPlugin, name));
        c.metadata.namespace = Some("default".into());
        c.metadata.resource_version = Some(rv.into());
        c.metadata.generation = Some(generation);
        c.metadata.finalizers = Some(vec![crate::crd::FINALIZER.into()]);
        c.status = observed.map(|g| ChannelStatus {
            observed_generation: Some(g),
            ..Default::default()
        });
        c
    }

    fn names(v: &[Key]) -> Vec<String> {
        v.iter().map(|k| split(k).1.to_owned()).collect()
    }

    fn apply(i: &mut ChannelIndex, e: Event<Channel>) -> Vec<String> {
        names(&i.apply(&e))
    }

    #[test]
    fn a_relist_triggers_what_changed_or_was_never_reconciled_once_complete() {
        let mut i = ChannelIndex::new();
        apply(&mut i, Event::Init);
        for c in [ch("a", "1", 1, Some(1)), ch("b", "2", 1, Some(1))] {
            assert!(apply(&mut i, Event::InitApply(c)).is_empty());
        }
        // The first list: every Channel (a controller start reconciles everything).
        assert_eq!(apply(&mut i, Event::InitDone), ["a", "b"]);
        // A re-list: a unchanged, b changed while the watch was down, c new without status.
        apply(&mut i, Event::Init);
        for c in [
            ch("a", "1", 1, Some(1)),
            ch("b", "5", 2, Some(1)),
            ch("c", "6", 1, None),
        ] {
            assert!(
                apply(&mut i, Event::InitApply(c)).is_empty(),
                "nothing is triggered before the list is complete"
            );
        }
        assert_eq!(apply(&mut i, Event::InitDone), ["b", "c"]);
        assert!(i.get("default/c").unwrap().1.unreconciled);
        assert!(!i.get("default/a").unwrap().1.unreconciled);
    }

    #[test]
    fn status_only_updates_do_not_trigger_but_spec_changes_do() {
        let mut i = ChannelIndex::new();
        apply(&mut i, Event::Init);
        apply(&mut i, Event::InitDone);
        assert_eq!(apply(&mut i, Event::Apply(ch("a", "1", 1, None))), ["a"]);
        assert!(apply(&mut i, Event::Apply(ch("a", "2", 1, Some(1)))).is_empty());
        assert_eq!(apply(&mut i, Event::Apply(ch("a", "3", 2, Some(1)))), ["a"]);
    }

    fn with_id(name: &str, ns: &str, scid: &str) -> Channel {
        let mut c = ch(name, "1", 1, Some(1));
        c.metadata.namespace = Some(ns.into());
        c.spec.source_channel_id = scid.into();
        c
    }

    #[test]
    fn a_channel_being_deleted_triggers_the_others_of_its_id_and_only_them() {
        let mut i = ChannelIndex::new();
        for c in [
            with_id("a", "x", "page"),
            with_id("b", "y", "page"),
            with_id("c", "y", "other"),
        ] {
            apply(&mut i, Event::Apply(c));
        }
        let mut gone = with_id("a", "x", "page");
        gone.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(9).unwrap()));
        assert_eq!(
            apply(&mut i, Event::Apply(gone.clone())),
            ["b", "a"],
            "b may take over; a reconciles its deletion"
        );
        assert_eq!(apply(&mut i, Event::Delete(gone.clone())), ["b"]);
        assert_eq!(
            apply(&mut i, Event::Delete(gone)),
            ["b"],
            "a deletion the index never saw applied still concerns the others"
        );
        assert!(apply(&mut i, Event::Delete(with_id("c", "y", "other"))).is_empty());
        // A Channel whose id changes leaves its old id's set.
        let mut b = with_id("b", "y", "moved");
        b.metadata.generation = Some(2);
        apply(&mut i, Event::Apply(b));
        assert!(!i.by_id.contains_key(&id_digest(Source::ChatPlugin, "page")));
        assert_eq!(i.iter().count(), 1);
    }

    #[test]
    fn the_index_finds_channels_by_id_and_by_credentials_secret() {
        let mut i = ChannelIndex::new();
        let mut a = with_id("a", "x", "page");
        a.spec.credentials_secret_ref = Some(SecretKeyRef {
            name: "tok".into(),
            key: "k".into(),
        });
        let b = with_id("b", "y", "page");
        for c in [a.clone(), b, with_id("c", "x", "else")] {
            i.apply(&Event::Apply(c));
        }
        assert_eq!(names(&i.same_id(&a)), ["b"]);
        assert_eq!(names(&i.naming_secret("x", "tok")), ["a"]);
        assert!(i.naming_secret("y", "tok").is_empty(), "another namespace");
        // The reference removed: the Secret no longer concerns a.
        a.spec.credentials_secret_ref = None;
        a.metadata.generation = Some(2);
        i.apply(&Event::Apply(a));
        assert!(i.naming_secret("x", "tok").is_empty());
    }

    #[test]
    fn deleting_forty_thousand_channels_naming_one_secret_is_linear() {
        const N: usize = 40_000;
        let mut i = ChannelIndex::new();
        let facebook = |n: usize| {
            let mut c = Channel::new(
                &format!("facebook-{n}"),
                ChannelSpec::new(Source::Facebook, (1_000_000 + n).to_string()),
            );
            c.metadata.namespace = Some("default".into());
            c.metadata.resource_version = Some(n.to_string());
            c.spec.credentials_secret_ref = Some(SecretKeyRef {
                name: "page-token".into(),
                key: "page_token".into(),
            });
            c
        };
        for n in 0..N {
            i.apply(&Event::Apply(facebook(n)));
        }
        assert_eq!(i.naming_secret("default", "page-token").len(), N);
        let started = std::time::Instant::now();
        for n in 0..N {
            i.apply(&Event::Delete(facebook(n)));
        }
        let took = started.elapsed();
        println!("deleting {N} Channels naming one Secret: {took:?}");
        assert_eq!(i.iter().count(), 0);
        assert!(i.by_secret.is_empty() && i.by_id.is_empty());
    }
}
