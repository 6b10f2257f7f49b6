//! Decoding of the Kubernetes protobuf envelope for the few built-in kinds kubectl sends as
//! protobuf (`kubectl create namespace`, `kubectl create secret`, `kubectl auth can-i`): client-go's typed clients
//! encode request bodies as `application/vnd.kubernetes.protobuf` and do not fall back to JSON.

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Protobuf wire values of one message field.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
    let mut pos = 0;
    let mut out = vec![];
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                pos += 8;
                Wire::Fixed
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let b = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                Wire::Bytes(b)
            }
            5 => {
                pos += 4;
                Wire::Fixed
            }
            _ => return None,
        };
        out.push((key >> 3, wire));
    }
    Some(out)
}

fn string(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// A `map<string, V>` field: repeated entries {1: key, 2: value}.
fn map_entry(b: &[u8], bytes_value: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(k)) => key = String::from_utf8_lossy(k).into_owned(),
            (2, Wire::Bytes(v)) if bytes_value => {
                value = base64::engine::general_purpose::STANDARD.encode(v).into()
            }
            (2, Wire::Bytes(v)) => value = string(v),
            _ => {}
        }
    }
    Some((key, value))
}

fn insert_map(obj: &mut Map<String, Value>, field: &str, entry: Option<(String, Value)>) {
    if let Some((k, v)) = entry {
        obj.entry(field)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert(k, v));
    }
}

fn push(obj: &mut Map<String, Value>, field: &str, v: Value) {
    if let Some(a) = obj.entry(field).or_insert_with(|| json!([])).as_array_mut() {
        a.push(v);
    }
}

fn owner_reference(b: &[u8]) -> Option<Value> {
    let mut o = Map::new();
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(v)) => o.insert("kind".into(), string(v)),
            (3, Wire::Bytes(v)) => o.insert("name".into(), string(v)),
            (4, Wire::Bytes(v)) => o.insert("uid".into(), string(v)),
            (5, Wire::Bytes(v)) => o.insert("apiVersion".into(), string(v)),
            (6, Wire::Varint(v)) => o.insert("controller".into(), (v != 0).into()),
            (7, Wire::Varint(v)) => o.insert("blockOwnerDeletion".into(), (v != 0).into()),
            _ => None,
        };
    }
    Some(Value::Object(o))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(v)) => {
                m.insert("name".into(), string(v));
            }
            (2, Wire::Bytes(v)) => {
                m.insert("generateName".into(), string(v));
            }
            (3, Wire::Bytes(v)) => {
                m.insert("namespace".into(), string(v));
            }
            (6, Wire::Bytes(v)) => {
                m.insert("resourceVersion".into(), string(v));
            }
            (11, Wire::Bytes(v)) => insert_map(&mut m, "labels", map_entry(v, false)),
            (12, Wire::Bytes(v)) => insert_map(&mut m, "annotations", map_entry(v, false)),
            (13, Wire::Bytes(v)) => push(&mut m, "ownerReferences", owner_reference(v)?),
            (14, Wire::Bytes(v)) => push(&mut m, "finalizers", string(v)),
            _ => {}
        }
    }
    // empty names are not sent as fields; drop empty strings the way JSON omitempty would
    m.retain(|_, v| v.as_str() != Some(""));
    Some(Value::Object(m))
}

fn namespace(raw: &[u8]) -> Option<Value> {
    let mut o = Map::new();
    for (n, w) in fields(raw)? {
        match (n, w) {
            (1, Wire::Bytes(v)) => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            (2, Wire::Bytes(v)) => {
                let mut spec = Map::new();
                for (n, w) in fields(v)? {
                    if let (1, Wire::Bytes(f)) = (n, w) {
                        push(&mut spec, "finalizers", string(f));
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Some(Value::Object(o))
}

fn secret(raw: &[u8]) -> Option<Value> {
    let mut o = Map::new();
    for (n, w) in fields(raw)? {
        match (n, w) {
            (1, Wire::Bytes(v)) => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            (2, Wire::Bytes(v)) => insert_map(&mut o, "data", map_entry(v, true)),
            (3, Wire::Bytes(v)) => {
                o.insert("type".into(), string(v));
            }
            (4, Wire::Bytes(v)) => insert_map(&mut o, "stringData", map_entry(v, false)),
            (5, Wire::Varint(v)) => {
                o.insert("immutable".into(), (v != 0).into());
            }
            _ => {}
        }
    }
    Some(Value::Object(o))
}

/// authorization.k8s.io/v1 `ResourceAttributes`.
fn resource_attributes(raw: &[u8]) -> Option<Value> {
    const NAMES: [&str; 7] = [
        "namespace",
        "verb",
        "group",
        "version",
        "resource",
        "subresource",
        "name",
    ];
    let mut o = Map::new();
    for (n, w) in fields(raw)? {
        if let (1..=7, Wire::Bytes(v)) = (n, w) {
            o.insert(NAMES[n as usize - 1].into(), string(v));
        }
    }
    Some(Value::Object(o))
}

/// `SelfSubjectAccessReview` (`kubectl auth can-i`) and `SubjectAccessReview`: the spec's
/// resource attributes, user and groups (`self_review`: the spec has no user or groups).
fn access_review(raw: &[u8], self_review: bool) -> Option<Value> {
    let mut o = Map::new();
    for (n, w) in fields(raw)? {
        match (n, w) {
            (1, Wire::Bytes(v)) => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            (2, Wire::Bytes(v)) => {
                let mut spec = Map::new();
                for (n, w) in fields(v)? {
                    match (n, w, self_review) {
                        (1, Wire::Bytes(f), _) => {
                            spec.insert("resourceAttributes".into(), resource_attributes(f)?);
                        }
                        (3, Wire::Bytes(f), false) => {
                            spec.insert("user".into(), string(f));
                        }
                        (4, Wire::Bytes(f), false) => push(&mut spec, "groups", string(f)),
                        _ => {}
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Some(Value::Object(o))
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` envelope into the JSON form of the object.
/// Err: why it cannot be decoded (the server answers 415).
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("missing the protobuf magic number")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(rest).ok_or("malformed protobuf")? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (n, w) in fields(tm).ok_or("malformed protobuf")? {
                    match (n, w) {
                        (1, Wire::Bytes(v)) => api_version = String::from_utf8_lossy(v).into(),
                        (2, Wire::Bytes(v)) => kind = String::from_utf8_lossy(v).into(),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(raw),
        ("v1", "Secret") => secret(raw),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => access_review(raw, true),
        ("authorization.k8s.io/v1", "SubjectAccessReview") => access_review(raw, false),
        _ => {
            return Err(format!(
                "protobuf is not supported for {api_version} {kind}"
            ))
        }
    };
    let mut obj = obj.ok_or("malformed protobuf")?;
    obj["apiVersion"] = api_version.into();
    obj["kind"] = kind.into();
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_secret_envelope() {
        let meta = [field(1, b"s1"), field(3, b"ns")].concat();
        let entry = [field(1, b"k"), field(2, b"val")].concat();
        let raw = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let tm = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "s1");
        assert_eq!(v["metadata"]["namespace"], "ns");
        assert_eq!(v["data"]["k"], "dmFs");
        assert_eq!(v["type"], "Opaque");
        assert_eq!(v["kind"], "Secret");
    }
}
