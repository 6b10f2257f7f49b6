//! The cache's index: every entry by key, and every channel id in order with the Channels
//! declaring it, the one the API answers with first.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::entry::CachedChannel;
use crate::channel_state::owner_first;

/// An entry in the set of entries by key.
#[derive(Debug)]
pub(super) struct ByKey(pub(super) Arc<CachedChannel>);

impl Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        &self.0.key
    }
}

impl Hash for ByKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state)
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ByKey {}

/// The Channels of one channel id, the one the API answers with first: nearly always one.
#[derive(Debug)]
pub(super) enum Declaring {
    One(Arc<CachedChannel>),
    Many(Vec<Arc<CachedChannel>>),
}

impl Declaring {
    pub(super) fn first(&self) -> &Arc<CachedChannel> {
        match self {
            Declaring::One(e) => e,
            Declaring::Many(v) => &v[0],
        }
    }

    fn add(self, entry: Arc<CachedChannel>) -> Declaring {
        let mut all = match self {
            Declaring::One(e) => vec![e],
            Declaring::Many(v) => v,
        };
        all.push(entry);
        // Several Channels may declare one channel: answer with its owner.
        all.sort_by(|a, b| order(a).cmp(&order(b)));
        Declaring::Many(all)
    }

    /// Removes the entry of `key`; `None` when none is left.
    fn remove(self, key: &str) -> Option<Declaring> {
        match self {
            Declaring::One(e) if &*e.key == key => None,
            one @ Declaring::One(_) => Some(one),
            Declaring::Many(mut v) => {
                v.retain(|e| &*e.key != key);
                match v.len() {
                    0 => None,
                    1 => v.pop().map(Declaring::One),
                    _ => Some(Declaring::Many(v)),
                }
            }
        }
    }
}

fn order(e: &CachedChannel) -> (bool, Option<Timestamp>, &str, &str) {
    let (namespace, name) = e.key();
    owner_first(e.duplicate, e.created, namespace, name)
}

#[derive(Default)]
pub(super) struct Index {
    /// Every entry, by `namespace/name`.
    pub(super) by_key: HashSet<ByKey>,
    /// Every channel id in order, with the Channels declaring it.
    pub(super) by_id: BTreeMap<u128, Declaring>,
}

impl Index {
    pub(super) fn remove_key(&mut self, key: &str) {
        let Some(ByKey(old)) = self.by_key.take(key) else {
            return;
        };
        if let Some(declaring) = self.by_id.remove(&old.id) {
            if let Some(rest) = declaring.remove(key) {
                self.by_id.insert(old.id, rest);
            }
        }
    }

    pub(super) fn insert(&mut self, entry: Arc<CachedChannel>) {
        self.by_key.insert(ByKey(entry.clone()));
        let declaring = match self.by_id.remove(&entry.id) {
            None => Declaring::One(entry.clone()),
            Some(d) => d.add(entry.clone()),
        };
        self.by_id.insert(entry.id, declaring);
    }
}
