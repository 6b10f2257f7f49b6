//! Patch types kube-apiserver accepts: JSON merge patch (RFC 7386) and JSON patch (RFC 6902)
//! here; strategic merge patch (built-in types) and server-side apply with field ownership in
//! the submodules.

mod apply;
mod fields;
mod strategic;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use apply::{record_update_to, server_side_apply_to};
pub use fields::{ApplyError, ManagedFields};
pub use strategic::strategic_merge_patch;

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
    for op in ops.0 {
        if missing_value_tested_for_null(&doc, &op) {
            continue;
        }
        let single = json_patch::Patch(vec![op]);
        json_patch::patch(&mut doc, &single).map_err(|e| {
            let reason = match (&e.kind, single.0.first()) {
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
    }
    Ok(doc)
}

/// kube-apiserver's JSON patch (evanphx/json-patch) lets `{"op":"test","value":null}` pass on a key
/// that is absent from an existing object: "absent" tests equal to null. kube-runtime's finalizer
/// helper relies on this when it adds the first finalizer (`test /metadata/finalizers == null`).
fn missing_value_tested_for_null(doc: &Value, op: &json_patch::PatchOperation) -> bool {
    let json_patch::PatchOperation::Test(test) = op else {
        return false;
    };
    if !test.value.is_null() || doc.pointer(test.path.as_str()).is_some() {
        return false;
    }
    let path = test.path.as_str();
    let parent = &path[..path.rfind('/').unwrap_or(0)];
    doc.pointer(parent).is_some_and(Value::is_object)
}
