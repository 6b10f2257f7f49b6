//! The fake API server of the pinned scenarios: a `tower` service recording every request and
//! answering from a small in-memory state as kube-apiserver does — one Channel (`ns/shop`), the
//! Secrets of its namespace, the operator's state namespace `ops` (records, claims, effect
//! entries: create-if-absent, merge patches guarded by the resourceVersion, delete with uid and
//! resourceVersion preconditions), other Channels and provider configurations by path.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use serde_json::{json, Value};

use crate::crd::{Channel, FINALIZER};

pub(super) const NS: &str = "/api/v1/namespaces/ns/secrets";
pub(super) const CH: &str = "/apis/airy.co/v1alpha1/namespaces/ns/channels/shop";
pub(super) const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";
/// The Leases of the state namespace `ops`: claims and effect entries.
pub(super) const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
/// The Secrets of the state namespace `ops`: the records.
pub(super) const STATE: &str = "/api/v1/namespaces/ops/secrets";
/// The ProviderConfigs of namespace `ns`.
pub(super) const CONFIGS: &str = "/apis/airy.co/v1alpha1/namespaces/ns/providerconfigs";

/// One request the fake API server received.
pub(super) struct Call {
    pub line: String,
    pub query: String,
    pub body: Value,
}

/// An API server with one Channel (`ns/shop`) and some Secrets.
#[derive(Default)]
pub(super) struct Fake {
    pub calls: Mutex<Vec<Call>>,
    pub channel: Mutex<Value>,
    pub secrets: Mutex<BTreeMap<String, Value>>,
    /// The Leases of the state namespace, by name (claims and effect entries).
    pub claims: Mutex<BTreeMap<String, Value>>,
    /// The Secrets of the state namespace, by name (records).
    pub records: Mutex<BTreeMap<String, Value>>,
    /// Channels besides `ns/shop`, and provider configurations, by path.
    pub others: Mutex<BTreeMap<String, Value>>,
    pub rv: Mutex<u64>,
    /// Another writer, a moment before the next request of this method to a Lease: the Lease it
    /// writes (its name taken from it), to fake a race lost at that request.
    pub race: Mutex<Option<(&'static str, Value)>>,
    /// A fault at the first request whose line (as [`line`] writes it) is the one named.
    pub fault: Mutex<Option<(&'static str, Fault)>>,
    /// Cut off by a [`Fault::Stop`]: every request fails (500) without being applied.
    pub cut: Mutex<bool>,
}

/// How the fake API server fails at a request ([`Fake::fault`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Fault {
    /// The controller is cut off right after it: the request is applied and answered, every
    /// later one fails without being applied (a crash, as the API server sees it; the next
    /// reconcile is a new process's).
    Stop,
    /// Its answer is lost: the request is applied, then answered 500 (as a timeout after the
    /// write committed); later requests are answered as usual.
    Lost,
}

pub(super) fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": reason, "code": code, "message": reason}),
    )
}

/// Applies the JSON merge patch `patch` (RFC 7386) to `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn success() -> (u16, Value) {
    (
        200,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
    )
}

impl Fake {
    pub fn next_rv(&self) -> String {
        let mut rv = self.rv.lock().unwrap();
        *rv += 1;
        rv.to_string()
    }

    /// An object store's answer: create-if-absent, get, replace guarded by the resourceVersion
    /// and delete with uid and resourceVersion preconditions.
    fn object(
        &self,
        objects: &mut BTreeMap<String, Value>,
        method: &str,
        name: &str,
        body: &Value,
    ) -> (u16, Value) {
        match method {
            "GET" => match objects.get(name) {
                Some(o) => (200, o.clone()),
                None => status(404, "NotFound"),
            },
            "POST" => {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                if objects.contains_key(&name) {
                    return status(409, "AlreadyExists");
                }
                let mut o = body.clone();
                o["metadata"]["uid"] = format!("uid-{name}").into();
                o["metadata"]["resourceVersion"] = self.next_rv().into();
                objects.insert(name, o.clone());
                (201, o)
            }
            "PATCH" => {
                // A JSON merge patch; its resourceVersion, when given, is a precondition.
                let Some(stored) = objects.get_mut(name) else {
                    return status(404, "NotFound");
                };
                let rv = &body["metadata"]["resourceVersion"];
                if !rv.is_null() && *rv != stored["metadata"]["resourceVersion"] {
                    return status(409, "Conflict");
                }
                merge(stored, body);
                stored["metadata"]["resourceVersion"] = self.next_rv().into();
                (200, stored.clone())
            }
            "DELETE" => {
                let Some(stored) = objects.get(name) else {
                    return status(404, "NotFound");
                };
                let pre = &body["preconditions"];
                let differs =
                    |field: &str| !pre[field].is_null() && pre[field] != stored["metadata"][field];
                if differs("uid") || differs("resourceVersion") {
                    return status(409, "Conflict");
                }
                objects.remove(name);
                success()
            }
            _ => panic!("unexpected request {method} on {name}"),
        }
    }

    pub fn answer(&self, method: &str, path: &str, query: &str, body: &Value) -> (u16, Value) {
        let not_found = |name: &str| {
            (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": format!("{name} not found")}),
            )
        };
        if let Some(name) = path.strip_prefix(LEASES).map(|p| p.trim_start_matches('/')) {
            let mut leases = self.claims.lock().unwrap();
            let race = self.race.lock().unwrap().take();
            match race {
                Some((m, lease)) if m == method => {
                    let n = lease["metadata"]["name"].as_str().unwrap().to_owned();
                    leases.insert(n, lease);
                }
                other => *self.race.lock().unwrap() = other,
            }
            return self.object(&mut leases, method, name, body);
        }
        if let Some(name) = path.strip_prefix(STATE).map(|p| p.trim_start_matches('/')) {
            return self.object(&mut self.records.lock().unwrap(), method, name, body);
        }
        let mut secrets = self.secrets.lock().unwrap();
        let mut channel = self.channel.lock().unwrap();
        let secret_name = path.strip_prefix(NS).map(|p| p.trim_start_matches('/'));
        match (method, secret_name) {
            ("GET", Some("")) => {
                let selector = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("labelSelector="));
                let items: Vec<Value> = secrets
                    .values()
                    .filter(|s| {
                        let labels = &s["metadata"]["labels"];
                        selector.is_none_or(|_| {
                            labels["app.kubernetes.io/managed-by"] == "channel-operator"
                        })
                    })
                    .map(|s| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": s["metadata"]}))
                    .collect();
                (
                    200,
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}),
                )
            }
            ("GET", Some(name)) => match secrets.get(name) {
                Some(s) => (200, s.clone()),
                None => not_found(name),
            },
            ("POST", Some("")) => {
                let mut s = body.clone();
                let name = s["metadata"]["name"].as_str().unwrap().to_owned();
                s["metadata"]["uid"] = format!("uid-{name}").into();
                s["metadata"]["resourceVersion"] = self.next_rv().into();
                secrets.insert(name, s.clone());
                (201, s)
            }
            ("DELETE", Some(name)) => match secrets.remove(name) {
                Some(_) => success(),
                None => not_found(name),
            },
            ("PATCH", None) if path == format!("{CH}/status") => {
                channel["status"] = body["status"].clone();
                channel["metadata"]["resourceVersion"] = self.next_rv().into();
                (200, channel.clone())
            }
            ("PATCH", None) if path == CH => {
                // kube-runtime's finalizer(): a JSON patch that adds or removes ours.
                let finalizers = match body[1]["op"].as_str() {
                    Some("add") => json!([FINALIZER]),
                    _ => json!([]),
                };
                channel["metadata"]["finalizers"] = finalizers;
                channel["metadata"]["resourceVersion"] = self.next_rv().into();
                (200, channel.clone())
            }
            ("PATCH", None) if path.starts_with(CONFIGS) => {
                // A merge patch of a configuration's finalizers, guarded by its resourceVersion.
                let mut others = self.others.lock().unwrap();
                let Some(config) = others.get_mut(path) else {
                    return not_found(path);
                };
                let meta = &body["metadata"];
                if meta["resourceVersion"] != config["metadata"]["resourceVersion"] {
                    return status(409, "Conflict");
                }
                config["metadata"]["finalizers"] = meta["finalizers"].clone();
                config["metadata"]["resourceVersion"] = self.next_rv().into();
                (200, config.clone())
            }
            ("POST", None) if path == EVENTS => (201, body.clone()),
            ("GET", None) if path == CH => (200, channel.clone()),
            ("GET", None) if path.starts_with("/apis/airy.co/") => {
                match self.others.lock().unwrap().get(path) {
                    Some(c) => (200, c.clone()),
                    None => not_found(path),
                }
            }
            _ => panic!("unexpected request {method} {path}?{query}"),
        }
    }

    /// The requests since the last call, and forgets them.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    pub fn channel(&self) -> Channel {
        serde_json::from_value(self.channel.lock().unwrap().clone()).unwrap()
    }
}

/// A request line as the scenarios pin it: paths relative to the Channel (`channel`), the
/// Secrets of its namespace (`secrets`), its Events (`events`), the state namespace's records
/// (`records`), claims (`claims`) and effect entries (`entries`), other Channels (`channels of
/// <ns>/…`) and configurations (`configs`). A claim's, an entry's and a record's name (one per
/// Channel in a scenario) are not repeated.
pub(super) fn line(call: &Call) -> String {
    let created = call.body["metadata"]["name"].as_str().unwrap_or_default();
    let leases = if created.starts_with("effect-") || call.line.contains("/effect-") {
        "entries"
    } else {
        "claims"
    };
    let l = call
        .line
        .replace(CH, "channel")
        .replace(NS, "secrets")
        .replace(EVENTS, "events")
        .replace(STATE, "records")
        .replace(LEASES, leases)
        .replace(CONFIGS, "configs")
        .replace("/apis/airy.co/v1alpha1/namespaces/", "channels of ");
    for (prefix, short) in [
        ("claims/claim-", "claims/claim"),
        ("entries/effect-", "entries/effect"),
        ("records/channel-", "records/channel"),
    ] {
        if let Some(i) = l.find(prefix) {
            return format!("{}{short}", &l[..i]);
        }
    }
    l
}

pub(super) fn client(fake: Arc<Fake>) -> Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let fake = fake.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let method = parts.method.to_string();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let cut = *fake.cut.lock().unwrap();
            let (mut status, mut answer) = match cut {
                true => self::status(500, "InternalError"),
                false => fake.answer(&method, &path, &query, &body),
            };
            let call = Call {
                line: format!("{method} {path}"),
                query,
                body,
            };
            let mut fault = fake.fault.lock().unwrap();
            if fault.is_some_and(|(at, _)| !cut && at == line(&call)) {
                match fault.take().map(|(_, f)| f) {
                    Some(Fault::Stop) => *fake.cut.lock().unwrap() = true,
                    _ => (status, answer) = self::status(500, "InternalError"),
                }
            }
            drop(fault);
            fake.calls.lock().unwrap().push(call);
            let answer = Bytes::from(serde_json::to_vec(&answer).unwrap());
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(answer))
                    .unwrap(),
            )
        }
    });
    Client::new(service, "ns")
}
