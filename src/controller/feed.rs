//! What feeds the Controller: the index of the Channels ([`super::index`]), the queue of the
//! Channels due for a reconcile, and the store the Controller takes its objects from.
//!
//! kube's `Controller` reconciles the objects of a `Store`. Keeping every Channel there — whole,
//! or only its metadata (360 bytes of `ObjectMeta` each before any string) — was most of the
//! controller's memory. So the Controller reconciles [`ChannelRef`]s, kube's metadata-only form
//! of a Channel holding only its name and namespace, and its store holds one only from the moment
//! the Channel is handed to the Controller until its reconcile ends. The reconcile reads the
//! Channel from the API server (a consistent read: never older than a status this process wrote).
//!
//! The triggers (watch events, Secret changes, the sweep, provider configurations) mark Channels
//! due. At most `limit` Channels are handed to the Controller and not started yet, in the order
//! they became due: a burst waits here as keys, not as entries of the Controller's queue. A
//! Channel handed over and not started yet is not handed over again (its reconcile reads the
//! Channel as it is when it starts). A requeue (a retry, the periodic re-check) whose Channel is
//! no longer in the store comes back as `ObjectNotFound` and is marked due again
//! ([`ChannelStore::mark_due`]).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::Stream;
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::watcher::Event;
use tokio::sync::Notify;

use super::index::{self, ChannelIndex, Entry, Key};
use crate::crd::{Channel, Source};

/// What the Controller reconciles: a Channel's name and namespace, nothing else.
pub type ChannelRef = PartialObjectMeta<Channel>;

/// The `ChannelRef` of a key.
pub(crate) fn channel_ref(key: &str) -> ChannelRef {
    let (namespace, name) = index::split(key);
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        _phantom: Default::default(),
    }
}

/// The key of a `ChannelRef`.
pub(crate) fn key_of_ref(r: &ChannelRef) -> String {
    index::key(
        r.metadata.namespace.as_deref().unwrap_or_default(),
        r.metadata.name.as_deref().unwrap_or_default(),
    )
}

struct State {
    index: ChannelIndex,
    /// The Channels due, in the order they became due; each once (`queued`).
    due: VecDeque<Key>,
    queued: HashSet<Key>,
    /// Handed to the Controller, their reconcile not started yet.
    handed: HashSet<Key>,
    /// The Controller's store.
    writer: Writer<ChannelRef>,
    /// Whether the first list of the Channels is complete (nothing is handed over before).
    synced: bool,
}

impl State {
    fn queue(&mut self, keys: impl IntoIterator<Item = Key>) -> usize {
        let mut queued = 0;
        for key in keys {
            if !self.handed.contains(&key) && self.queued.insert(key.clone()) {
                self.due.push_back(key);
                queued += 1;
            }
        }
        queued
    }

    /// Puts `key` in the Controller's store and marks it handed over.
    fn hand(&mut self, key: Key) -> ChannelRef {
        let r = channel_ref(&key);
        self.writer.apply_watcher_event(&Event::Apply(r.clone()));
        self.handed.insert(key);
        r
    }
}

/// The index, the due Channels and the Controller's store, shared by the watches, the
/// Controller's trigger stream and the reconciles.
#[derive(Clone)]
pub(crate) struct ChannelStore {
    state: Arc<Mutex<State>>,
    reader: Store<ChannelRef>,
    wake: Arc<Notify>,
    limit: usize,
}

/// What [`ChannelStore::hand_now`] did.
pub(crate) enum HandNow {
    /// Handed over: this is the Controller's trigger.
    Handed(Box<ChannelRef>),
    /// Handed over already: its reconcile is about to start.
    Waiting,
    /// The index no longer holds it.
    Gone,
}

/// Applies the Channel watch's events to the index.
pub(crate) struct StoreWriter {
    store: ChannelStore,
}

/// An empty store handing at most `limit` Channels to the Controller before they start, and its
/// writer.
pub(crate) fn channel_store(limit: usize) -> (ChannelStore, StoreWriter) {
    let (reader, writer) = reflector::store::<ChannelRef>();
    let store = ChannelStore {
        state: Arc::new(Mutex::new(State {
            index: ChannelIndex::new(),
            due: VecDeque::new(),
            queued: HashSet::new(),
            handed: HashSet::new(),
            writer,
            synced: false,
        })),
        reader,
        wake: Arc::new(Notify::new()),
        limit: limit.max(1),
    };
    (store.clone(), StoreWriter { store })
}

impl StoreWriter {
    /// Applies a watch event to the index; returns the Channels it makes due (see
    /// [`ChannelIndex::apply`]). The first complete list lets the Controller start.
    pub(crate) fn apply(&mut self, event: &Event<Channel>) -> Vec<Key> {
        let mut state = self.store.lock();
        let due = state.index.apply(event);
        if matches!(event, Event::InitDone) && !state.synced {
            state.synced = true;
            // Empty until now: readies the Controller's store without replacing anything.
            state.writer.apply_watcher_event(&Event::InitDone);
        }
        due
    }
}

impl ChannelStore {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// The Controller's store: the Channels handed over or being reconciled.
    pub(crate) fn reader(&self) -> &Store<ChannelRef> {
        &self.reader
    }

    /// Marks the Channels of `keys` that the index holds due; returns how many were not due yet.
    pub(crate) fn mark_due<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> usize {
        let queued = {
            let mut state = self.lock();
            let known: Vec<Key> = keys
                .into_iter()
                .filter_map(|k| state.index.get(k).map(|(k, _)| k.clone()))
                .collect();
            state.queue(known)
        };
        if queued > 0 {
            self.wake.notify_one();
        }
        queued
    }

    /// Marks due every Channel whose entry passes `filter`; returns how many were not due yet.
    pub(crate) fn mark_due_where(&self, filter: impl Fn(&str, &Entry) -> bool) -> usize {
        let queued = {
            let mut state = self.lock();
            let keys: Vec<Key> = state
                .index
                .iter()
                .filter(|(k, e)| filter(k, e))
                .map(|(k, _)| k.clone())
                .collect();
            state.queue(keys)
        };
        if queued > 0 {
            self.wake.notify_one();
        }
        queued
    }

    /// The next Channel to hand to the Controller, if one is due and fewer than `limit` wait
    /// for their start.
    fn next(&self) -> Option<ChannelRef> {
        let mut state = self.lock();
        if !state.synced {
            return None;
        }
        while state.handed.len() < self.limit {
            let key = state.due.pop_front()?;
            state.queued.remove(&key);
            if state.index.get(&key).is_some() && !state.handed.contains(&key) {
                return Some(state.hand(key));
            }
        }
        None
    }

    /// The Channels handed to the Controller, as they become due and the Controller takes them.
    pub(crate) fn handed(&self) -> impl Stream<Item = ChannelRef> + Send + 'static {
        futures::stream::unfold(self.clone(), |store| async move {
            loop {
                if let Some(r) = store.next() {
                    return Some((r, store));
                }
                store.wake.notified().await;
            }
        })
    }

    /// Hands `key` to the Controller now, ahead of the Channels due.
    pub(crate) fn hand_now(&self, key: &str) -> HandNow {
        let mut state = self.lock();
        let Some((key, _)) = state.index.get(key) else {
            return HandNow::Gone;
        };
        let key = key.clone();
        if state.handed.contains(&key) {
            return HandNow::Waiting;
        }
        HandNow::Handed(Box::new(state.hand(key)))
    }

    /// A reconcile of `key` starts: it is no longer waiting. Returns the shared key and the
    /// source of the Channel, or `None` when the index no longer holds it (it is gone).
    pub(crate) fn start(&self, key: &str) -> Option<(Key, Source)> {
        let (found, freed) = {
            let mut state = self.lock();
            let freed = state.handed.remove(key);
            let found = state.index.get(key).map(|(k, e)| (k.clone(), e.source));
            (found, freed)
        };
        if freed {
            self.wake.notify_one();
        }
        found
    }

    /// A reconcile of `key` ended: the Controller's store lets the Channel go unless it was
    /// handed over again meanwhile.
    pub(crate) fn finish(&self, key: &str) {
        let mut state = self.lock();
        if !state.handed.contains(key) {
            state
                .writer
                .apply_watcher_event(&Event::Delete(channel_ref(key)));
        }
    }

    /// Calls `f` with every Channel of the index.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, &Entry)) {
        for (k, e) in self.lock().index.iter() {
            f(k, e)
        }
    }

    /// The keys of the other Channels with the source and source channel id of `ch`.
    pub(crate) fn same_id(&self, ch: &Channel) -> Vec<Key> {
        self.lock().index.same_id(ch)
    }

    /// The keys of the Channels of `namespace` naming the Secret `name` in
    /// `credentialsSecretRef`.
    pub(crate) fn naming_secret(&self, namespace: &str, name: &str) -> Vec<Key> {
        self.lock().index.naming_secret(namespace, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChannelSpec;
    use futures::StreamExt;
    use kube::runtime::reflector::ObjectRef;

    fn channel(name: &str) -> Channel {
        let mut c = Channel::new(name, ChannelSpec::new(Source::ChatPlugin, name));
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some("1".into());
        c
    }

    fn in_store(store: &ChannelStore, name: &str) -> bool {
        store
            .reader()
            .get(&ObjectRef::new(name).within("ns"))
            .is_some()
    }

    async fn next(handed: &mut (impl Stream<Item = ChannelRef> + Unpin)) -> Option<String> {
        tokio::time::timeout(std::time::Duration::from_millis(100), handed.next())
            .await
            .ok()
            .flatten()
            .map(|r| r.metadata.name.unwrap())
    }

    #[tokio::test]
    async fn channels_are_handed_over_in_order_at_most_limit_at_a_time_and_only_while_needed() {
        let (store, mut writer) = channel_store(2);
        let mut handed = Box::pin(store.handed());
        writer.apply(&Event::Init);
        for n in ["a", "b", "c"] {
            writer.apply(&Event::InitApply(channel(n)));
        }
        assert_eq!(
            next(&mut handed).await,
            None,
            "not before the list is complete"
        );
        let due = writer.apply(&Event::InitDone);
        assert_eq!(store.mark_due(due.iter().map(|k| &**k)), 3);
        assert_eq!(next(&mut handed).await.as_deref(), Some("a"));
        assert_eq!(next(&mut handed).await.as_deref(), Some("b"));
        assert_eq!(next(&mut handed).await, None, "two wait for their start");
        assert_eq!(store.mark_due(["ns/a"]), 0, "a is handed over already");
        assert!(in_store(&store, "a") && !in_store(&store, "c"));

        let (key, source) = store.start("ns/a").unwrap();
        assert_eq!((&*key, source), ("ns/a", Source::ChatPlugin));
        assert_eq!(next(&mut handed).await.as_deref(), Some("c"));
        // Due again while it runs: handed over again; its store entry stays at its end.
        assert_eq!(store.mark_due(["ns/a"]), 1);
        store.start("ns/b");
        assert_eq!(next(&mut handed).await.as_deref(), Some("a"));
        store.finish("ns/a");
        assert!(in_store(&store, "a"));
        store.start("ns/a");
        store.finish("ns/a");
        store.finish("ns/b");
        assert!(!in_store(&store, "a") && !in_store(&store, "b"));
        assert_eq!(store.mark_due(["ns/unknown"]), 0, "not in the index");
    }

    #[tokio::test]
    async fn a_channel_gone_before_its_turn_is_skipped() {
        let (store, mut writer) = channel_store(8);
        let mut handed = Box::pin(store.handed());
        writer.apply(&Event::Init);
        writer.apply(&Event::InitDone);
        for n in ["a", "b"] {
            let due = writer.apply(&Event::Apply(channel(n)));
            store.mark_due(due.iter().map(|k| &**k));
        }
        // Queued, then deleted.
        writer.apply(&Event::Delete(channel("a")));
        assert_eq!(next(&mut handed).await.as_deref(), Some("b"));
        assert_eq!(next(&mut handed).await, None);
        assert!(matches!(store.hand_now("ns/a"), HandNow::Gone));
        assert!(
            matches!(store.hand_now("ns/b"), HandNow::Waiting),
            "handed already"
        );
        assert!(store.start("ns/a").is_none());
    }
}
