//! Changes of the operator's state objects (a Channel's record, an effect entry) guarded by the
//! resourceVersion they were read with: a JSON merge patch (RFC 7386) from the object as read to
//! the object wanted, over the parts the operator writes (labels, annotations, `data`, `spec`),
//! carrying the `metadata.resourceVersion` read — which the API server takes as a precondition
//! and answers 409 Conflict when the object changed since. A patch, not an update: the
//! operator's identities patch Secrets and Leases, they never update them.

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::ownership::MANAGER;

/// The parts of an object the operator writes.
const PARTS: [(&str, &str); 4] = [
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("data", ""),
    ("spec", ""),
];

/// The merge patch turning `old` into `new`: what differs, and `null` for what `new` drops.
fn diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => {
                        out.insert(k.clone(), diff(ov, nv));
                    }
                    None => {
                        out.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// The part `(top, inner)` of `v` (`inner` empty: the whole `top`), `Null` when absent.
fn part<'a>(v: &'a Value, (top, inner): (&str, &str)) -> &'a Value {
    let top = &v[top];
    if inner.is_empty() {
        top
    } else {
        &top[inner]
    }
}

/// The guarded merge patch from `old` to `new`.
fn patch_of(old: &Value, new: &Value) -> Value {
    let mut patch = serde_json::json!({"metadata": {
        "resourceVersion": old["metadata"]["resourceVersion"],
    }});
    for p in PARTS {
        let (o, n) = (part(old, p), part(new, p));
        if o == n {
            continue;
        }
        let d = if o.is_object() && n.is_object() {
            diff(o, n)
        } else {
            n.clone()
        };
        match p {
            (top, "") => patch[top] = d,
            (top, inner) => patch[top][inner] = d,
        }
    }
    patch
}

/// Writes what `new` says over `old` (the object as read), unless it changed since:
/// `Err(409 Conflict)` then. Returns the object as written.
pub async fn write<K>(api: &Api<K>, name: &str, old: &K, new: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let old = serde_json::to_value(old).expect("serializes");
    let new = serde_json::to_value(new).expect("serializes");
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch_of(&old, &new)))
        .await
}

/// Deletes `name` unless it changed since it was read with `uid` and `resource_version` (the API
/// server's preconditions; `Err(409 Conflict)` then). One already gone is fine.
pub async fn delete<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
    resource_version: Option<String>,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_carries_the_version_read_what_changed_and_nulls_what_went() {
        let old = json!({"metadata": {"name": "x", "resourceVersion": "7", "uid": "u",
            "annotations": {"a": "1", "gone": "2"}, "labels": {"l": "v"}},
            "data": {"token": "dA=="}, "spec": {"holderIdentity": "ns/a"}});
        let new = json!({"metadata": {"name": "x",
            "annotations": {"a": "1", "b": "3"}, "labels": {"l": "v"}},
            "data": {"token": "dA==", "undo": "dQ=="}});
        assert_eq!(
            patch_of(&old, &new),
            json!({"metadata": {"resourceVersion": "7", "annotations": {"b": "3", "gone": null}},
                "data": {"undo": "dQ=="}, "spec": null})
        );
    }
}
