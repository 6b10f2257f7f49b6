//! Patch types kube-apiserver accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge patch (built-in types) and server-side apply.
//! CONTRACT (owned by the sandbox-pure helper): signatures below are used by the server.

use serde_json::Value;

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchError {
    /// The patch document itself is malformed (kube-apiserver: 400 BadRequest).
    BadRequest(String),
    /// The patch is well-formed but cannot be applied, e.g. a failed JSON-patch `test`
    /// operation or a path that does not exist (kube-apiserver: 422 Unprocessable Entity).
    Unprocessable(String),
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::BadRequest(format!(
            "merge patch must be a JSON object, got {}",
            json_type(patch)
        )));
    }
    let mut doc = target.clone();
    json_patch::merge(&mut doc, patch);
    Ok(doc)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// RFC 6902 JSON patch, including `test`.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_array() {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            json_type(patch)
        )));
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::BadRequest(format!("invalid JSON patch: {e}")))?;
    let mut doc = target.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| {
        let op = ops.0.get(e.operation);
        let reason = match (&e.kind, op) {
            (json_patch::PatchErrorKind::TestFailed, _) => {
                format!("testing value {} failed: test failed", e.path)
            }
            (_, Some(json_patch::PatchOperation::Remove(_))) => {
                format!(
                    "unable to remove nonexistent key at {}: missing value",
                    e.path
                )
            }
            (_, Some(json_patch::PatchOperation::Replace(_))) => {
                format!(
                    "replace operation does not apply: doc is missing key: {}: missing value",
                    e.path
                )
            }
            _ => e.to_string(),
        };
        PatchError::Unprocessable(reason)
    })?;
    Ok(doc)
}

/// Strategic merge patch for the built-in kinds the sandbox serves (`kind` is e.g. "Secret").
pub fn strategic_merge_patch(
    _target: &Value,
    _patch: &Value,
    _kind: &str,
) -> Result<Value, PatchError> {
    todo!("sandbox-pure")
}

/// Field ownership of one object, per field manager, kept by the server beside the object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManagedFields {}

/// A field that an apply would take from another manager.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The manager that owns the field now.
    pub manager: String,
    /// The field, as kube-apiserver names it, e.g. `.spec.name`.
    pub field: String,
}

/// Why a server-side apply failed.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplyError {
    /// Fields owned by other managers would change and `force` was not set (409 Conflict).
    Conflicts(Vec<Conflict>),
    /// The applied configuration cannot be merged (422).
    Invalid(String),
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object does not exist yet).
/// `schema` is the openAPIV3Schema of a custom resource (for `x-kubernetes-list-type` /
/// `x-kubernetes-list-map-keys`), None for built-in kinds. Returns the merged object and updates
/// `owners`. Fields this manager applied before and no longer applies are removed.
pub fn server_side_apply(
    _live: Option<&Value>,
    _applied: &Value,
    _schema: Option<&Value>,
    _manager: &str,
    _force: bool,
    _owners: &mut ManagedFields,
) -> Result<Value, ApplyError> {
    todo!("sandbox-pure")
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes ownership of the
/// fields it changed or set.
pub fn record_update(
    _old: Option<&Value>,
    _new: &Value,
    _manager: &str,
    _owners: &mut ManagedFields,
) {
    todo!("sandbox-pure")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_deletes() {
        let t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2]}});
        let p = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"list": [3]}});
        assert_eq!(
            merge_patch(&t, &p).unwrap(),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"list": [3]}})
        );
        assert!(matches!(
            merge_patch(&t, &json!([1])),
            Err(PatchError::BadRequest(_))
        ));
    }

    #[test]
    fn json_patch_ops_and_errors() {
        let t = json!({"spec": {"name": "a", "items": [1, 2]}});
        let p = json!([
            {"op": "test", "path": "/spec/name", "value": "a"},
            {"op": "replace", "path": "/spec/name", "value": "b"},
            {"op": "add", "path": "/spec/items/-", "value": 3},
            {"op": "remove", "path": "/spec/items/0"}
        ]);
        assert_eq!(
            json_patch(&t, &p).unwrap(),
            json!({"spec": {"name": "b", "items": [2, 3]}})
        );
        let failed = json_patch(
            &t,
            &json!([{"op": "test", "path": "/spec/name", "value": "z"}]),
        );
        assert!(
            matches!(failed, Err(PatchError::Unprocessable(ref m)) if m.contains("test failed"))
        );
        let missing = json_patch(&t, &json!([{"op": "remove", "path": "/spec/nope"}]));
        assert!(
            matches!(missing, Err(PatchError::Unprocessable(_))),
            "{missing:?}"
        );
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "value": 1}]),
        ] {
            assert!(
                matches!(json_patch(&t, &bad), Err(PatchError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
