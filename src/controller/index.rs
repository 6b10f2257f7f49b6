//! The controller's Channel store: the reflector's store and, beside it, the index of every
//! Channel in it, both written in the same step from the Channel watch's events.
//!
//! The index keeps per Channel what decides whether a watch event triggers a reconcile (the
//! resourceVersion and a digest of what a reconcile reacts to), and answers the lookups the
//! controller makes per reconcile or per Secret change — the Channels of a channel id, the
//! Channels naming a credentials Secret — without scanning the cache, so a burst of N Channels
//! costs O(N), not O(N²). It is a pure state machine ([`ChannelIndex::apply`]); what it returns
//! are the Channels to reconcile.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::ResourceExt;

use crate::crd::{Channel, Source};

/// A Channel's name and namespace, shared by the index's maps.
type Key = Arc<ObjectRef<Channel>>;

/// What the index keeps of one Channel: digests only (a collision costs at most an extra
/// look at the cache, whose objects decide).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Digests {
    /// The resourceVersion.
    version: u64,
    /// What a reconcile reacts to ([`trigger_digest`]).
    trigger: u64,
    /// The source and source channel id.
    id: u64,
    /// The credentials Secret named in the spec (namespace and name).
    secret: Option<u64>,
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

impl Digests {
    fn of(ch: &Channel) -> Digests {
        let ns = ch.namespace().unwrap_or_default();
        Digests {
            version: digest(&[ch.metadata.resource_version.as_deref().unwrap_or_default()]),
            trigger: trigger_digest(ch),
            id: id_digest(ch.spec.source, &ch.spec.source_channel_id),
            secret: ch
                .spec
                .credentials_secret_ref
                .as_ref()
                .map(|r| secret_digest(&ns, &r.name)),
        }
    }
}

fn object_ref(ch: &Channel) -> ObjectRef<Channel> {
    ObjectRef::new(&ch.name_any()).within(&ch.namespace().unwrap_or_default())
}

/// The index of the Channels in the cache.
#[derive(Default)]
pub(crate) struct ChannelIndex {
    entries: HashMap<Key, Digests>,
    by_id: HashMap<u64, Vec<Key>>,
    by_secret: HashMap<u64, Vec<Key>>,
    /// A list in progress: its entries, and the Channels it triggers once complete.
    listing: Option<(HashMap<Key, Digests>, Vec<Key>)>,
}

fn add(map: &mut HashMap<u64, Vec<Key>>, digest: u64, key: &Key) {
    map.entry(digest).or_default().push(key.clone());
}

fn remove(map: &mut HashMap<u64, Vec<Key>>, digest: u64, key: &ObjectRef<Channel>) {
    if let Some(keys) = map.get_mut(&digest) {
        keys.retain(|k| k.as_ref() != key);
        if keys.is_empty() {
            map.remove(&digest);
        }
    }
}

impl ChannelIndex {
    /// Applies one watch event (after the cache did); returns the Channels to reconcile:
    /// - a list, once complete: every Channel that changed since the last list or has no
    ///   status for its generation (`unreconciled`); none before it is complete;
    /// - a change: the Channel, when something a reconcile reacts to changed;
    /// - a Channel being deleted or gone: the others with its channel id (one may take over).
    pub(crate) fn apply(
        &mut self,
        event: &Event<Channel>,
        unreconciled: impl Fn(&Channel) -> bool,
    ) -> Vec<ObjectRef<Channel>> {
        match event {
            Event::Init => {
                self.listing = Some(Default::default());
                Vec::new()
            }
            Event::InitApply(ch) => {
                let (key, entry) = (Arc::new(object_ref(ch)), Digests::of(ch));
                let changed = self
                    .entries
                    .get(key.as_ref())
                    .is_none_or(|old| old.version != entry.version);
                let (entries, due) = self.listing.get_or_insert_with(Default::default);
                if changed || unreconciled(ch) {
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
                    self.link(key, entry);
                }
                self.entries = entries;
                due.iter().map(|k| k.as_ref().clone()).collect()
            }
            Event::Apply(ch) => {
                let entry = Digests::of(ch);
                let (key, old) = match self.entries.get_key_value(&object_ref(ch)) {
                    Some((k, old)) => (k.clone(), Some(*old)),
                    None => (Arc::new(object_ref(ch)), None),
                };
                // Relinked only when the id or the Secret changed: a list may be long.
                if old.map(|o| (o.id, o.secret)) != Some((entry.id, entry.secret)) {
                    if let Some(o) = &old {
                        self.unlink(&key, o);
                    }
                    self.link(&key, &entry);
                }
                self.entries.insert(key.clone(), entry);
                let mut out = self.others_of_released(ch, entry.id, &key);
                if old.is_none_or(|o| o.trigger != entry.trigger) {
                    out.push(key.as_ref().clone());
                }
                out
            }
            Event::Delete(ch) => {
                let key = object_ref(ch);
                if let Some(old) = self.entries.remove(&key) {
                    self.unlink(&key, &old);
                }
                self.others_of_released(ch, Digests::of(ch).id, &key)
            }
        }
    }

    /// Adds `key` to the lookups of its entry.
    fn link(&mut self, key: &Key, entry: &Digests) {
        add(&mut self.by_id, entry.id, key);
        if let Some(s) = entry.secret {
            add(&mut self.by_secret, s, key);
        }
    }

    /// Removes `key` from the lookups of its entry.
    fn unlink(&mut self, key: &ObjectRef<Channel>, entry: &Digests) {
        remove(&mut self.by_id, entry.id, key);
        if let Some(s) = entry.secret {
            remove(&mut self.by_secret, s, key);
        }
    }

    /// When `ch` is being deleted, the other Channels of its channel id.
    fn others_of_released(
        &self,
        ch: &Channel,
        id: u64,
        key: &ObjectRef<Channel>,
    ) -> Vec<ObjectRef<Channel>> {
        if ch.metadata.deletion_timestamp.is_none() {
            return Vec::new();
        }
        self.by_id
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|k| k.as_ref() != key)
            .map(|k| k.as_ref().clone())
            .collect()
    }

    fn lookup(map: &HashMap<u64, Vec<Key>>, digest: u64) -> Vec<ObjectRef<Channel>> {
        map.get(&digest)
            .into_iter()
            .flatten()
            .map(|k| k.as_ref().clone())
            .collect()
    }
}

/// The controller's Channel store: the reflector's store and the index, shared by the watch, the
/// reconciles and the Secret watch's mapper. (The HTTP API keeps its own cache of prepared
/// answers, `crate::api::cache::AnswerCache`.)
#[derive(Clone)]
pub(crate) struct ChannelStore {
    store: Store<Channel>,
    index: Arc<RwLock<ChannelIndex>>,
}

/// Writes the store and the index from the Channel watch's events.
pub(crate) struct StoreWriter {
    writer: Writer<Channel>,
    index: Arc<RwLock<ChannelIndex>>,
}

/// An empty store and its writer.
pub(crate) fn channel_store() -> (ChannelStore, StoreWriter) {
    let (store, writer) = reflector::store::<Channel>();
    let index = Arc::new(RwLock::new(ChannelIndex::default()));
    let channels = ChannelStore {
        store,
        index: index.clone(),
    };
    (channels, StoreWriter { writer, index })
}

impl StoreWriter {
    /// Applies a watch event to the reflector's store, then to the index; returns the Channels to reconcile
    /// (see [`ChannelIndex::apply`]).
    pub(crate) fn apply(&mut self, event: &Event<Channel>) -> Vec<ObjectRef<Channel>> {
        self.writer.apply_watcher_event(event);
        self.index
            .write()
            .expect("not poisoned")
            .apply(event, crate::channel_state::unreconciled)
    }
}

impl ChannelStore {
    /// The reflector's store (the Controller's reader).
    pub(crate) fn reader(&self) -> &Store<Channel> {
        &self.store
    }

    fn resolve(&self, refs: Vec<ObjectRef<Channel>>) -> Vec<Arc<Channel>> {
        refs.iter().filter_map(|r| self.store.get(r)).collect()
    }

    /// The cached Channels with the source and source channel id of `ch` (itself included).
    pub(crate) fn same_id(&self, ch: &Channel) -> Vec<Arc<Channel>> {
        let digest = id_digest(ch.spec.source, &ch.spec.source_channel_id);
        let refs = ChannelIndex::lookup(&self.index.read().expect("not poisoned").by_id, digest);
        let mut found = self.resolve(refs);
        found.retain(|c| {
            c.spec.source == ch.spec.source && c.spec.source_channel_id == ch.spec.source_channel_id
        });
        found
    }

    /// The cached Channels of `namespace` naming the Secret `name` in `credentialsSecretRef`.
    pub(crate) fn naming_secret(&self, namespace: &str, name: &str) -> Vec<ObjectRef<Channel>> {
        let digest = secret_digest(namespace, name);
        let refs =
            ChannelIndex::lookup(&self.index.read().expect("not poisoned").by_secret, digest);
        self.resolve(refs)
            .iter()
            .filter(|c| {
                c.namespace().as_deref() == Some(namespace)
                    && c.spec
                        .credentials_secret_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
            })
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect()
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

    fn names(v: &[ObjectRef<Channel>]) -> Vec<String> {
        v.iter().map(|r| r.name.clone()).collect()
    }

    fn apply(i: &mut ChannelIndex, e: Event<Channel>) -> Vec<String> {
        names(&i.apply(&e, crate::channel_state::unreconciled))
    }

    #[test]
    fn a_relist_triggers_what_changed_or_was_never_reconciled_once_complete() {
        let mut i = ChannelIndex::default();
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
    }

    #[test]
    fn status_only_updates_do_not_trigger_but_spec_changes_do() {
        let mut i = ChannelIndex::default();
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
        let mut i = ChannelIndex::default();
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
        // A Channel whose id changes leaves its old id's list.
        let mut b = with_id("b", "y", "moved");
        b.metadata.generation = Some(2);
        apply(&mut i, Event::Apply(b));
        assert!(!i.by_id.contains_key(&id_digest(Source::ChatPlugin, "page")));
    }

    #[test]
    fn the_cache_finds_channels_by_id_and_by_credentials_secret() {
        let (channels, mut writer) = channel_store();
        let mut a = with_id("a", "x", "page");
        a.spec.credentials_secret_ref = Some(SecretKeyRef {
            name: "tok".into(),
            key: "k".into(),
        });
        let b = with_id("b", "y", "page");
        for c in [a.clone(), b, with_id("c", "x", "else")] {
            writer.apply(&Event::Apply(c));
        }
        let mut same: Vec<String> = channels.same_id(&a).iter().map(|c| c.name_any()).collect();
        same.sort();
        assert_eq!(same, ["a", "b"]);
        assert_eq!(names(&channels.naming_secret("x", "tok")), ["a"]);
        assert!(
            channels.naming_secret("y", "tok").is_empty(),
            "another namespace"
        );
        // The reference removed: the Secret no longer concerns a.
        a.spec.credentials_secret_ref = None;
        a.metadata.generation = Some(2);
        writer.apply(&Event::Apply(a));
        assert!(channels.naming_secret("x", "tok").is_empty());
    }
}
