//! The in-memory store: every object of every resource, one resourceVersion counter, the watch
//! history and the garbage-collection indexes. Objects are kept as serialized JSON bytes, which
//! is several times smaller than a `serde_json::Value` tree and lets watch events share them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::patch::ManagedFields;
use super::resources::ResourceType;

/// Events of one resource kept for watches that start or resume from an older
/// resourceVersion, unless `Faults::set_watch_window` says otherwise: kube-apiserver's
/// `--default-watch-cache-size` (100 events per resource).
pub const DEFAULT_WATCH_WINDOW: usize = 100;
/// Storage key of namespaces and CRDs.
pub const NAMESPACES: &str = "/namespaces";
pub const CRDS: &str = "apiextensions.k8s.io/customresourcedefinitions";

/// One stored object.
pub struct Stored {
    pub json: Bytes,
    pub managed: ManagedFields,
}

impl Stored {
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, in resourceVersion order.
pub struct Event {
    pub rv: u64,
    pub storage: String,
    pub ns: String,
    pub kind: EventType,
    pub obj: Bytes,
    /// The object before a MODIFIED (for selectors: stops/starts matching).
    pub prev: Option<Bytes>,
}

/// The recent events of one resource, oldest first.
#[derive(Default)]
struct History {
    events: VecDeque<Arc<Event>>,
    /// The resourceVersion of the newest event that left the window.
    evicted_rv: u64,
}

/// (namespace, name); namespace is "" for cluster-scoped objects.
pub type Key = (String, String);

pub struct Store {
    pub rv: u64,
    pub objects: HashMap<String, BTreeMap<Key, Stored>>,
    pub resources: Vec<Arc<ResourceType>>,
    /// Changes whenever the set of served resources changes (discovery/OpenAPI hashes).
    pub registry_gen: u64,
    /// The watch window of each storage key.
    histories: HashMap<String, History>,
    /// Window sizes by resource plural ("*": every resource without its own).
    windows: HashMap<String, usize>,
    /// The storage compaction point: no history at or below it, and list continue tokens
    /// issued at or below it have expired.
    pub compacted_rv: u64,
    /// The newest resourceVersion, for watches waiting for changes.
    pub rv_tx: tokio::sync::watch::Sender<u64>,
    /// Cancelled by `Faults::drop_watches` (then replaced).
    pub watch_cancel: CancellationToken,
    uids: HashSet<u128>,
    dependents: HashMap<u128, BTreeSet<(String, String, String)>>,
    terminating: HashSet<String>,
}

impl History {
    fn trim(&mut self, window: usize) {
        while self.events.len() > window {
            if let Some(old) = self.events.pop_front() {
                self.evicted_rv = old.rv;
            }
        }
    }
}

pub fn uid_of(obj: &Value) -> Option<u128> {
    obj["metadata"]["uid"]
        .as_str()
        .and_then(|u| uuid::Uuid::parse_str(u).ok())
        .map(|u| u.as_u128())
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn owner_uids(obj: &Value) -> Vec<u128> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
        .filter_map(|u| uuid::Uuid::parse_str(u).ok())
        .map(|u| u.as_u128())
        .collect()
}

impl Store {
    pub fn new(resources: Vec<ResourceType>) -> Store {
        let mut s = Store {
            rv: 0,
            objects: HashMap::new(),
            resources: resources.into_iter().map(Arc::new).collect(),
            registry_gen: 1,
            histories: HashMap::new(),
            windows: HashMap::new(),
            compacted_rv: 0,
            rv_tx: tokio::sync::watch::Sender::new(0),
            watch_cancel: CancellationToken::new(),
            uids: HashSet::new(),
            dependents: HashMap::new(),
            terminating: HashSet::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {
                    "name": ns, "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": now_rfc3339(),
                    "labels": {"kubernetes.io/metadata.name": ns},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            s.put(NAMESPACES, obj, ManagedFields::default(), EventType::Added);
        }
        s
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<&Stored> {
        self.objects
            .get(storage)?
            .get(&(ns.to_string(), name.to_string()))
    }

    pub fn namespace_state(&self, ns: &str) -> Option<bool> {
        self.get(NAMESPACES, "", ns)
            .map(|_| self.terminating.contains(ns))
    }

    fn emit(&mut self, ev: Event) {
        let window = self.window_of(&ev.storage);
        let rv = ev.rv;
        let history = self.histories.entry(ev.storage.clone()).or_default();
        history.events.push_back(Arc::new(ev));
        history.trim(window);
        self.rv_tx.send_replace(rv);
    }

    /// The watch window of a storage key: its resource's own, else "*", else the default.
    fn window_of(&self, storage: &str) -> usize {
        let plural = self
            .resources
            .iter()
            .find(|r| r.storage == storage)
            .map(|r| r.plural.as_str());
        plural
            .and_then(|p| self.windows.get(p))
            .or_else(|| self.windows.get("*"))
            .copied()
            .unwrap_or(DEFAULT_WATCH_WINDOW)
    }

    /// Sets the watch window of a resource (plural, or "*" for every resource) and drops what
    /// no longer fits.
    pub fn set_window(&mut self, resource: &str, events: usize) {
        self.windows.insert(resource.to_string(), events);
        let storages: Vec<String> = self.histories.keys().cloned().collect();
        for storage in storages {
            let window = self.window_of(&storage);
            if let Some(h) = self.histories.get_mut(&storage) {
                h.trim(window);
            }
        }
    }

    /// A watch of `storage` positioned at `rv` has lost events when this is above `rv`.
    pub fn oldest_resumable(&self, storage: &str) -> u64 {
        let evicted = self.histories.get(storage).map_or(0, |h| h.evicted_rv);
        evicted.max(self.compacted_rv)
    }

    /// Events of `storage` after `rv`, or Err(oldest available) when some left the window.
    pub fn events_since(&self, storage: &str, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        let oldest = self.oldest_resumable(storage);
        if rv < oldest {
            return Err(oldest + 1);
        }
        let Some(history) = self.histories.get(storage) else {
            return Ok(vec![]);
        };
        let start = history.events.partition_point(|e| e.rv <= rv);
        Ok(history.events.range(start..).cloned().collect())
    }

    /// Forgets every watch history (an etcd compaction, or an apiserver restart).
    pub fn compact(&mut self) {
        self.histories.clear();
        self.compacted_rv = self.rv;
    }

    /// Stores `obj` (its metadata.name/namespace say where) under a new resourceVersion and
    /// emits the event. Returns the stored object.
    pub fn put(
        &mut self,
        storage: &str,
        mut obj: Value,
        managed: ManagedFields,
        kind: EventType,
    ) -> Value {
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let bytes = Bytes::from(serde_json::to_vec(&obj).expect("JSON values serialize"));
        if let Some(uid) = uid_of(&obj) {
            self.uids.insert(uid);
            for owner in owner_uids(&obj) {
                self.dependents.entry(owner).or_default().insert((
                    storage.to_string(),
                    ns.clone(),
                    name.clone(),
                ));
            }
        }
        let prev = self
            .objects
            .entry(storage.to_string())
            .or_default()
            .insert(
                (ns.clone(), name),
                Stored {
                    json: bytes.clone(),
                    managed,
                },
            )
            .map(|s| s.json);
        self.emit(Event {
            rv,
            storage: storage.to_string(),
            ns,
            kind,
            obj: bytes,
            prev,
        });
        obj
    }

    /// Replaces an object's content without an event (the update that removes the last
    /// finalizer of a deleting object is seen by watchers only as its DELETED event).
    pub fn replace_quietly(&mut self, storage: &str, ns: &str, name: &str, obj: &Value) {
        if let Some(s) = self
            .objects
            .get_mut(storage)
            .and_then(|m| m.get_mut(&(ns.to_string(), name.to_string())))
        {
            s.json = Bytes::from(serde_json::to_vec(obj).expect("JSON values serialize"));
        }
    }

    /// Removes an object now (DELETED event), then collects its dependents and finishes a
    /// terminating namespace that became empty.
    pub fn remove(&mut self, storage: &str, ns: &str, name: &str) -> Option<Value> {
        let stored = self
            .objects
            .get_mut(storage)?
            .remove(&(ns.to_string(), name.to_string()))?;
        let mut obj = stored.value();
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let bytes = Bytes::from(serde_json::to_vec(&obj).expect("JSON values serialize"));
        self.emit(Event {
            rv: self.rv,
            storage: storage.to_string(),
            ns: ns.to_string(),
            kind: EventType::Deleted,
            obj: bytes,
            prev: Some(stored.json),
        });
        if let Some(uid) = uid_of(&obj) {
            self.uids.remove(&uid);
            self.collect_dependents(uid);
        }
        if storage == NAMESPACES {
            self.terminating.remove(name);
        }
        if !ns.is_empty() && self.terminating.contains(ns) {
            self.finish_namespace(ns);
        }
        Some(obj)
    }

    /// Background garbage collection: dependents whose owners are all gone are deleted; a
    /// dependent that still has a live owner loses only the dangling reference.
    fn collect_dependents(&mut self, owner: u128) {
        let Some(deps) = self.dependents.remove(&owner) else {
            return;
        };
        for (storage, ns, name) in deps {
            let Some(stored) = self.get(&storage, &ns, &name) else {
                continue;
            };
            let obj = stored.value();
            let owners = owner_uids(&obj);
            if !owners.contains(&owner) {
                continue;
            }
            if owners.iter().all(|o| !self.uids.contains(o)) {
                self.delete(&storage, &ns, &name, false);
            } else {
                let dead: Vec<u128> = owners
                    .iter()
                    .filter(|o| !self.uids.contains(o))
                    .copied()
                    .collect();
                self.drop_owner_refs(&storage, &ns, &name, |u| dead.contains(&u));
            }
        }
    }

    fn drop_owner_refs(
        &mut self,
        storage: &str,
        ns: &str,
        name: &str,
        dead: impl Fn(u128) -> bool,
    ) {
        let Some(stored) = self.get(storage, ns, name) else {
            return;
        };
        let mut obj = stored.value();
        let managed = stored.managed.clone();
        if let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| {
                let uid = r["uid"]
                    .as_str()
                    .and_then(|u| uuid::Uuid::parse_str(u).ok())
                    .map(|u| u.as_u128());
                !uid.is_some_and(&dead)
            });
            if refs.is_empty() {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("ownerReferences");
                }
            }
        }
        self.put(storage, obj, managed, EventType::Modified);
    }

    /// Deletes an object the way the apiserver does: with finalizers it only gets a
    /// deletionTimestamp (MODIFIED); without, it is removed (DELETED). `orphan` removes the
    /// ownerReferences of its dependents first. Returns the object's last state and whether it
    /// is gone.
    pub fn delete(
        &mut self,
        storage: &str,
        ns: &str,
        name: &str,
        orphan: bool,
    ) -> Option<(Value, bool)> {
        let stored = self.get(storage, ns, name)?;
        let mut obj = stored.value();
        let managed = stored.managed.clone();
        if orphan {
            if let Some(uid) = uid_of(&obj) {
                for (s, n, nm) in self.dependents.remove(&uid).unwrap_or_default() {
                    self.drop_owner_refs(&s, &n, &nm, |u| u == uid);
                }
            }
        }
        if storage == NAMESPACES {
            return Some(self.delete_namespace(name));
        }
        if storage == CRDS {
            return Some((self.delete_crd(name), true));
        }
        let has_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if obj["metadata"]["deletionTimestamp"].is_string() {
                return Some((obj, false));
            }
            obj["metadata"]["deletionTimestamp"] = Value::String(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let obj = self.put(storage, obj, managed, EventType::Modified);
            return Some((obj, false));
        }
        self.remove(storage, ns, name).map(|o| (o, true))
    }

    fn delete_namespace(&mut self, name: &str) -> (Value, bool) {
        let stored = self.get(NAMESPACES, "", name).expect("checked by caller");
        let mut obj = stored.value();
        let managed = stored.managed.clone();
        if !self.terminating.contains(name) {
            self.terminating.insert(name.to_string());
            obj["metadata"]["deletionTimestamp"] = Value::String(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            obj["status"]["phase"] = "Terminating".into();
            obj = self.put(NAMESPACES, obj, managed, EventType::Modified);
            let mut keys = vec![];
            for (storage, map) in &self.objects {
                for (ns, n) in map.keys() {
                    if ns == name {
                        keys.push((storage.clone(), n.clone()));
                    }
                }
            }
            for (storage, n) in keys {
                self.delete(&storage, name, &n, false);
            }
        }
        let gone = self.finish_namespace(name);
        (obj, gone)
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace(&mut self, name: &str) -> bool {
        let empty = self
            .objects
            .iter()
            .all(|(_, map)| !map.keys().any(|(ns, _)| ns == name));
        if empty {
            self.terminating.remove(name);
            self.remove(NAMESPACES, "", name);
        }
        empty
    }

    /// Deleting a CRD stops serving its resources and deletes every custom resource of it.
    fn delete_crd(&mut self, name: &str) -> Value {
        let storage = self
            .resources
            .iter()
            .find(|r| r.crd_name.as_deref() == Some(name))
            .map(|r| r.storage.clone());
        if let Some(storage) = storage {
            let keys: Vec<Key> = self
                .objects
                .get(&storage)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for (ns, n) in keys {
                self.remove(&storage, &ns, &n);
            }
        }
        self.set_crd_resources(name, vec![]);
        self.remove(CRDS, "", name).unwrap_or(Value::Null)
    }

    /// Replaces the resource types served for the CRD `name`.
    pub fn set_crd_resources(&mut self, name: &str, types: Vec<ResourceType>) {
        self.resources
            .retain(|r| r.crd_name.as_deref() != Some(name));
        self.resources.extend(types.into_iter().map(Arc::new));
        self.registry_gen += 1;
    }
}
