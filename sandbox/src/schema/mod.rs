//! Structural-schema handling of custom resources as kube-apiserver does it: pruning of unknown
//! fields and defaulting (structural), OpenAPI v3 validation, and CEL rules
//! (`x-kubernetes-validations`).

mod cel;
mod structural;
#[cfg(test)]
mod tests;
mod validate;

use serde_json::{Map, Value};
use structural::*;
use validate::*;

/// One invalid field, as a `StatusCause` of a 422 Invalid Status.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// kube-apiserver's cause reason: FieldValueInvalid, FieldValueRequired,
    /// FieldValueNotSupported, FieldValueTypeInvalid, FieldValueTooLong, ...
    pub reason: &'static str,
    /// The field path, e.g. `spec.name`.
    pub field: String,
    /// The whole message, e.g. `spec.name: Invalid value: "": spec.name in body should be at least 1 chars long`.
    pub message: String,
}

impl FieldError {
    /// The message without the leading `<field>: `, which is what kube-apiserver puts in a
    /// `StatusCause.message` (kubectl prints `<field>: <cause message>` itself).
    pub fn body(&self) -> &str {
        self.message
            .strip_prefix(self.field.as_str())
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(&self.message)
    }
}

/// What schema processing did to an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchemaOutcome {
    /// Paths of unknown fields that were pruned, e.g. `.spec.foo` (a Strict field validation
    /// request fails on these; Warn returns them as warnings).
    pub pruned: Vec<String>,
    /// Validation errors; non-empty means 422 Invalid.
    pub errors: Vec<FieldError>,
}

/// Prunes unknown fields, applies defaults, then validates `object` against `schema` (the CRD
/// version's `openAPIV3Schema`), including CEL rules; `old` is the stored object on updates (for
/// transition rules such as `self == oldSelf`). `apiVersion`, `kind` and `metadata` are left to the
/// server.
pub fn prune_default_validate(
    schema: &Value,
    object: &mut Value,
    old: Option<&Value>,
) -> SchemaOutcome {
    let mut out = SchemaOutcome::default();
    prune(schema, object, "", true, &mut out.pruned);
    default(schema, object, true);
    validate(schema, object, "", true, &mut out.errors);
    // kube-apiserver skips CEL when the object has type or enum errors: the rules would see
    // values of the wrong shape.
    let blocking = out
        .errors
        .iter()
        .any(|e| matches!(e.reason, "FieldValueTypeInvalid" | "FieldValueNotSupported"));
    if blocking {
        out.errors.push(FieldError {
            reason: "FieldValueInvalid",
            field: "<nil>".into(),
            message: "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
        });
    } else {
        cel::cel(schema, object, old, "", true, &mut out.errors);
    }
    out
}

const META_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Keys kept as they are: the identity of the root object and of embedded resources.
fn is_meta_key(schema: &Value, key: &str, root: bool) -> bool {
    (root || flag(schema, "x-kubernetes-embedded-resource")) && META_KEYS.contains(&key)
}

/// The schema of a map's value under `key`: a property, else `additionalProperties` (if a schema).
fn field_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}
