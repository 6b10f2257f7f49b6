//! The read side: Channels of the API's namespaces (one watch per namespace), each kept once,
//! with its response JSON computed when the object changes, so that `channels.info` is a map
//! lookup and `channels.list` writes bytes prepared in advance.
//!
//! The watches are tracked like the controller's (`crate::runtime::tracked_watch`): a short retry
//! backoff (100 ms doubling to 4 s), errors and re-lists logged and counted. The cache knows how long each watch
//! has been failing: it is *current* while every watch is established, and *ready* once every
//! namespace has listed and no watch has been failing for the stale limit (then the API answers
//! 503 rather than from a cache that old).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kube::runtime::watcher::Event;
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use super::metrics::Metrics;
use super::model::channel_response;
use crate::channel_state::owner_first;
use crate::crd::{Channel, ChannelSpec, Source};
use crate::naming::ChatPluginNaming;
use crate::runtime::tracked_watch::tracked_watch;
use crate::runtime::WatchHealth;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// One cached channel: its prepared answer and, of the resource, only what the API reads: the
/// identity, the spec, and of the status the observed generation and the Ready condition.
#[derive(Debug)]
pub struct CachedChannel {
    /// The deterministic channel id (from the spec, so present before the controller ran).
    pub id: String,
    /// The channel's source.
    pub source: Source,
    /// Whether it counts as connected (listed, answered by info).
    pub connected: bool,
    /// The API's Channel object (docs/api.md), serialized.
    pub json: Bytes,
    /// Namespace and name of the resource.
    pub namespace: String,
    /// Name of the resource.
    pub name: String,
    /// The spec.
    pub spec: ChannelSpec,
    uid: Option<String>,
    generation: Option<i64>,
    created: Option<Time>,
    deleted: Option<Time>,
    /// The status's observed generation.
    observed_generation: Option<i64>,
    /// The Ready condition.
    ready: Option<Condition>,
}

impl CachedChannel {
    fn new(mut channel: Channel, naming: ChatPluginNaming) -> CachedChannel {
        channel.strip_for_cache();
        let (id, json) = answer(&channel, naming);
        let (namespace, name) = namespaced_name(&channel);
        CachedChannel {
            id,
            source: channel.spec.source,
            connected: channel.is_connected(),
            spec: channel.spec.clone(),
            json,
            namespace,
            name,
            uid: channel.metadata.uid.take(),
            generation: channel.metadata.generation,
            created: channel.metadata.creation_timestamp.take(),
            deleted: channel.metadata.deletion_timestamp.take(),
            observed_generation: channel.status.as_ref().and_then(|s| s.observed_generation),
            ready: channel.ready_condition().cloned(),
        }
    }

    /// Namespace and name of the resource.
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    /// The resource as far as the entry knows it: identity, generation, deletion and spec (no
    /// status, labels or annotations).
    pub fn channel(&self) -> Channel {
        let mut ch = Channel::new(&self.name, self.spec.clone());
        ch.metadata.namespace = Some(self.namespace.clone());
        ch.metadata.uid = self.uid.clone();
        ch.metadata.generation = self.generation;
        ch.metadata.creation_timestamp = self.created.clone();
        ch.metadata.deletion_timestamp = self.deleted.clone();
        ch
    }

    /// The controller's verdict on `generation` or a later one (see [`Channel::verdict_at`]).
    pub fn verdict_at(&self, generation: i64) -> Option<&Condition> {
        crate::channel_state::verdict_at(self.observed_generation, self.ready.as_ref(), generation)
    }

    /// Whether the controller reports the channel Ready at `generation` or later.
    pub fn ready_at(&self, generation: i64) -> bool {
        self.verdict_at(generation)
            .is_some_and(|c| c.status == "True")
    }
}

/// The channel id and the API's answer for `ch` (docs/api.md), serialized.
pub(super) fn answer(ch: &Channel, naming: ChatPluginNaming) -> (String, Bytes) {
    let response = channel_response(ch, naming);
    let json = serde_json::to_vec(&response).expect("a Channel response serializes");
    (response.id, Bytes::from(json))
}

fn namespaced_name(ch: &Channel) -> (String, String) {
    (ch.namespace().unwrap_or_default(), ch.name_any())
}

#[derive(Default)]
struct Index {
    /// namespace/name → entry.
    by_key: HashMap<(String, String), Arc<CachedChannel>>,
    /// channel id → every Channel with that id, the one the API answers with first.
    by_id: HashMap<String, Vec<Arc<CachedChannel>>>,
    /// The answering entry of every connected channel, ordered by id.
    connected: BTreeMap<String, Arc<CachedChannel>>,
}

impl Index {
    fn remove_key(&mut self, key: &(String, String)) -> Option<String> {
        let id = self.by_key.remove(key)?.id.clone();
        if let Some(list) = self.by_id.get_mut(&id) {
            list.retain(|e| &e.key() != key);
            if list.is_empty() {
                self.by_id.remove(&id);
            }
        }
        Some(id)
    }

    fn insert(&mut self, entry: Arc<CachedChannel>) {
        self.by_key.insert(entry.key(), entry.clone());
        let list = self.by_id.entry(entry.id.clone()).or_default();
        list.push(entry);
        // Several Channels may declare one channel: answer with its owner.
        list.sort_by_key(|e| {
            owner_first(e.ready.as_ref(), e.created.as_ref(), &e.namespace, &e.name)
        });
    }

    fn refresh_connected(&mut self, id: &str) {
        match self.by_id.get(id).and_then(|l| l.first()) {
            Some(e) if e.connected => {
                self.connected.insert(id.to_owned(), e.clone());
            }
            _ => {
                self.connected.remove(id);
            }
        }
    }
}

/// The namespace [`AnswerCache::apply`] passes on: its events are those of a watch over every
/// namespace at once.
const ALL: &str = "";

struct Inner {
    index: RwLock<Index>,
    /// List bodies by source filter (None = all), built on first use after a change.
    lists: RwLock<HashMap<Option<Source>, Bytes>>,
    /// Entries of a (re-)list in progress, by watched namespace, until its InitDone (entries,
    /// not objects: a re-list holds the smaller form next to the cache).
    listing: Mutex<HashMap<String, Vec<Arc<CachedChannel>>>>,
    /// The watched namespaces that have listed once; the cache is ready when all have.
    synced: Mutex<HashSet<String>>,
    /// How many namespaces are watched.
    watches: usize,
    naming: ChatPluginNaming,
    ready: AtomicBool,
    version: watch::Sender<u64>,
    /// Since when the watch of each failing namespace has been failing (absent: established).
    failing: Mutex<HashMap<String, Instant>>,
    /// How long a watch may fail before the cache is no longer ready.
    stale_limit: Duration,
}

/// The API's cache of the Channels it serves and their prepared answers, cheap to clone. (The
/// controller keeps its own store, `controller::index::ChannelStore`.)
#[derive(Clone)]
pub struct AnswerCache {
    inner: Arc<Inner>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self::new()
    }
}

impl AnswerCache {
    /// An empty cache filled by hand ([`AnswerCache::apply`]), ready after its first `InitDone`.
    pub fn new() -> Self {
        Self::named(ChatPluginNaming::default())
    }

    /// [`AnswerCache::new`] answering with chat plugin channels named by `naming`.
    pub fn named(naming: ChatPluginNaming) -> Self {
        Self::with_watches(1, naming, Duration::MAX)
    }

    /// An empty cache of `namespaces` watched namespaces, ready once each has listed.
    /// answering with chat plugin channels named by `naming`, no longer ready once a watch has
    /// been failing for `stale_limit`.
    fn with_watches(watches: usize, naming: ChatPluginNaming, stale_limit: Duration) -> Self {
        AnswerCache {
            inner: Arc::new(Inner {
                index: RwLock::new(Index::default()),
                lists: RwLock::new(HashMap::new()),
                listing: Mutex::new(HashMap::new()),
                synced: Mutex::new(HashSet::new()),
                watches,
                naming,
                ready: AtomicBool::new(false),
                version: watch::channel(0).0,
                failing: Mutex::new(HashMap::new()),
                stale_limit,
            }),
        }
    }

    /// An empty cache for [`AnswerCache::run`] over these namespaces, answering with chat
    /// plugin channels named by `naming`, no longer ready once a watch has been failing for
    /// `stale_limit`.
    pub fn for_namespaces(
        namespaces: &[String],
        naming: ChatPluginNaming,
        stale_limit: Duration,
    ) -> Self {
        Self::with_watches(namespaces.len(), naming, stale_limit)
    }

    /// The chat plugin naming of the ids and answers.
    pub fn naming(&self) -> ChatPluginNaming {
        self.inner.naming
    }

    /// Marks the watch of `namespace` failing (an error, or a re-list under way).
    pub fn watch_failed(&self, namespace: &str) {
        self.inner
            .failing
            .lock()
            .expect("failing lock")
            .entry(namespace.to_owned())
            .or_insert_with(Instant::now);
        self.inner.version.send_modify(|v| *v += 1);
    }

    /// Marks the watch of `namespace` established.
    pub fn watch_ok(&self, namespace: &str) {
        let was_failing = self
            .inner
            .failing
            .lock()
            .expect("failing lock")
            .remove(namespace)
            .is_some();
        if was_failing {
            self.inner.version.send_modify(|v| *v += 1);
        }
    }

    /// How long the longest-failing watch has been failing (zero while every watch is
    /// established): how far behind the cluster the cache may be.
    pub fn stale_for(&self) -> Duration {
        self.inner
            .failing
            .lock()
            .expect("failing lock")
            .values()
            .map(|since| since.elapsed())
            .max()
            .unwrap_or_default()
    }

    /// Whether every watch is established: the cache follows the cluster now.
    pub fn is_current(&self) -> bool {
        self.inner.failing.lock().expect("failing lock").is_empty()
    }

    /// Applies one watcher event of a watch over every namespace (tests, benchmarks).
    pub fn apply(&self, event: &Event<Channel>) {
        self.apply_in(ALL, event.clone());
    }

    /// Applies one event of the watch of `namespace` ([`ALL`]: of every namespace).
    fn apply_in(&self, namespace: &str, event: Event<Channel>) {
        // The index changes and the cached list bodies are dropped under one index write lock:
        // list_body builds and stores a body under the index read lock, so a body built from the
        // old index can never be stored after the drop.
        match event {
            Event::Apply(ch) => {
                let entry = Arc::new(CachedChannel::new(ch, self.inner.naming));
                let mut idx = self.inner.index.write().expect("index lock");
                let old = idx.remove_key(&entry.key());
                let id = entry.id.clone();
                idx.insert(entry);
                if let Some(old) = old.filter(|o| o != &id) {
                    idx.refresh_connected(&old);
                }
                idx.refresh_connected(&id);
                self.drop_list_bodies();
            }
            Event::Delete(ch) => {
                let mut idx = self.inner.index.write().expect("index lock");
                if let Some(id) = idx.remove_key(&namespaced_name(&ch)) {
                    idx.refresh_connected(&id);
                }
                self.drop_list_bodies();
            }
            Event::Init => {
                let mut listing = self.inner.listing.lock().expect("listing lock");
                listing.insert(namespace.to_owned(), Vec::new());
                return;
            }
            Event::InitApply(ch) => {
                let entry = Arc::new(CachedChannel::new(ch, self.inner.naming));
                let mut listing = self.inner.listing.lock().expect("listing lock");
                listing.entry(namespace.to_owned()).or_default().push(entry);
                return;
            }
            Event::InitDone => {
                let listed = self
                    .inner
                    .listing
                    .lock()
                    .expect("listing lock")
                    .remove(namespace)
                    .unwrap_or_default();
                self.replace_listed(namespace, listed);
                let mut synced = self.inner.synced.lock().expect("synced lock");
                synced.insert(namespace.to_owned());
                if synced.len() >= self.inner.watches {
                    self.inner.ready.store(true, Ordering::Release);
                }
            }
        }
        self.inner.version.send_modify(|v| *v += 1);
    }

    /// Replaces every entry of `namespace` ([`ALL`]: every entry) by `listed`.
    fn replace_listed(&self, namespace: &str, listed: Vec<Arc<CachedChannel>>) {
        let mut idx = self.inner.index.write().expect("index lock");
        let stale: Vec<(String, String)> = idx
            .by_key
            .keys()
            .filter(|(ns, _)| namespace == ALL || ns == namespace)
            .cloned()
            .collect();
        let mut touched = HashSet::new();
        for key in stale {
            touched.extend(idx.remove_key(&key));
        }
        for entry in listed {
            let key = entry.key();
            touched.extend(idx.remove_key(&key));
            touched.insert(entry.id.clone());
            idx.insert(entry);
        }
        for id in touched {
            idx.refresh_connected(&id);
        }
        self.drop_list_bodies();
    }

    /// Forgets the cached list bodies; called with the index write lock held.
    fn drop_list_bodies(&self) {
        self.inner.lists.write().expect("lists lock").clear();
    }

    /// Whether every watched namespace has been listed and no watch has been failing for the
    /// stale limit.
    pub fn is_ready(&self) -> bool {
        self.not_ready_because().is_none()
    }

    /// Why the cache is not ready (None: it is).
    pub fn not_ready_because(&self) -> Option<&'static str> {
        if !self.inner.ready.load(Ordering::Acquire) {
            Some("the channel cache has not synced with the cluster yet")
        } else if self.stale_for() >= self.inner.stale_limit {
            Some("the channel cache has not followed the cluster for longer than --cache-stale-seconds (the Kubernetes API is unreachable)")
        } else {
            None
        }
    }

    /// Number of Channels cached.
    pub fn len(&self) -> usize {
        self.inner.index.read().expect("index lock").by_key.len()
    }

    /// Whether the cache holds no Channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answering entry for a channel id (connected or not).
    pub fn get(&self, id: &str) -> Option<Arc<CachedChannel>> {
        self.inner
            .index
            .read()
            .expect("index lock")
            .by_id
            .get(id)
            .and_then(|l| l.first().cloned())
    }

    /// The entry of one resource by namespace and name.
    pub fn get_by_key(&self, namespace: &str, name: &str) -> Option<Arc<CachedChannel>> {
        let idx = self.inner.index.read().expect("index lock");
        idx.by_key
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
    /// Whether the channel with this id is connected.
    pub fn is_connected(&self, id: &str) -> bool {
        self.inner
            .index
            .read()
            .expect("index lock")
            .connected
            .contains_key(id)
    }

    /// The `channels.list` response body: `{"data":[...]}` of connected channels, ordered by id.
    pub fn list_body(&self, source: Option<Source>) -> Bytes {
        if let Some(b) = self.inner.lists.read().expect("lists lock").get(&source) {
            return b.clone();
        }
        // Built and stored under the index read lock: see `apply`.
        let idx = self.inner.index.read().expect("index lock");
        let entries = idx
            .connected
            .values()
            .filter(|e| source.is_none_or(|s| e.source == s));
        let mut buf = Vec::with_capacity(16 + idx.connected.len() * 256);
        buf.extend_from_slice(b"{\"data\":[");
        for (i, e) in entries.enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(&e.json);
        }
        buf.extend_from_slice(b"]}");
        let body = Bytes::from(buf);
        self.inner
            .lists
            .write()
            .expect("lists lock")
            .insert(source, body.clone());
        body
    }

    /// Waits until `check` returns `Some` on the cache or `timeout` passes (then `None`).
    /// `check` runs now and after every change.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&AnswerCache) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.inner.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(v) = check(self) {
                return Some(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    /// Keeps the cache in sync with the Channels of `namespaces` (one watch each, tracked like
    /// the controller's: backoff, logs, `metrics`) until the future is dropped.
    pub async fn run(self, client: kube::Client, namespaces: Vec<String>, metrics: Metrics) {
        let watches = namespaces.into_iter().map(|ns| {
            let api: Api<Channel> = Api::namespaced(client.clone(), &ns);
            let health = NamespaceWatch {
                namespace: ns.clone(),
                cache: self.clone(),
                metrics: metrics.clone(),
            };
            tracked_watch(api, "channels", health)
                .map(move |event| (ns.clone(), event))
                .boxed()
        });
        let mut events = futures::stream::select_all(watches);
        while let Some((ns, event)) = events.next().await {
            self.apply_in(&ns, event);
        }
    }
}

/// The health of one namespace's watch, reported to the cache and the API's metrics.
struct NamespaceWatch {
    namespace: String,
    cache: AnswerCache,
    metrics: Metrics,
}

impl WatchHealth for NamespaceWatch {
    fn watch_failed(&self, _resource: &str) {
        self.cache.watch_failed(&self.namespace);
        self.metrics.watch_failed(&self.namespace);
    }

    fn watch_ok(&self, _resource: &str) {
        self.cache.watch_ok(&self.namespace);
        self.metrics.watch_ok(&self.namespace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChannelSpec;

    fn channel(ns: &str, name: &str, source: Source, scid: &str, connected: bool) -> Channel {
        let mut ch = Channel::new(
            name,
            ChannelSpec {
                connected,
                ..ChannelSpec::new(source, scid)
            },
        );
        ch.metadata.namespace = Some(ns.into());
        ch.status = Some(crate::crd::ChannelStatus {
            connected,
            ..Default::default()
        });
        ch
    }

    #[test]
    fn indexes_by_id_and_lists_connected_only() {
        let cache = AnswerCache::new();
        assert!(!cache.is_ready());
        cache.apply(&Event::Init);
        cache.apply(&Event::InitApply(channel(
            "a",
            "x",
            Source::Google,
            "gbm-id",
            true,
        )));
        cache.apply(&Event::InitApply(channel(
            "a",
            "y",
            Source::ChatPlugin,
            "web",
            false,
        )));
        cache.apply(&Event::InitDone);
        assert!(cache.is_ready());
        assert_eq!(cache.len(), 2);
        let e = cache.get("bda330b6-7049-5190-93af-d5b16b03dd19").unwrap();
        assert!(e.connected);
        let v: serde_json::Value = serde_json::from_slice(&cache.list_body(None)).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert_eq!(v["data"][0]["metadata"]["name"], "google 3dd19");
        // A change is visible in the next list.
        cache.apply(&Event::Apply(channel(
            "a",
            "y",
            Source::ChatPlugin,
            "web",
            true,
        )));
        let v: serde_json::Value = serde_json::from_slice(&cache.list_body(None)).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        let v: serde_json::Value =
            serde_json::from_slice(&cache.list_body(Some(Source::ChatPlugin))).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        cache.apply(&Event::Delete(channel(
            "a",
            "x",
            Source::Google,
            "gbm-id",
            true,
        )));
        assert!(cache.get("bda330b6-7049-5190-93af-d5b16b03dd19").is_none());
        assert_eq!(
            cache.list_body(Some(Source::Google)).as_ref(),
            b"{\"data\":[]}"
        );
    }

    #[test]
    fn a_failing_watch_makes_the_cache_stale_then_not_ready_and_recovers() {
        let ns = ["a".to_owned(), "b".to_owned()];
        let cache = AnswerCache::for_namespaces(&ns, Default::default(), Duration::from_millis(50));
        for n in &ns {
            cache.apply_in(n, Event::Init);
            cache.apply_in(n, Event::InitDone);
        }
        assert!(cache.is_ready() && cache.is_current());
        assert_eq!(cache.stale_for(), Duration::ZERO);
        cache.watch_failed("b");
        assert!(cache.is_ready(), "within the stale limit reads are served");
        assert!(!cache.is_current(), "a failing watch: writes wait");
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.stale_for() >= Duration::from_millis(50));
        assert!(!cache.is_ready(), "stale for longer than the limit");
        cache.watch_failed("b");
        assert!(
            cache.stale_for() >= Duration::from_millis(50),
            "a second error keeps the first failure's time"
        );
        cache.watch_ok("b");
        assert!(cache.is_ready() && cache.is_current());
        assert_eq!(cache.stale_for(), Duration::ZERO);
    }

    #[tokio::test]
    async fn wait_for_sees_later_changes() {
        let cache = AnswerCache::new();
        let c2 = cache.clone();
        let waiter = tokio::spawn(async move {
            c2.wait_for(Duration::from_secs(5), |c| {
                c.get("bda330b6-7049-5190-93af-d5b16b03dd19")
            })
            .await
            .is_some()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.apply(&Event::Apply(channel(
            "a",
            "x",
            Source::Google,
            "gbm-id",
            true,
        )));
        assert!(waiter.await.unwrap());
        assert!(cache
            .wait_for(Duration::from_millis(20), |c| c.get("nope"))
            .await
            .is_none());
    }
}
